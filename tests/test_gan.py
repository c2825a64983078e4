import math

import numpy as np
import pytest
import torch
from torch import nn

from fm_course.gan import (DCDiscriminator, DCGenerator, GANHistory, check_d_star, discriminator_loss, frechet_distance,
                           gan_value, generator_loss, gradient_penalty, jensen_shannon, mlp_discriminator, mlp_generator,
                           optimal_discriminator, ring_quality, sample_ring, train_gan, wgan_critic_loss, wgan_generator_loss)
from fm_course.train import History


def test_value_and_losses_are_stable_for_extreme_logits():
    real, fake = torch.tensor([100.0, -100.0]), torch.tensor([-100.0, 100.0])
    for t in (gan_value(real, fake), discriminator_loss(real, fake), generator_loss(fake), generator_loss(fake, False)):
        assert torch.isfinite(t)
    assert torch.isclose(discriminator_loss(real, fake), -gan_value(real, fake))


def test_optimal_discriminator_at_equal_densities_gives_minus_log4():
    p = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    d = optimal_discriminator(p, p)
    assert torch.allclose(d, torch.full((3,), 0.5, dtype=torch.float64))
    v = (p * d.log()).sum() + (p * (1 - d).log()).sum()
    assert abs(v.item() + math.log(4)) < 1e-12
    assert optimal_discriminator(np.array([1.0, 0.0]), np.array([0.0, 0.0])).tolist() == [1.0, 0.5]


def test_jensen_shannon_edge_cases():
    p, q = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert abs(jensen_shannon(p, q).item() - math.log(2)) < 1e-6        # disjoint supports: log 2
    assert jensen_shannon(p, p).item() == 0
    r = torch.tensor([0.3, 0.7])
    assert torch.isclose(jensen_shannon(p, r), jensen_shannon(r, p))


@pytest.mark.parametrize('fn, args, err, name', [
    (gan_value, ([1.0], torch.zeros(1)), TypeError, 'real_logits'),
    (gan_value, (torch.zeros(0), torch.zeros(1)), ValueError, 'real_logits'),
    (gan_value, (torch.zeros(1), torch.zeros(0)), ValueError, 'fake_logits'),
    (generator_loss, (torch.zeros(2), 'yes'), TypeError, 'non_saturating'),
    (generator_loss, (None,), TypeError, 'fake_logits'),
    (optimal_discriminator, (torch.tensor([-1.0]), torch.tensor([1.0])), ValueError, 'p_data'),
    (optimal_discriminator, (torch.tensor([1.0]), torch.tensor([float('nan')])), ValueError, 'p_g'),
    (optimal_discriminator, (torch.ones(2), torch.ones(3)), ValueError, 'p_data and p_g'),
    (optimal_discriminator, ([0.5], torch.ones(1)), TypeError, 'p_data'),
    (jensen_shannon, (torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.6])), ValueError, 'q must sum to 1'),
    (jensen_shannon, (torch.ones(2) / 2, torch.ones(3) / 3), ValueError, 'p and q'),
    (frechet_distance, (torch.zeros(1, 3), torch.zeros(5, 3)), ValueError, 'f1'),
    (frechet_distance, (torch.zeros(5, 3), torch.zeros(5)), ValueError, 'f2'),
    (frechet_distance, (np.zeros((5, 3)), torch.zeros(5, 3)), TypeError, 'f1'),
    (frechet_distance, (torch.zeros(5, 3), torch.zeros(5, 2)), ValueError, 'f1 and f2'),
    (wgan_critic_loss, (torch.zeros(0), torch.zeros(2)), ValueError, 'real_scores'),
    (wgan_critic_loss, (torch.zeros(2), torch.zeros(2), 1.0), TypeError, 'penalty'),
    (wgan_critic_loss, (torch.zeros(2), torch.zeros(2), torch.tensor(1.0), -1.0), ValueError, 'gp_weight'),
    (wgan_generator_loss, ([0.0],), TypeError, 'fake_scores'),
    (ring_quality, (torch.zeros(5, 3),), ValueError, 'samples'),
    (ring_quality, (torch.zeros(0, 2),), ValueError, 'samples'),
    (ring_quality, (np.zeros((5, 2)),), TypeError, 'samples'),
    (ring_quality, (torch.zeros(5, 2), 0.0), ValueError, 'std'),
])
def test_bad_inputs(fn, args, err, name):
    with pytest.raises(err, match=name): fn(*args)


