import math

import numpy as np
import pytest
import torch
from torch import nn

from fm_course.gan import (DCDiscriminator, DCGenerator, check_d_star, discriminator_loss, frechet_distance, gan_value,
                           generator_loss, gradient_penalty, jensen_shannon, mlp_discriminator, mlp_generator,
                           optimal_discriminator, ring_quality, sample_ring, train_gan)


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


def test_jensen_shannon_properties():
    p, q = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert abs(jensen_shannon(p, q).item() - math.log(2)) < 1e-6        # disjoint supports: log 2
    assert jensen_shannon(p, p).item() == 0
    r = torch.tensor([0.3, 0.7])
    assert torch.isclose(jensen_shannon(p, r), jensen_shannon(r, p))


@pytest.mark.parametrize('fn, args, err, msg', [
    (gan_value, ([1.0], torch.zeros(1)), TypeError, 'real_logits must be a torch.Tensor'),
    (gan_value, (torch.zeros(0), torch.zeros(1)), ValueError, 'real_logits is empty'),
    (generator_loss, (torch.zeros(2), 'yes'), TypeError, 'non_saturating must be a bool'),
    (optimal_discriminator, (torch.tensor([-1.0]), torch.tensor([1.0])), ValueError, 'p_data must hold finite values >= 0'),
    (optimal_discriminator, (torch.ones(2), torch.ones(3)), ValueError, 'same shape'),
    (optimal_discriminator, ([0.5], torch.ones(1)), TypeError, 'p_data must be a torch.Tensor or numpy array'),
    (jensen_shannon, (torch.tensor([0.5, 0.6]), torch.tensor([0.5, 0.5])), ValueError, 'p must sum to 1'),
    (frechet_distance, (torch.zeros(1, 3), torch.zeros(5, 3)), ValueError, 'f1 must be a'),
    (frechet_distance, (torch.zeros(5, 3), torch.zeros(5, 2)), ValueError, 'same feature dimension'),
])
def test_bad_inputs(fn, args, err, msg):
    with pytest.raises(err, match=msg): fn(*args)


def test_gradient_penalty_linear_critic_and_errors():
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad(): lin.weight.copy_(torch.tensor([[0.6, 0.8]]))
    x, y = torch.randn(16, 2), torch.randn(16, 2)
    assert gradient_penalty(lin, x, y).item() < 1e-10
    with pytest.raises(ValueError, match='same shape'): gradient_penalty(lin, x, y[:3])
    with pytest.raises(TypeError, match='critic must be callable'): gradient_penalty(3, x, y)


def test_train_gan_bad_args_and_short_run():
    G, D = mlp_generator(), mlp_discriminator()
    with pytest.raises(ValueError, match='loss must be one of'): train_gan(G, D, sample_ring, loss='minimax', steps=1, z_dim=2)
    with pytest.raises(ValueError, match='steps must be a positive int'): train_gan(G, D, sample_ring, steps=0, z_dim=2)
    out = train_gan(G, D, sample_ring, loss='wgan-gp', k=2, steps=3, z_dim=2, batch_size=32, snapshot_every=1, snapshot_z=torch.randn(10, 2))
    assert out['d_loss'].shape == (3,) and len(out['snapshots']) == 3 and torch.isfinite(out['g_loss']).all()


def test_image_networks_shapes():
    G, D = DCGenerator(16, 8), DCDiscriminator(8)
    x = G(torch.randn(4, 16))
    assert x.shape == (4, 1, 28, 28) and x.min() >= -1 and x.max() <= 1 and D(x).shape == (4,)


def test_ring_quality_detects_collapse():
    collapsed = torch.tensor([[2.0, 0.0]]).repeat(1000, 1)
    assert ring_quality(collapsed) == (1, 1.0)
    assert ring_quality(sample_ring(4000, generator=torch.Generator().manual_seed(0)))[0] == 8


def test_d_star_checker():
    assert check_d_star(lambda a, b: a / (a + b))
    with pytest.raises(AssertionError, match='maximiser'): check_d_star(lambda a, b: b / (a + b))
