import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from fm_course.compress import (Latency, WeightFakeQuant, affine_qparams, apply_masks, compare_latency, dequantize_affine, fake_quantize,
                                fake_quantize_weights, gradual_sparsity, magnitude_masks, measure_latency, model_size_bytes,
                                prune_channels, quantize_affine, remove_masks, sparsity)
from fm_course.models import SmallCNN


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5), nn.ReLU(), nn.Linear(5, 3))


@pytest.mark.parametrize('s, err', [(1.0, ValueError), (-0.1, ValueError), (1.5, ValueError), ('0.5', TypeError), (None, TypeError)])
def test_sparsity_outside_unit_interval(s, err):
    with pytest.raises(err, match='sparsity'): magnitude_masks(net(), s)
    with pytest.raises(err, match='final'): gradual_sparsity(0, s, steps=10)


def test_magnitude_masks_bad_inputs():
    with pytest.raises(TypeError, match='model'): magnitude_masks(torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match='scope'): magnitude_masks(net(), 0.5, scope='channel')
    with pytest.raises(TypeError, match='include'): magnitude_masks(net(), 0.5, include=())
    with pytest.raises(TypeError, match='include'): magnitude_masks(net(), 0.5, include=('Linear',))
    with pytest.raises(ValueError, match='include'): magnitude_masks(nn.Sequential(nn.ReLU()), 0.5)
    with pytest.raises(ValueError, match='include'): sparsity(nn.Sequential(nn.ReLU()))


def test_masks_edge_cases():
    m = net()
    assert all(mask.all() for mask in magnitude_masks(m, 0.0).values())       # sparsity 0 keeps every weight
    layer = magnitude_masks(m, 0.5, scope='layer', include=nn.Linear)         # a single type is accepted
    assert set(layer) == {'2.weight', '4.weight'}
    for n, mask in layer.items():                                             # each layer loses round(s * n) weights
        assert (~mask).sum().item() == round(0.5 * mask.numel())
    apply_masks(m, magnitude_masks(m, 0.5))
    first = {n: mod.weight_mask.clone() for n, mod in m.named_modules() if hasattr(mod, 'weight_mask')}
    apply_masks(m, magnitude_masks(m, 0.7))                                   # a second mask multiplies into the first
    for n, mod in m.named_modules():
        if n in first: assert (mod.weight_mask <= first[n]).all()
    assert abs(sparsity(m) - 0.7) < 0.01
    remove_masks(m)
    assert not any(hasattr(mod, 'weight_orig') for mod in m.modules())


def test_apply_masks_bad_inputs():
    m, masks = net(), magnitude_masks(net(), 0.5)
    with pytest.raises(TypeError, match='masks'): apply_masks(m, [masks['0.weight']])
    with pytest.raises(ValueError, match='no such weight'): apply_masks(m, {'7.weight': masks['0.weight']})
    with pytest.raises(ValueError, match=r"masks\['2.weight'\] must be a tensor of shape"): apply_masks(m, {'2.weight': masks['0.weight']})


def test_gradual_sparsity_bad_inputs():
    with pytest.raises(ValueError, match='steps'): gradual_sparsity(0, 0.5, steps=0)
    with pytest.raises(ValueError, match='initial'): gradual_sparsity(0, 0.5, steps=10, initial=0.6)
    with pytest.raises(TypeError, match='t must be'): gradual_sparsity(0.5, 0.5, steps=10)
    assert gradual_sparsity(-5, 0.5, steps=10, start=0) == 0.0 and gradual_sparsity(99, 0.5, steps=10) == 0.5


@pytest.mark.parametrize('qmin, qmax', [(0, 0), (127, -128), (5, 4)])
def test_qmin_must_be_below_qmax(qmin, qmax):
    x = torch.randn(10)
    with pytest.raises(ValueError, match='qmin must be < qmax'): quantize_affine(x, 0.1, 0, qmin, qmax)
    with pytest.raises(ValueError, match='qmin must be < qmax'): affine_qparams(-1.0, 1.0, qmin, qmax)
    with pytest.raises(ValueError, match='qmin must be < qmax'): fake_quantize(x, 0.1, 0, qmin, qmax)


@pytest.mark.parametrize('scale', [0.0, -0.5, float('nan'), torch.tensor([0.1, 0.0]), torch.tensor([1, 2])])
def test_scale_must_be_positive(scale):
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match='scale must be'):
        quantize_affine(x, scale, 0, -128, 127, axis=1)
    with pytest.raises(ValueError, match='scale must be'):
        dequantize_affine(torch.zeros(4, 2, dtype=torch.int8), scale, 0, axis=1)


def test_quantize_bad_inputs():
    x = torch.randn(4, 3)
    with pytest.raises(TypeError, match='x must be'): quantize_affine([1.0, 2.0], 0.1, 0, -128, 127)
    with pytest.raises(TypeError, match='qmin'): quantize_affine(x, 0.1, 0, -128.0, 127)
    with pytest.raises(ValueError, match='axis'): quantize_affine(x, torch.ones(3), torch.zeros(3), -128, 127)          # per channel without axis
    with pytest.raises(ValueError, match="scale must have one entry per index of x's dimension 1"): quantize_affine(x, torch.ones(4), 0, -128, 127, axis=1)
    with pytest.raises(ValueError, match='axis'): quantize_affine(x, torch.ones(3), torch.zeros(3), -128, 127, axis=2)
    with pytest.raises(ValueError, match='xmin must be <= xmax'): affine_qparams(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 1.0]), 0, 255)
    with pytest.raises(TypeError, match='xmin'): affine_qparams('a', 1.0, 0, 255)
    with pytest.raises(TypeError, match='symmetric'): affine_qparams(-1.0, 1.0, 0, 255, symmetric=1)