def test_wgan_losses_are_float32_for_bf16_scores():
    fr, ff = torch.randn(32), torch.randn(32)
    out = wgan_critic_loss(fr.bfloat16(), ff.bfloat16())
    assert out.dtype == torch.float32
    assert torch.isclose(out, ff.bfloat16().float().mean() - fr.bfloat16().float().mean())
    assert wgan_generator_loss(ff.bfloat16()).dtype == torch.float32


def test_gradient_penalty_bad_inputs():
    lin = nn.Linear(2, 1, bias=False)
    x = torch.randn(16, 2)
    with pytest.raises(TypeError, match='critic'): gradient_penalty(3, x, x)
    with pytest.raises(ValueError, match='real and fake'): gradient_penalty(lin, x, x[:3])
    with pytest.raises(ValueError, match='fake'): gradient_penalty(lin, x, torch.zeros(0, 2))


def test_gradient_penalty_is_float32_under_autocast():
    "Under bf16 autocast the penalty and its double backward stay float32: (|w| - 1)^2 and its gradient to float32 precision."
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(5, 1, bias=False)
    with torch.no_grad(): lin.weight.copy_(torch.randn(1, 5, generator=g) / 3)   # not representable in bf16
    x, y = torch.randn(64, 5, generator=g), torch.randn(64, 5, generator=g)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert lin(x).dtype == torch.bfloat16                                    # autocast is on for the critic elsewhere
        gp = gradient_penalty(lin, x, y)
    w = lin.weight.detach()[0].double(); r = w.norm()
    assert gp.dtype == torch.float32
    assert abs(gp.item() - (r - 1).item() ** 2) < 1e-6
    gp.backward()                                                                # the double backward
    torch.testing.assert_close(lin.weight.grad[0].double(), 2 * (r - 1) * w / r, rtol=1e-5, atol=1e-6)


def test_train_gan_bad_args():
    G, D = mlp_generator(), mlp_discriminator()
    with pytest.raises(ValueError, match='loss'): train_gan(G, D, sample_ring, loss='minimax', steps=1, z_dim=2)
    with pytest.raises(ValueError, match='steps'): train_gan(G, D, sample_ring, steps=0, z_dim=2)
    with pytest.raises(TypeError, match='k'): train_gan(G, D, sample_ring, steps=1, k=1.5, z_dim=2)
    with pytest.raises(ValueError, match='lr'): train_gan(G, D, sample_ring, steps=1, z_dim=2, lr=0.0)
    with pytest.raises(ValueError, match='d_lr'): train_gan(G, D, sample_ring, steps=1, z_dim=2, d_lr=-1e-3)
    with pytest.raises(TypeError, match='d_lr'): train_gan(G, D, sample_ring, steps=1, z_dim=2, d_lr='fast')
    with pytest.raises(ValueError, match='snapshot_every'): train_gan(G, D, sample_ring, steps=1, z_dim=2, snapshot_every=0)
    with pytest.raises(TypeError, match='G'): train_gan('G', D, sample_ring, steps=1, z_dim=2)
    with pytest.raises(TypeError, match='sample_real'): train_gan(G, D, None, steps=1, z_dim=2)


def test_train_gan_returns_a_history_of_steps():
    G, D = mlp_generator(), mlp_discriminator()
    out = train_gan(G, D, sample_ring, loss='wgan-gp', k=2, steps=3, z_dim=2, batch_size=32, snapshot_every=1,
                    snapshot_z=torch.randn(10, 2), device='cpu')
    assert isinstance(out, GANHistory) and isinstance(out, History) and len(out) == 3
    assert out['step'] == [1, 2, 3] and all(math.isfinite(v) for v in out['d_loss'] + out['g_loss'])
    assert len(out['snapshots']) == 3 and out.snapshots[0][1].shape == (10, 2)   # dict-style access of earlier versions
    # the critic's estimate and the penalty: -L_critic = W-hat - lambda * GP on every row
    for row in out:
        assert math.isclose(-row['d_loss'], row['w_est'] - 10.0 * row['gp'], rel_tol=1e-4, abs_tol=1e-5)
        assert math.isclose(row['w_est'], row['d_real'] - row['d_fake'], abs_tol=1e-6) and row['gp'] >= 0


