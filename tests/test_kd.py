import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fm_course.kd import check_logit_matching, distill, kd_loss, softmax_t, teacher_logits
from fm_course.train import History, TensorLoader


@pytest.mark.parametrize('T, err', [(float('nan'), ValueError), ('4', TypeError), (True, TypeError), (None, TypeError)])
def test_temperature_must_be_positive_number(T, err):
    with pytest.raises(err, match='T must be'): softmax_t(torch.zeros(2, 3), T)
    with pytest.raises(err, match='T must be'): kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), T=T)


def test_kd_loss_bad_inputs():
    z = torch.zeros(4, 3)
    with pytest.raises(TypeError, match='logits'): softmax_t([1.0, 2.0], 1.0)
    with pytest.raises(TypeError, match='student_logits'): kd_loss([[0.0] * 3] * 4, z)
    with pytest.raises(TypeError, match='teacher_logits'): kd_loss(z, [[0.0] * 3] * 4)
    with pytest.raises(ValueError, match=r'student_logits and teacher_logits must both be \[N, K\]'): kd_loss(torch.zeros(3), torch.zeros(3))
    for a, err in ((-0.1, ValueError), (True, TypeError), (None, TypeError)):
        with pytest.raises(err, match='alpha'): kd_loss(z, z, torch.zeros(4).long(), alpha=a)
    with pytest.raises(TypeError, match='labels'): kd_loss(z, z, [0, 1, 2, 0])
    with pytest.raises(ValueError, match=r'labels must be a tensor of shape \[4\]'): kd_loss(z, z, torch.zeros(4, 1).long())


def test_kd_loss_limits_and_teacher_detached():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 5, generator=g, requires_grad=True); v = torch.randn(8, 5, generator=g, requires_grad=True)
    y = torch.randint(0, 5, (8,), generator=g)
    assert kd_loss(v.detach(), v.detach(), T=3.0).abs() < 1e-6                        # KL(p||p) = 0
    assert torch.allclose(kd_loss(z, v, y, alpha=0.0), F.cross_entropy(z, y))       # alpha = 0: labels only
    assert torch.allclose(kd_loss(z, v, y, T=2.0, alpha=1.0), kd_loss(z, v, T=2.0))  # alpha = 1: soft term only
    kd_loss(z, v, y).backward()
    assert v.grad is None and z.grad is not None


def test_kd_loss_in_bf16_is_computed_in_float32():
    z = torch.randn(4, 6).bfloat16(); v = torch.randn(4, 6).bfloat16()
    out = kd_loss(z, v)
    assert out.dtype == torch.float32
    assert torch.allclose(out, kd_loss(z.float(), v.float()))


def test_logit_matching_checker():
    def right(z, v):
        zc, vc = z - z.mean(1, keepdim=True), v - v.mean(1, keepdim=True)
        return ((zc - vc) ** 2).mean() / 2
    assert check_logit_matching(right)
    with pytest.raises(AssertionError, match='expected'): check_logit_matching(lambda z, v: ((z - v) ** 2).mean())
    with pytest.raises(AssertionError, match='scalar'): check_logit_matching(lambda z, v: z - v)


def test_distill_learns_from_teacher_alone():
    "A student distilled with alpha=1 (no labels) learns a teacher's linear rule; labels here are deliberately wrong."
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 2, generator=g)
    teacher = nn.Linear(2, 2)
    with torch.no_grad(): teacher.weight.copy_(torch.tensor([[4.0, 0.0], [-4.0, 0.0]])); teacher.bias.zero_()
    wrong_labels = torch.zeros(512, dtype=torch.long)
    student = nn.Linear(2, 2)
    distill(student, teacher, x, wrong_labels, T=2.0, alpha=1.0, epochs=5, lr=0.05, batch_size=32, device='cpu')
    agree = (student(x).argmax(1) == teacher(x).argmax(1)).float().mean()
    assert agree > 0.95
    assert torch.equal(teacher_logits(teacher, x, device='cpu'), teacher(x).detach())


def test_distill_bad_args():
    x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    student = nn.Linear(3, 2)
    with pytest.raises(TypeError, match='teacher'): distill(student, 'teacher', x, y, epochs=1)
    with pytest.raises(TypeError, match='student'): distill(lambda t: t, nn.Linear(3, 2), x, y, epochs=1)
    with pytest.raises(TypeError, match='loss_fn'): distill(student, nn.Linear(3, 2), x, y, epochs=1, loss_fn='kl')
    with pytest.raises(ValueError, match='batch_size'): distill(student, nn.Linear(3, 2), x, y, epochs=1, batch_size=0)
    with pytest.raises(ValueError, match='alpha'): distill(student, nn.Linear(3, 2), x, y, epochs=1, alpha=2.0)
    with pytest.raises(TypeError, match='x must be'): distill(student, nn.Linear(3, 2), x.tolist(), y, epochs=1)
    with pytest.raises(TypeError, match='y must be'): distill(student, nn.Linear(3, 2), x, y.tolist(), epochs=1)
    with pytest.raises(ValueError, match=r'y \[N\]'): distill(student, nn.Linear(3, 2), x, y[:10], epochs=1)
    with pytest.raises(ValueError, match='epochs'): distill(student, nn.Linear(3, 2), x, y, epochs=0)
    with pytest.raises(TypeError, match='epochs'): distill(student, nn.Linear(3, 2), x, y, epochs=2.0)
    with pytest.raises(ValueError, match='lr'): distill(student, nn.Linear(3, 2), x, y, epochs=1, lr=0.0)
    with pytest.raises(ValueError, match='weight_decay'): distill(student, nn.Linear(3, 2), x, y, epochs=1, weight_decay=-1e-4)
    with pytest.raises(ValueError, match='batch_size'): distill(student, nn.Linear(3, 2), x, y, epochs=1, batch_size=65)   # no full batch
    with pytest.raises(TypeError, match='prep'): distill(student, nn.Linear(3, 2), x, y, epochs=1, prep='normalise')
    with pytest.raises(TypeError, match='augment'): distill(student, nn.Linear(3, 2), x, y, epochs=1, augment=0.1)
    with pytest.raises(TypeError, match='tfm'): teacher_logits(nn.Linear(3, 2), x, tfm='normalise', device='cpu')
    with pytest.raises(ValueError, match='batch_size'): teacher_logits(nn.Linear(3, 2), x, batch_size=0, device='cpu')
    with pytest.raises(ValueError, match='prep and augment'):       # augment replaces prep: both given is an error, not a silent choice
        distill(student, nn.Linear(3, 2), x, y, epochs=1, prep=lambda t: t, augment=lambda t: t)


