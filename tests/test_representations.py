import pytest
import torch
from torch import nn

from fm_course.representations import (AutoEncoder, MultiTaskNet, ambiguity_decomposition, autoencoder_loss, check_majority_vote,
                                       corrupt, encode, ensemble_probs, expected_calibration_error, gradient_cosine,
                                       multitask_loss, principal_angles, reliability_bins, train_autoencoder)
from fm_course.train import History


def test_autoencoder_loss_bad_inputs():
    x = torch.rand(4, 1, 28, 28)
    with pytest.raises(TypeError, match='x_hat'): autoencoder_loss(x.numpy(), x)
    with pytest.raises(TypeError, match='x must be'): autoencoder_loss(x, x.tolist())
    with pytest.raises(ValueError, match='x_hat must have the shape of x'): autoencoder_loss(x.flatten(1), x)
    with pytest.raises(ValueError, match='kind'): autoencoder_loss(x, x, kind='l2')
    with pytest.raises(ValueError, match='at least one example'): autoencoder_loss(x[:0], x[:0])


def test_autoencoder_loss_bf16_and_limits():
    x = torch.rand(3, 10)
    assert autoencoder_loss(x, x).item() == 0
    assert autoencoder_loss(x.bfloat16(), x).dtype == torch.float32          # autocast outputs are scored in float32
    hard = torch.tensor([[0.0, 1.0]])
    assert torch.isfinite(autoencoder_loss(1 - hard, hard, 'bce'))            # log 0 clamped at -100, as PyTorch does
    assert autoencoder_loss(1 - hard, hard, 'bce').item() == pytest.approx(200.0)


def test_autoencoder_and_encode_bad_inputs():
    for bad, err in ((0, ValueError), (2.5, TypeError), (None, TypeError)):
        with pytest.raises(err, match='code_dim'): AutoEncoder(bad)
    with pytest.raises(ValueError, match='width'): AutoEncoder(4, width=0)
    with pytest.raises(TypeError, match='act'): AutoEncoder(4, act='relu')
    ae = AutoEncoder(4)
    with pytest.raises(ValueError, match=r'x must be \[B, 1, 28, 28\]'): ae(torch.rand(2, 28, 28))
    with pytest.raises(TypeError, match='encoder'): encode(nn.Linear(784, 4), torch.rand(2, 28, 28))
    with pytest.raises(ValueError, match='x must be images'): encode(ae, torch.rand(2, 3, 28, 28))
    with pytest.raises(TypeError, match='uint8'): encode(ae, torch.ones(2, 28, 28, dtype=torch.int64))
    with pytest.raises(ValueError, match='batch_size'): encode(ae, torch.rand(2, 28, 28), batch_size=0)


def test_encode_restores_mode_and_handles_uint8():
    ae = AutoEncoder(3).train()
    x = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    z = encode(ae, x, batch_size=2, device='cpu')
    assert z.shape == (5, 3) and z.dtype == torch.float32 and ae.training
    assert torch.allclose(z, ae.encoder(x[:, None].float() / 255), atol=1e-5)


def test_corrupt_bad_inputs_and_reproducible():
    x = torch.ones(10, 10)
    for bad, err in ((1.0, ValueError), (-0.1, ValueError), ('0.3', TypeError)):
        with pytest.raises(err, match='noise'): corrupt(x, bad)
    with pytest.raises(TypeError, match='generator'): corrupt(x, 0.3, generator=0)
    a = corrupt(x, 0.3, generator=torch.Generator().manual_seed(0)); b = corrupt(x, 0.3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_train_autoencoder_bad_inputs_and_result():
    x = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8)
    ae = AutoEncoder(4, width=2)
    with pytest.raises(ValueError, match='epochs'): train_autoencoder(ae, x, epochs=0)
    with pytest.raises(ValueError, match='noise'): train_autoencoder(ae, x, epochs=1, noise=1.0)
    with pytest.raises(ValueError, match='kind'): train_autoencoder(ae, x, epochs=1, kind='l1')
    with pytest.raises(ValueError, match='batch_size'): train_autoencoder(ae, x, epochs=1, batch_size=128)
    with pytest.raises(TypeError, match='model'): train_autoencoder('ae', x, epochs=1)
    h = train_autoencoder(ae, x, epochs=2, batch_size=32, noise=0.2, kind='bce', valid_x=x[:8], device='cpu')
    assert isinstance(h, History) and len(h) == 2 and {'train_loss', 'valid_loss'} <= set(h.columns)


def test_principal_angles_bad_inputs_and_identity():
    with pytest.raises(ValueError, match='same D'): principal_angles(torch.rand(5, 2), torch.rand(4, 2))
    with pytest.raises(ValueError, match='same D'): principal_angles(torch.rand(5), torch.rand(5, 2))
    with pytest.raises(TypeError, match='b must be'): principal_angles(torch.rand(5, 2), [[1.0]])
    a = torch.rand(6, 3, dtype=torch.float64)
    assert principal_angles(a, a @ torch.rand(3, 3, dtype=torch.float64)).max() < 1e-6   # the same span, other basis


