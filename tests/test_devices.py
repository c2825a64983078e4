"""Device hygiene without a second device (issue 20). Three checks, each with the `meta` device standing in for a GPU:
1. nothing is created on the *default* device: with `torch.device('meta')` as the default, every public function given
   CPU models and tensors still computes on the CPU (a tensor made without `device=` lands on meta and the call fails or
   returns meta tensors), as it must when the model and data are on `cuda:1` and the default is the CPU;
2. the functions a training step calls do not synchronise with the host: given meta tensors (which have no values) they
   return meta tensors, where an `.item()`, a `bool(tensor)` or a data-dependent shape would raise;
3. data is moved once: a loader over tensors on the device indexes them there, copying nothing but the epoch's order."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import BertConfig, BertForMaskedLM

from fm_course import adversarial, core, foundations, gan, kd, mlm, models, rl, train, transfer, vision


def gen(seed=0): return torch.Generator().manual_seed(seed)
def flat(): return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
def tensors_in(out):
    if isinstance(out, torch.Tensor): yield out
    elif isinstance(out, nn.Module): yield from out.parameters()
    elif isinstance(out, dict): yield from (t for v in out.values() for t in tensors_in(v))
    elif isinstance(out, (list, tuple)): yield from (t for v in out for t in tensors_in(v))

X, Y = torch.rand(64, 1, 28, 28), torch.randint(10, (64,))


def _fit():
    m, dl = flat(), train.TensorLoader(X, Y, batch_size=16, shuffle=True, drop_last=True, generator=gen())
    opt = torch.optim.SGD(m.parameters(), 0.1)
    return lambda: train.fit(m, dl, loss_fn=F.cross_entropy, opt=opt, epochs=1, valid_dl=dl, metrics={'acc': train.accuracy}, device='cpu', progress=False)

def _finetune():
    m, dl = flat(), train.TensorLoader(X, Y, batch_size=16)
    return lambda: train.finetune(m, dl, epochs=1, lr=1e-3, device='cpu', valid_dl=dl)

def _pretrain():
    torch.manual_seed(0)
    m = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=16))
    seqs = torch.randint(5, 50, (32, 8), generator=gen())
    return lambda: mlm.pretrain_mlm(m, seqs, steps=2, batch_size=4, lr=1e-3, special_ids=[0, 1, 2], mask_token_id=3, eval_every=1, eval_sequences=seqs[:4], device='cpu')

def _dqn():
    cfg = rl.DQNConfig(seed=0, device='cpu', hidden=(8,), batch_size=8, total_steps=40, learning_starts=10, train_freq=10, gradient_steps=2, eval_every=40, eval_episodes=1)
    return lambda: rl.train_dqn(cfg)

def call(fn, *args, **kwargs): return lambda: (lambda: fn(*args, **kwargs))

CNN = models.SmallCNN(width=4)
ON_THE_CPU = {
    'TensorLoader': lambda: (lambda dl: lambda: list(dl))(train.TensorLoader(X, Y, batch_size=16, shuffle=True, generator=gen())),
    'LengthBuckets': lambda: (lambda labels: lambda: list(train.LengthBuckets([[1, 2, 3], [4, 5], [6]], labels, 2, 0, shuffle=True, generator=gen(), device='cpu')))(torch.tensor([0, 1, 0])),
    'fit': _fit, 'finetune': _finetune, 'pretrain_mlm': _pretrain, 'train_dqn': _dqn,
    'evaluate': call(train.evaluate, flat(), train.TensorLoader(X, Y, batch_size=16), F.cross_entropy, {'acc': train.accuracy}, device='cpu'),
    'get_preds': call(train.get_preds, flat(), train.TensorLoader(X, Y, batch_size=16), device='cpu'),
    'mask_tokens': call(mlm.mask_tokens, torch.randint(5, 100, (4, 16)), mask_token_id=3, vocab_size=100, generator=gen()),
    'mlm_loss': call(mlm.mlm_loss, torch.randn(4, 16, 100), torch.randint(100, (4, 16))),
    'teacher_logits': call(kd.teacher_logits, CNN, X, device='cpu'),
    'distill': call(kd.distill, models.SmallCNN(width=2), CNN, X, Y, epochs=1, batch_size=16, device='cpu'),
    'optimal_discriminator': call(gan.optimal_discriminator, torch.rand(8), torch.rand(8)),
    'jensen_shannon': call(gan.jensen_shannon, torch.softmax(torch.randn(8), 0), torch.softmax(torch.randn(8), 0)),
    'gradient_penalty': call(gan.gradient_penalty, gan.mlp_discriminator(), torch.randn(8, 2), torch.randn(8, 2), generator=gen()),
    'train_gan': call(gan.train_gan, gan.mlp_generator(), gan.mlp_discriminator(), lambda n: gan.sample_ring(n, generator=gen()), steps=2, z_dim=2, batch_size=8, device='cpu'),
    'train_gan wgan-gp': call(gan.train_gan, gan.mlp_generator(), gan.mlp_discriminator(), lambda n: gan.sample_ring(n, generator=gen()), loss='wgan-gp', steps=2, z_dim=2, batch_size=8, device='cpu'),
    'sample_ring': call(gan.sample_ring, 8, generator=gen()),
    'ring_quality': call(gan.ring_quality, torch.randn(100, 2)),
    'frechet_distance': call(gan.frechet_distance, torch.randn(50, 4), torch.randn(50, 4)),
    'fgsm': call(adversarial.fgsm, CNN, X, Y, eps=0.1),
    'pgd': call(adversarial.pgd, CNN, X, Y, eps=0.1, alpha=0.02, steps=2, generator=gen()),
    'robust_accuracy': call(adversarial.robust_accuracy, CNN, X, Y, lambda m, a, b: adversarial.fgsm(m, a, b, eps=0.1), batch_size=32),
    'Normalized': call(adversarial.Normalized, CNN),
    'RandomAffineBatch': call(vision.RandomAffineBatch(generator=gen()), X),
    'mnist_batch_tfm': call(vision.mnist_batch_tfm(True, generator=gen()), X),
    'conv2d_im2col': call(foundations.conv2d_im2col, X, torch.randn(4, 1, 3, 3), torch.randn(4), padding=1),
    'inverted_dropout': call(foundations.inverted_dropout, torch.randn(8, 10), 0.5, generator=gen()),
    'mlp2_forward_backward': call(foundations.mlp2_forward_backward, torch.randn(8, 5), torch.randint(3, (8,)), torch.randn(4, 5), torch.randn(4), torch.randn(3, 4), torch.randn(3)),
    'softmax_cross_entropy_grad': call(foundations.softmax_cross_entropy_grad, torch.randn(8, 10), Y[:8]),
    'adamw_step': call(foundations.adamw_step, torch.randn(5), torch.randn(5), torch.zeros(5), torch.zeros(5), 1, 1e-3, 0.01),
    'fingerprint': call(core.fingerprint, X),
    'count_flops': call(core.count_flops, CNN, X),
    'masked_mean': call(models.masked_mean, torch.randn(2, 3, 4), torch.tensor([[1, 1, 0], [1, 0, 0]])),
}


@pytest.mark.parametrize('name', ON_THE_CPU)
def test_nothing_is_created_on_the_default_device(name):
    run = ON_THE_CPU[name]()                     # models and data built on the CPU, before the default changes
    with torch.device('meta'): out = run()       # a tensor made without device= would be on meta
    ts = list(tensors_in(out.model if hasattr(out, 'model') and isinstance(getattr(out, 'model'), nn.Module) else out))
    assert all(t.device.type == 'cpu' for t in ts), f"{name} returned tensors on {sorted({str(t.device) for t in ts})}"


def _bert():
    torch.manual_seed(0)
    return BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=16))

M = lambda *shape, **kw: torch.randn(*shape, device='meta', **kw)
MI = lambda hi, *shape: torch.randint(hi, shape, device='meta')
NO_SYNC = {   # the functions inside training steps: loss, metric, corruption, attack, target
    'accuracy': lambda: train.accuracy(M(8, 10), MI(10, 8)),
    'masked_mean': lambda: models.masked_mean(M(2, 3, 4), MI(2, 2, 3)),
    'MLP': lambda: models.MLP((784, 32, 10)).to('meta')(M(8, 784)),
    'SmallCNN': lambda: models.SmallCNN(width=4).to('meta')(M(8, 1, 28, 28)),
    'mask_tokens': lambda: mlm.mask_tokens(MI(50, 4, 16), mask_token_id=3, vocab_size=50, special_tokens_mask=torch.zeros(4, 16, dtype=torch.bool, device='meta')),
    'mlm_loss (validate=False)': lambda: mlm.mlm_loss(M(4, 16, 50), MI(50, 4, 16), validate=False),
    'masked_accuracy': lambda: mlm.masked_accuracy(M(4, 16, 50), MI(50, 4, 16)),
    'mlm_step': lambda: mlm.mlm_step(_bert().to('meta'), MI(50, 4, 8), MI(50, 4, 8), 8),
    'softmax_t': lambda: kd.softmax_t(M(8, 10), 4.0),
    'kd_loss': lambda: kd.kd_loss(M(8, 10), M(8, 10), MI(10, 8), T=4.0, alpha=0.9),
    'gan_value': lambda: gan.gan_value(M(8), M(8)),
    'discriminator_loss': lambda: gan.discriminator_loss(M(8), M(8)),
    'generator_loss': lambda: gan.generator_loss(M(8)),
    'gradient_penalty': lambda: gan.gradient_penalty(gan.mlp_discriminator().to('meta'), M(8, 2), M(8, 2)),
    'wgan_critic_loss': lambda: gan.wgan_critic_loss(M(8), M(8), M(()), 10.0),
    'wgan_generator_loss': lambda: gan.wgan_generator_loss(M(8)),
    'dqn_target': lambda: rl.dqn_target(M(8), M(8), M(8, 2), 0.99, M(8, 2)),
    'cross_entropy_per_example': lambda: adversarial.cross_entropy_per_example(M(8, 10), MI(10, 8)),
    'fgsm': lambda: adversarial.fgsm(models.SmallCNN(width=4).to('meta'), M(8, 1, 28, 28), MI(10, 8), eps=0.1),
    'pgd': lambda: adversarial.pgd(models.SmallCNN(width=4).to('meta'), M(8, 1, 28, 28), MI(10, 8), eps=0.1, alpha=0.02, steps=2),
    'Normalized': lambda: adversarial.Normalized(models.SmallCNN(width=4)).to('meta')(M(8, 1, 28, 28)),
    'LoRALinear': lambda: transfer.LoRALinear(nn.Linear(8, 8), r=2, alpha=4.0).to('meta')(M(3, 8)),
    'l2sp_penalty': lambda: (lambda m: train.l2sp_penalty(m, {k: torch.zeros_like(v) for k, v in m.named_parameters()}, 0.1))(flat().to('meta')),
}


@pytest.mark.parametrize('name', NO_SYNC)
def test_training_step_functions_never_read_values_on_the_host(name):
    out = NO_SYNC[name]()
    ts = list(tensors_in(out))
    assert ts and all(t.device.type == 'meta' for t in ts), f"{name} returned {[str(t.device) for t in ts]}"


class CrossDeviceCopies(TorchDispatchMode):
    "Counts copies from one device to another (`aten._to_copy` / `copy_` between devices)."
    def __init__(self): super().__init__(); self.n = 0
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            src = args[1] if func is torch.ops.aten.copy_.default else args[0]
            dst = out if isinstance(out, torch.Tensor) else args[0]
            if isinstance(src, torch.Tensor) and src.device != dst.device: self.n += 1
        return out


def test_tensor_loader_moves_only_the_order():
    x, y = M(1000, 20), MI(10, 1000)             # data already on the (stand-in) accelerator
    for shuffle, expected in ((False, 0), (True, 1)):
        dl = train.TensorLoader(x, y, batch_size=100, shuffle=shuffle, generator=gen())
        with CrossDeviceCopies() as copies: batches = list(dl)
        assert len(batches) == 10 and all(t.device.type == 'meta' for b in batches for t in b)
        assert copies.n == expected              # per epoch: the CPU-drawn permutation, once, never a batch


def test_length_buckets_move_data_once():
    with CrossDeviceCopies() as copies:
        lb = train.LengthBuckets([[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]], torch.tensor([0, 1, 0, 1]), 2, 0, shuffle=True, generator=gen(), device='meta')
    built = copies.n
    assert built == 2 * len(lb)                  # each batch's ids and labels, once, when built
    with CrossDeviceCopies() as copies: batches = [b for _ in range(3) for b in lb]
    assert copies.n == 0 and all(t.device.type == 'meta' for b in batches for t in b)