def _teacher_with_mixed_state():
    teacher = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2)).train()
    teacher[1].eval()                                   # a submodule in another mode than its parent
    teacher[2].weight.requires_grad_(False)             # and one frozen parameter
    return teacher


def _state(m): return [t.training for t in m.modules()], [p.requires_grad for p in m.parameters()]


@pytest.mark.parametrize('augment', [None, lambda t: t + 0.01 * torch.randn_like(t)])
def test_distill_restores_the_teachers_modes_and_flags(augment):
    x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    teacher = _teacher_with_mixed_state(); before = _state(teacher)
    h = distill(nn.Linear(3, 2), teacher, x, y, epochs=2, augment=augment, batch_size=16, device='cpu',
                valid_dl=TensorLoader(x, y, batch_size=64))
    assert isinstance(h, History) and len(h) == 2 and 'valid_acc' in h.last
    assert _state(teacher) == before
    def boom(z, v, yb): raise RuntimeError('loss failed')
    with pytest.raises(RuntimeError, match='loss failed'): distill(nn.Linear(3, 2), teacher, x, y, epochs=1, loss_fn=boom, device='cpu')
    assert _state(teacher) == before                    # restored when training fails, too
    teacher_logits(teacher, x, device='cpu')
    assert _state(teacher) == before


def test_distill_loss_fn_hook_replaces_kd_loss():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 3, generator=g), torch.randint(0, 2, (128,), generator=g)
    teacher, s0 = nn.Linear(3, 2), nn.Linear(3, 2)
    s1, s2, s3 = copy.deepcopy(s0), copy.deepcopy(s0), copy.deepcopy(s0)
    h1 = distill(s1, teacher, x, y, T=2.0, alpha=0.5, epochs=2, device='cpu')
    h2 = distill(s2, teacher, x, y, epochs=2, device='cpu', loss_fn=lambda z, v, yb: kd_loss(z, v, yb, T=2.0, alpha=0.5))
    assert h1['train_loss'] == h2['train_loss'] and torch.equal(s1.weight, s2.weight)
    distill(s3, teacher, x, y, epochs=2, device='cpu', loss_fn=lambda z, v, yb: F.mse_loss(z, v))   # any (z, v, y) -> scalar
    assert not torch.equal(s3.weight, s1.weight)


def test_distill_with_precomputed_teacher_logits_is_the_same_run():
    "Passing `v = teacher_logits(teacher, x, prep)` trains the same student as letting `distill` compute it."
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 3, generator=g), torch.randint(0, 2, (128,), generator=g)
    teacher, s0 = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)), nn.Linear(3, 2)
    prep = lambda t: 2 * t
    s1, s2 = copy.deepcopy(s0), copy.deepcopy(s0)
    h1 = distill(s1, teacher, x, y, epochs=2, prep=prep, device='cpu')
    h2 = distill(s2, teacher, x, y, epochs=2, prep=prep, v=teacher_logits(teacher, x, prep, device='cpu'), device='cpu')
    assert h1['train_loss'] == h2['train_loss'] and torch.equal(s1.weight, s2.weight)


def test_distill_bad_precomputed_teacher_logits():
    x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    student, teacher = nn.Linear(3, 2), nn.Linear(3, 2)
    with pytest.raises(TypeError, match='v must be'): distill(student, teacher, x, y, epochs=1, v=[[0.0, 0.0]] * 64)
    for bad in (torch.zeros(63, 2), torch.zeros(64), torch.zeros(64, 2, 1), torch.zeros(64, 2, dtype=torch.long)):
        with pytest.raises(ValueError, match=r'v must be .*\[N, K\] with N = 64'): distill(student, teacher, x, y, epochs=1, v=bad)
    with pytest.raises(ValueError, match='v and augment'):
        distill(student, teacher, x, y, epochs=1, augment=lambda t: t, v=torch.zeros(64, 2))
    with pytest.raises(ValueError, match='same shape'):             # K that differs from the student's outputs: kd_loss says so
        distill(student, teacher, x, y, epochs=1, v=torch.zeros(64, 5), device='cpu')
