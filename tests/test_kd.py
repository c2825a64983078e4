import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fm_course.kd import check_logit_matching, distill, kd_loss, softmax_t, teacher_logits
from fm_course.train import TensorLoader


@pytest.mark.parametrize('T', [0, -1.0, float('nan'), '4', True])
def test_temperature_must_be_positive_number(T):
    with pytest.raises(ValueError, match='T must be a number > 0'): softmax_t(torch.zeros(2, 3), T)
    with pytest.raises(ValueError, match='T must be a number > 0'): kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), T=T)


def test_kd_loss_bad_inputs():
    z = torch.zeros(4, 3)
    with pytest.raises(TypeError, match='logits must be a torch.Tensor'): softmax_t([1.0, 2.0], 1.0)
    with pytest.raises(TypeError, match='teacher_logits must be a torch.Tensor'): kd_loss(z, [[0.0] * 3] * 4)
    with pytest.raises(ValueError, match='same shape'): kd_loss(z, torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r'\[N, K\]'): kd_loss(torch.zeros(3), torch.zeros(3))
    for a in (-0.1, 1.1, True, None):
        with pytest.raises(ValueError, match='alpha must be in'): kd_loss(z, z, torch.zeros(4).long(), alpha=a)
    with pytest.raises(ValueError, match=r'labels must be a tensor of shape \[4\]'): kd_loss(z, z, torch.zeros(3).long())


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
    distill(student, teacher, x, wrong_labels, T=2.0, alpha=1.0, epochs=5, lr=0.05, batch_size=32)
    agree = (student(x).argmax(1) == teacher(x).argmax(1)).float().mean()
    assert agree > 0.95
    assert torch.equal(teacher_logits(teacher, x), teacher(x).detach())


def test_distill_with_augmentation_labels_each_batch():
    x = torch.randn(64, 3); y = torch.randint(0, 2, (64,))
    teacher, student = nn.Linear(3, 2), nn.Linear(3, 2)
    h = distill(student, teacher, x, y, epochs=2, augment=lambda t: t + 0.01 * torch.randn_like(t), batch_size=16,
                valid_dl=TensorLoader(x, y, batch_size=64))
    assert len(h) == 2 and 'valid_acc' in h.last
    with pytest.raises(TypeError, match='teacher'): distill(student, 'teacher', x, y, epochs=1)