def test_quantize_edge_cases():
    s, z = affine_qparams(0.0, 0.0, -128, 127)                                 # an all-zero range: the smallest scale, 0 exact
    assert s.item() == torch.finfo(torch.float32).eps and quantize_affine(torch.zeros(3), s, z, -128, 127).eq(z.item()).all()
    s, z = affine_qparams(2.0, 5.0, 0, 255)                                    # the range is widened to contain 0
    assert z.item() == 0 and dequantize_affine(quantize_affine(torch.zeros(1), s, z, 0, 255), s, z).item() == 0.0
    assert affine_qparams(-1.0, 3.0, -128, 127, symmetric=True)[1].item() == 0
    assert affine_qparams(-1.0, 3.0, 0, 255, symmetric=True)[1].item() == 128
    x = torch.randn(20)
    assert quantize_affine(x, 0.1, 0, -128, 127).dtype == torch.int8
    assert quantize_affine(x, 0.1, 128, 0, 255).dtype == torch.uint8
    assert quantize_affine(x, 0.1, 0, -1000, 1000).dtype == torch.int16
    assert quantize_affine(x, 0.1, 0, -128, 127, dtype=torch.int32).dtype == torch.int32


def test_weight_fake_quant_bad_bits_and_baking():
    for bits, err in ((1, ValueError), (17, ValueError), (4.0, TypeError)):
        with pytest.raises(err, match='bits'): WeightFakeQuant(bits)
        with pytest.raises(err, match='bits'): fake_quantize_weights(nn.Linear(3, 3), bits)
    lin = fake_quantize_weights(nn.Linear(8, 4), 2)
    parametrize.remove_parametrizations(lin, 'weight')                        # baked: at most 3 values per row, -s, 0, s
    assert not parametrize.is_parametrized(lin) and all(len(r.unique()) <= 3 for r in lin.weight)


def test_prune_channels_bad_inputs_and_sizes():
    with pytest.raises(TypeError, match='SmallCNN'): prune_channels(net(), 0.5)
    with pytest.raises(ValueError, match='fraction'): prune_channels(SmallCNN(width=4), 1.0)
    cnn = SmallCNN(width=8).eval()
    small = prune_channels(cnn, 0.99)                                          # at least one channel is kept
    assert [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)] == [1, 1, 1, 1]
    assert small(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in cnn.parameters()) == sum(p.numel() for p in copy.deepcopy(cnn).parameters())   # the original is untouched


def test_model_size_and_latency():
    m = net()
    with pytest.raises(TypeError, match='model'): model_size_bytes({'w': torch.zeros(3)})
    with pytest.raises(TypeError, match='compress'): model_size_bytes(m, compress=1)
    big = nn.Linear(256, 256)
    with torch.no_grad(): big.weight.zero_()
    assert model_size_bytes(big, compress=True) < model_size_bytes(big) / 2   # zeros compress
    with pytest.raises(ValueError, match='tensor input'): measure_latency(m, 3)
    with pytest.raises(ValueError, match='repeats'): measure_latency(m, torch.zeros(1, 1, 8, 8), repeats=0)
    threads = torch.get_num_threads()
    m.train()
    lat = measure_latency(m, torch.zeros(2, 1, 8, 8), repeats=3, warmup=1, threads=1)
    assert isinstance(lat, Latency) and lat.threads == 1 and lat.batch == 2 and lat.q25 <= lat.median <= lat.q75
    assert torch.get_num_threads() == threads and m.training                   # threads and mode restored


def test_compare_latency_bad_inputs_and_interleaving():
    a, b, x = net(), net(), torch.zeros(2, 1, 8, 8)
    with pytest.raises(TypeError, match='models'): compare_latency([a, b], x)
    with pytest.raises(ValueError, match='models'): compare_latency({}, x)
    with pytest.raises(TypeError, match=r"models\['b'\]"): compare_latency({'a': a, 'b': torch.zeros(3)}, x)
    with pytest.raises(ValueError, match='tensor input'): compare_latency({'a': a}, 3)
    with pytest.raises(ValueError, match='repeats'): compare_latency({'a': a}, x, repeats=0)
    calls = []
    a.register_forward_hook(lambda *_: calls.append('a')); b.register_forward_hook(lambda *_: calls.append('b'))
    a.eval(); b.train(); threads = torch.get_num_threads()
    lat = compare_latency({'a': a, 'b': b}, x, repeats=3, warmup=1, threads=1)
    assert calls == ['a', 'b', 'a', 'b', 'b', 'a', 'a', 'b']                  # warm-up, then interleaved in a rotating order
    assert set(lat) == {'a', 'b'} and all(isinstance(v, Latency) and v.repeats == 3 and v.threads == 1 and v.batch == 2 for v in lat.values())
    assert torch.get_num_threads() == threads and b.training and not a.training   # threads and modes restored