def test_multitask_bad_inputs():
    trunk = nn.Linear(4, 3)
    with pytest.raises(TypeError, match='heads'): MultiTaskNet(trunk, [nn.Linear(3, 2)])
    with pytest.raises(TypeError, match='heads'): MultiTaskNet(trunk, {})
    with pytest.raises(TypeError, match="heads\\['a'\\]"): MultiTaskNet(trunk, {'a': 'head'})
    with pytest.raises(TypeError, match='trunk'): MultiTaskNet('trunk', {'a': nn.Linear(3, 2)})
    net = MultiTaskNet(trunk, {'a': nn.Linear(3, 2), 'b': nn.Linear(3, 2)})
    out, y = net(torch.rand(5, 4)), {'a': torch.zeros(5).long(), 'b': torch.ones(5).long()}
    with pytest.raises(TypeError, match='outputs'): multitask_loss([out['a']], y)
    with pytest.raises(TypeError, match='targets'): multitask_loss(out, [y['a']])
    with pytest.raises(ValueError, match="weights\\['a'\\]"): multitask_loss(out, y, {'a': -1.0})
    with pytest.raises(ValueError, match="which targets does not have"): multitask_loss(out, {'a': y['a']})
    with pytest.raises(TypeError, match='loss_fns'): multitask_loss(out, y, loss_fns=[None])
    assert multitask_loss(out, y, {'a': 0.0, 'b': 1.0}).item() == pytest.approx(nn.functional.cross_entropy(out['b'], y['b']).item())


def test_gradient_cosine_bad_inputs_and_opposite():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match='params'): gradient_cosine(w.sum(), -w.sum(), [])
    with pytest.raises(TypeError, match='loss_a'): gradient_cosine(1.0, w.sum(), [w])
    assert gradient_cosine(w.sum(), -w.sum(), [w]).item() == pytest.approx(-1.0)
    assert w.grad is None


def test_ensemble_probs_bad_inputs():
    m = nn.Linear(3, 2)
    x = torch.rand(4, 3)
    with pytest.raises(TypeError, match='models'): ensemble_probs(m, x)
    with pytest.raises(TypeError, match='models'): ensemble_probs([], x)
    with pytest.raises(TypeError, match=r'models\[1\]'): ensemble_probs([m, 'net'], x)
    with pytest.raises(ValueError, match='weights'): ensemble_probs([m, m], x, weights=[1.0])
    with pytest.raises(ValueError, match=r'weights\[0\]'): ensemble_probs([m, m], x, weights=[-1.0, 2.0])
    with pytest.raises(ValueError, match='not all be 0'): ensemble_probs([m, m], x, weights=[0, 0])
    with pytest.raises(ValueError, match=r'logits \[N, C\]'): ensemble_probs([nn.Identity()], torch.rand(4), device='cpu')
    m.train()
    p = ensemble_probs([m], x, device='cpu')
    assert m.training and torch.allclose(p.sum(1), torch.ones(4))


def test_calibration_bad_inputs_and_bin_edges():
    p = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    with pytest.raises(ValueError, match=r'probs must be \[N, C\]'): expected_calibration_error(p[0], torch.tensor([0]))
    with pytest.raises(ValueError, match='labels'): expected_calibration_error(p, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match='n_bins'): expected_calibration_error(p, torch.tensor([0, 1]), n_bins=0)
    with pytest.raises(ValueError, match='at least one row'): expected_calibration_error(p[:0], torch.tensor([], dtype=torch.long))
    count, _, _ = reliability_bins(p, torch.tensor([0, 1]), n_bins=4)      # 0.5 → (0.25, 0.5], 0.75 → (0.5, 0.75]: right-closed
    assert count.tolist() == [0, 1, 1, 0]


def test_ambiguity_decomposition_bad_inputs():
    with pytest.raises(ValueError, match=r'preds must be \[K, N, ...\]'): ambiguity_decomposition(torch.rand(3, 5), torch.rand(4))
    with pytest.raises(ValueError, match=r'preds must be \[K, N, ...\]'): ambiguity_decomposition(torch.rand(5), torch.rand(5))
    with pytest.raises(ValueError, match='weights'): ambiguity_decomposition(torch.rand(3, 5), torch.rand(5), weights=[1.0, 1.0])
    with pytest.raises(TypeError, match='target'): ambiguity_decomposition(torch.rand(3, 5), [0.0] * 5)
    r = ambiguity_decomposition(torch.ones(3, 5), torch.zeros(5))             # identical members: no ambiguity
    assert r.ambiguity == 0 and r.ensemble_error == r.mean_error == 1.0


def test_check_majority_vote_rejects_wrong_shapes():
    with pytest.raises(AssertionError, match='shape'): check_majority_vote(lambda p: p.argmax(-1))