@pytest.mark.parametrize('loss', ['saturating', 'non-saturating'])
def test_train_gan_logs_probabilities_for_classic_losses(loss):
    G, D = mlp_generator(), mlp_discriminator()
    out = train_gan(G, D, sample_ring, loss=loss, steps=4, k=2, z_dim=2, batch_size=16, d_lr=1e-3, device='cpu')
    assert out.columns == ['step', 'd_loss', 'g_loss', 'd_real', 'd_fake']          # no critic columns
    assert all(0 < v < 1 for v in out['d_real'] + out['d_fake'])                    # D(x) and D(G(z)) are probabilities
    assert all(v > 0 for v in out['d_loss'])                                        # -V > 0 for any D in (0, 1)


def test_image_networks_shapes():
    G, D = DCGenerator(16, 8), DCDiscriminator(8)
    x = G(torch.randn(4, 16))
    assert x.shape == (4, 1, 28, 28) and x.min() >= -1 and x.max() <= 1 and D(x).shape == (4,)


def test_ring_quality_edge_cases():
    collapsed = torch.tensor([[2.0, 0.0]]).repeat(1000, 1)
    assert ring_quality(collapsed) == (1, 1.0)
    assert ring_quality(collapsed.double()) == (1, 1.0)
    assert ring_quality(sample_ring(4000, generator=torch.Generator().manual_seed(0)))[0] == 8


DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else []) + \
          (['mps'] if getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available() else [])


@pytest.mark.parametrize('device', DEVICES)
def test_ring_quality_on_every_device_matches_cpu(device):
    "The same code path on any device: centres follow the samples, the result is plain Python numbers."
    s = sample_ring(4000, generator=torch.Generator().manual_seed(0))
    s[:500] = 0.0                                                                   # some low-quality samples at the centre
    out = ring_quality(s.to(device))
    assert out == ring_quality(s) and isinstance(out[0], int) and isinstance(out[1], float)
    assert out[0] == 8 and abs(out[1] - (1 - math.exp(-4.5)) * 3500 / 4000) < 0.01


def test_ring_quality_accepts_samples_that_require_grad():
    "Samples straight from a generator (no `torch.no_grad()`) carry autograd history."
    G = mlp_generator()
    recall, precision = ring_quality(G(torch.randn(256, 2)))
    assert 0 <= recall <= 8 and 0 <= precision <= 1


def test_d_star_checker():
    assert check_d_star(lambda a, b: a / (a + b))
    with pytest.raises(AssertionError, match='maximiser'): check_d_star(lambda a, b: b / (a + b))


def test_train_gan_custom_losses():
    "The swapped-sign objective on raw outputs through the hooks: D pushes its outputs on real data down without bound."
    seen = []
    def d_wrong(D, real, fake):                     # minimise E[D(x)] + E[D(G(z))], i.e. maximise -E[D(x)] - E[D(G(z))]
        seen.append((real.shape, fake.shape))
        return D(real).mean() + D(fake).mean()
    G, D = mlp_generator(), mlp_discriminator()
    out = train_gan(G, D, sample_ring, steps=30, k=2, z_dim=2, batch_size=16, lr=1e-3, device='cpu',
                    d_loss_fn=d_wrong, g_loss_fn=lambda s: s.mean())
    assert len(seen) == 60 and seen[0] == ((16, 2), (16, 2))
    assert out.columns == ['step', 'd_loss', 'g_loss', 'd_real', 'd_fake']
    assert out['d_real'][-1] < out['d_real'][0] < 1 and out['d_real'][-1] < 0   # raw outputs, not probabilities


def test_train_gan_custom_losses_bad_args():
    G, D = mlp_generator(), mlp_discriminator()
    with pytest.raises(TypeError, match='d_loss_fn'): train_gan(G, D, sample_ring, steps=1, z_dim=2, d_loss_fn='bce')
    with pytest.raises(TypeError, match='g_loss_fn'): train_gan(G, D, sample_ring, steps=1, z_dim=2, g_loss_fn=1.0)
    with pytest.raises(TypeError, match='d_loss_fn must return a scalar'):
        train_gan(G, D, sample_ring, steps=1, z_dim=2, device='cpu', d_loss_fn=lambda D, r, f: D(r))
