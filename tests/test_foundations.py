import pytest
import torch
import torch.nn.functional as F

from fm_course.foundations import (adamw_step, binary_cross_entropy_logits, check_bce_grad, check_relu_mlp2_grads,
                                   conv2d_im2col, conv_output_size, inverted_dropout, mlp2_forward_backward,
                                   sgd_weight_decay_step, softmax_cross_entropy, softmax_cross_entropy_grad)


def test_exercise_checkers_accept_right_and_reject_wrong():
    assert check_bce_grad(lambda z, y: (torch.sigmoid(z) - y) / len(z))
    with pytest.raises(AssertionError, match='differs from autograd'): check_bce_grad(lambda z, y: torch.sigmoid(z) - y)  # forgot 1/N

    def relu_grads(X, y, W1, b1, W2, b2, wrong=False):
        Z1 = X @ W1.T + b1; H = Z1.clamp(min=0); Z2 = H @ W2.T + b2
        G2 = (Z2.softmax(1) - F.one_hot(y, Z2.shape[1]).double()) / len(X)
        G1 = (G2 @ W2) * ((Z1 > 0).double() if not wrong else H * (1 - H))
        return dict(W1=G1.T @ X, b1=G1.sum(0), W2=G2.T @ H, b2=G2.sum(0))
    assert check_relu_mlp2_grads(relu_grads)
    with pytest.raises(AssertionError): check_relu_mlp2_grads(lambda X, y, **p: relu_grads(X, y, **p, wrong=True))
    with pytest.raises(AssertionError, match='dict with keys'): check_relu_mlp2_grads(lambda X, y, **p: [1, 2])


def test_bad_inputs():
    with pytest.raises(ValueError, match='same shape'): binary_cross_entropy_logits(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match=r'logits must be \[N, K\]'): softmax_cross_entropy(torch.zeros(3), torch.zeros(3).long())
    with pytest.raises(ValueError, match=r'logits must be \[N, K\]'): softmax_cross_entropy_grad(torch.zeros(2, 3), torch.zeros(3).long())
    with pytest.raises(ValueError, match='X must be'): mlp2_forward_backward(torch.zeros(3), torch.zeros(3).long(), *[torch.zeros(1)] * 4)
    with pytest.raises(ValueError, match='W1 must be'):
        mlp2_forward_backward(torch.zeros(3, 2), torch.zeros(3).long(), torch.zeros(4, 5), torch.zeros(4), torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(ValueError, match='same C'): conv2d_im2col(torch.zeros(1, 3, 5, 5), torch.zeros(2, 2, 3, 3))
    with pytest.raises(ValueError, match='same shape'): sgd_weight_decay_step(torch.zeros(2), torch.zeros(3), 0.1, 0.0)
    with pytest.raises(ValueError, match='lr'): sgd_weight_decay_step(torch.zeros(2), torch.zeros(2), 0.0, 0.0)
    with pytest.raises(ValueError, match='weight_decay'): sgd_weight_decay_step(torch.zeros(2), torch.zeros(2), 0.1, -1.0)
    with pytest.raises(ValueError, match=r'p must be a number in \[0, 1\)'): inverted_dropout(torch.zeros(2), 1.0)
    with pytest.raises(TypeError, match='p must be a number'): inverted_dropout(torch.zeros(2), '0.5')
    with pytest.raises(ValueError, match='padding'): conv2d_im2col(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 3, 3), padding=-1)
    with pytest.raises(ValueError, match='stride'): conv2d_im2col(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 3, 3), stride=0)
    with pytest.raises(TypeError, match='stride'): conv2d_im2col(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 3, 3), stride=1.5)
    with pytest.raises(ValueError, match='larger than the padded input'): conv2d_im2col(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match='k=5'): conv_output_size(3, 5)
    with pytest.raises(ValueError, match='n must be'): conv_output_size(0, 1)
    with pytest.raises(TypeError, match='padding'): conv_output_size(5, 3, padding=None)
    z = torch.zeros(3)
    with pytest.raises(ValueError, match='same shape'): adamw_step(z, torch.zeros(2), z, z, 1, 1e-3, 0.0)
    with pytest.raises(ValueError, match='t must be'): adamw_step(z, z, z, z, 0, 1e-3, 0.0)
    with pytest.raises(ValueError, match='lr'): adamw_step(z, z, z, z, 1, 0.0, 0.0)
    with pytest.raises(ValueError, match='weight_decay'): adamw_step(z, z, z, z, 1, 1e-3, -0.1)
    with pytest.raises(ValueError, match='betas'): adamw_step(z, z, z, z, 1, 1e-3, 0.0, betas=(0.9, 1.0))


def test_conv_output_size_edge_cases():
    assert conv_output_size(28, 3, 1, 1) == 28 and conv_output_size(28, 2, 0, 2) == 14 and conv_output_size(7, 2, 0, 2) == 3
    assert conv_output_size(3, 3) == 1                      # the window fits exactly once
    assert conv_output_size(1, 3, padding=1) == 1


def test_bce_logits_stays_finite_for_huge_logits():
    z, y = torch.tensor([-1e4, 1e4, 200.0]), torch.tensor([0.0, 1.0, 0.0])
    assert torch.isfinite(binary_cross_entropy_logits(z, y))
    torch.testing.assert_close(binary_cross_entropy_logits(z, y), torch.nn.functional.binary_cross_entropy_with_logits(z, y))


@pytest.mark.parametrize('name', ['MNIST_MEAN', 'MNIST_STD', 'RandomAffineBatch', 'mnist_batch_tfm', 'make_model', 'train_mnist'])
def test_moved_names_still_import_with_a_warning(name):
    import fm_course.foundations as fnd
    import fm_course.vision as vision
    with pytest.warns(DeprecationWarning, match=f'foundations.{name} moved to fm_course.vision'):
        obj = getattr(fnd, name)
    assert obj is getattr(vision, name)
    with pytest.raises(AttributeError, match='no_such_name'): fnd.no_such_name

