import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fm_course.adversarial import (Normalized, adversarial_fit, adversarial_train_mnist, check_pgd_l2, check_transfer_attack,
                                   fgsm, pgd, robust_accuracy)
from fm_course.train import History, TensorLoader


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))


def _batch(n=8):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize('attack', [functools.partial(fgsm, eps=0.1), functools.partial(pgd, eps=0.1, alpha=0.05, steps=2)])
def test_attacks_reject_bad_inputs(attack):
    m, (x, y) = _model(), _batch()
    with pytest.raises(TypeError, match='model'): attack(lambda t: t, x, y)
    with pytest.raises(TypeError, match='x'): attack(m, x.tolist(), y)
    with pytest.raises(TypeError, match='y'): attack(m, x, y.tolist())
    with pytest.raises(ValueError, match=r'x must lie in \[0, 1\]'): attack(m, x + 1, y)
    with pytest.raises(ValueError, match=r'x must lie in \[0, 1\]'): attack(m, x - 0.5, y)
    with pytest.raises(ValueError, match='x must be a float tensor'): attack(m, (x * 255).to(torch.uint8), y)
    with pytest.raises(ValueError, match='y must be integer class labels'): attack(m, x, y.float())
    with pytest.raises(ValueError, match='y must be integer class labels'): attack(m, x, y[:3])


@pytest.mark.parametrize('eps, err', [(-0.1, ValueError), (float('nan'), ValueError), ('0.1', TypeError), (None, TypeError), (True, TypeError)])
def test_eps_must_be_a_nonnegative_number(eps, err):
    m, (x, y) = _model(), _batch()
    with pytest.raises(err, match='eps'): fgsm(m, x, y, eps=eps)
    with pytest.raises(err, match='eps'): pgd(m, x, y, eps=eps, alpha=0.01, steps=1)


def test_pgd_bad_arguments():
    m, (x, y) = _model(), _batch()
    for kw, err, name in [(dict(alpha=0.0), ValueError, 'alpha'), (dict(alpha=-1.0), ValueError, 'alpha'), (dict(steps=0), ValueError, 'steps'),
                          (dict(steps=2.0), TypeError, 'steps'), (dict(random_start=1), TypeError, 'random_start'),
                          (dict(generator=0), TypeError, 'generator'), (dict(loss_fn='ce'), TypeError, 'loss_fn'), (dict(trace=()), TypeError, 'trace')]:
        args = dict(eps=0.1, alpha=0.05, steps=2) | kw
        with pytest.raises(err, match=name): pgd(m, x, y, **args)


def test_pgd_edge_cases():
    m, (x, y) = _model(), _batch()
    at_x = pgd(m, x, y, eps=0.0, alpha=0.1, steps=3)                      # eps = 0: the ball is the point x
    assert torch.equal(at_x, x)
    xs = torch.zeros(4, 1, 4, 4); xs[1] = 1.0                                   # at the borders of [0, 1]
    xa = pgd(m, xs, y[:4], eps=0.3, alpha=0.1, steps=3)
    assert xa.min() >= 0 and xa.max() <= 1 and (xa - xs).abs().max() <= 0.3 + 1e-7
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(pgd(m, x, y, eps=0.2, alpha=0.05, steps=2, generator=g1), pgd(m, x, y, eps=0.2, alpha=0.05, steps=2, generator=g2))
    trace = []
    pgd(m, x, y, eps=0.2, alpha=0.05, steps=4, trace=trace)
    assert len(trace) == 5 and all(t.shape == (8,) for t in trace)


def test_attacks_leave_modes_grads_and_running_stats_alone():
    m, (x, y) = _model(), _batch()
    m.train(); m[4].eval()
    for p in m.parameters(): p.grad = torch.full_like(p, 7.0)
    modes, state = [k.training for k in m.modules()], {k: v.clone() for k, v in m.state_dict().items()}
    fgsm(m, x, y, eps=0.1); pgd(m, x, y, eps=0.1, alpha=0.05, steps=3)
    robust_accuracy(m, x, y, functools.partial(pgd, eps=0.1, alpha=0.05, steps=2), batch_size=3, restarts=2)
    assert [k.training for k in m.modules()] == modes
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in m.parameters())
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in state.items())     # eval mode: batch norm's running stats untouched

    def failing_loss(z, t): raise RuntimeError('loss failed')
    with pytest.raises(RuntimeError, match='loss failed'): pgd(m, x, y, eps=0.1, alpha=0.05, steps=1, loss_fn=failing_loss)
    assert [k.training for k in m.modules()] == modes                            # restored when the attack fails too


def test_robust_accuracy_bad_arguments_and_values():
    m, (x, y) = _model(), _batch()
    with pytest.raises(TypeError, match='attack'): robust_accuracy(m, x, y, 'pgd')
    with pytest.raises(ValueError, match='batch_size'): robust_accuracy(m, x, y, None, batch_size=0)
    with pytest.raises(ValueError, match='restarts'): robust_accuracy(m, x, y, None, restarts=0)
    with pytest.raises(ValueError, match=r'x must lie in \[0, 1\]'): robust_accuracy(m, x * 3, y, None)
    with pytest.raises(ValueError, match='at least one input'): robust_accuracy(m, x[:0], y[:0], None)
    m.eval()
    with torch.no_grad(): clean = (m(x).argmax(1) == y).float().mean().item()
    assert robust_accuracy(m, x, y, None, batch_size=3) == pytest.approx(clean)
    wrong = lambda model, xb, yb: xb                                            # the identity attack: clean accuracy
    assert robust_accuracy(m, x, y, wrong) == pytest.approx(clean)
    strong = robust_accuracy(m, x, y, functools.partial(pgd, eps=1.0, alpha=0.5, steps=5), restarts=3)
    assert strong <= clean


def test_robust_accuracy_over_a_list_of_attacks():
    "A list of attacks: the worst case per example; misclassified clean inputs count as wrong; only survivors are attacked again."
    m, (x, y) = _model(), _batch(32)
    m.eval()
    grey, black = torch.full_like(x, 0.5), torch.zeros_like(x)
    with torch.no_grad(): ok_clean, ok_grey, ok_black = (m(t).argmax(1) == y for t in (x, grey, black))
    sizes = []
    def to(img):
        def attack(model, xb, yb):
            sizes.append(len(xb)); return img[:len(xb)]
        return attack
    got = robust_accuracy(m, x, y, [to(grey), to(black)])
    assert got == pytest.approx((ok_clean & ok_grey & ok_black).float().mean().item())
    assert sizes == [int(ok_clean.sum()), int((ok_clean & ok_grey).sum())]          # each run attacks only the examples still correct
    assert robust_accuracy(m, x, y, (to(grey),)) == robust_accuracy(m, x, y, to(grey))
    with pytest.raises(ValueError, match='attack'): robust_accuracy(m, x, y, [])
    with pytest.raises(TypeError, match='attack'): robust_accuracy(m, x, y, [to(grey), 'pgd'])
    with pytest.raises(TypeError, match='attack'): robust_accuracy(m, x, y, 3)


def test_robust_accuracy_per_example():
    "per_example: the accuracy and a [N] boolean mask that agrees with it across batches; the worst case over separate runs is their `&`."
    m, (x, y) = _model(), _batch(32)
    m.eval()
    grey, black = torch.full_like(x, 0.5), torch.zeros_like(x)
    to = lambda img: (lambda model, xb, yb: img[:len(xb)])
    with torch.no_grad(): ok_clean, ok_grey, ok_black = (m(t).argmax(1) == y for t in (x, grey, black))
    acc, correct = robust_accuracy(m, x, y, to(grey), batch_size=5, per_example=True)
    assert correct.dtype == torch.bool and correct.shape == (32,)
    assert torch.equal(correct, ok_clean & ok_grey) and acc == pytest.approx(correct.float().mean().item())
    assert acc == robust_accuracy(m, x, y, to(grey), batch_size=5)                  # the default still returns the float alone
    _, c_black = robust_accuracy(m, x, y, to(black), per_example=True)
    assert torch.equal(correct & c_black, robust_accuracy(m, x, y, [to(grey), to(black)], per_example=True)[1])
    _, c_clean = robust_accuracy(m, x, y, None, batch_size=7, per_example=True)
    assert torch.equal(c_clean, ok_clean)
    with pytest.raises(TypeError, match='per_example'): robust_accuracy(m, x, y, None, per_example=1)


def test_restarts_take_the_worst_case():
    m, (x, y) = _model(), _batch(32)
    calls = []
    def alternating(model, xb, yb):      # first run: clean inputs; second run: inputs that a constant image replaces
        calls.append(1)
        return xb if len(calls) % 2 else torch.full_like(xb, 0.5)
    m.eval()
    with torch.no_grad():
        ok_clean = m(x).argmax(1) == y
        ok_grey = m(torch.full_like(x, 0.5)).argmax(1) == y
    assert robust_accuracy(m, x, y, alternating, restarts=2) == pytest.approx((ok_clean & ok_grey).float().mean().item())


def test_normalized():
    inner = nn.Identity()
    x = torch.rand(2, 3, 4, 4)
    n3 = Normalized(inner, (0.1, 0.2, 0.3), (0.5, 0.5, 2.0))
    assert torch.allclose(n3(x), (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.5, 2.0]).view(1, 3, 1, 1))
    assert list(n3.state_dict()) == []                                          # mean and std are not saved with the weights
    with pytest.raises(ValueError, match='mean and std'): Normalized(inner, 0.5, 0.0)
    with pytest.raises(ValueError, match='mean and std'): Normalized(inner, (0.1, 0.2), (0.5,))
    with pytest.raises(TypeError, match='model'): Normalized('net', 0.5, 0.5)


def test_adversarial_fit_bad_args_and_result():
    m, (x, y) = _model(), _batch(32)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    dl = TensorLoader(x, y, batch_size=8)
    with pytest.raises(TypeError, match='attack'): adversarial_fit(m, dl, attack='pgd', opt=opt, epochs=1, device='cpu')
    with pytest.raises(TypeError, match='model'): adversarial_fit('net', dl, attack=functools.partial(fgsm, eps=0.1), opt=opt, epochs=1, device='cpu')
    with pytest.raises(ValueError, match='epochs'): adversarial_fit(m, dl, attack=functools.partial(fgsm, eps=0.1), opt=opt, epochs=0, device='cpu')
    h = adversarial_fit(m, dl, attack=functools.partial(pgd, eps=0.1, alpha=0.05, steps=2), opt=opt, epochs=2, device='cpu',
                        valid_dl=dl, metrics={}, progress=False)
    assert isinstance(h, History) and len(h) == 2 and 'valid_loss' in h.last


def test_adversarial_fit_trains_on_attacked_batches():
    "fit's loss sees the model's output on the attacked batch: an attack that replaces every input by one grey image."
    torch.manual_seed(0)
    m, (x, y) = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), _batch(32)
    grey = lambda model, xb, yb: torch.full_like(xb, 0.5)
    seen = []
    def loss_fn(z, t):
        seen.append(z.detach()); return F.cross_entropy(z, t)
    adversarial_fit(m, TensorLoader(x, y, batch_size=16), attack=grey, loss_fn=loss_fn, opt=torch.optim.SGD(m.parameters(), lr=0.0),
                    epochs=1, device='cpu', progress=False)
    with torch.no_grad(): want = m(torch.full((16, 1, 4, 4), 0.5))
    assert len(seen) == 2 and all(torch.allclose(z, want) for z in seen)


def test_adversarial_train_mnist_bad_args():
    x = torch.zeros(64, 28, 28, dtype=torch.uint8); y = torch.zeros(64, dtype=torch.long)
    with pytest.raises(TypeError, match='train'): adversarial_train_mnist(0, x, (x, y))
    with pytest.raises(ValueError, match='valid'): adversarial_train_mnist(0, (x, y), (x.float(), y))
    for kw, err, name in [(dict(eps=-0.3), ValueError, 'eps'), (dict(alpha=0), ValueError, 'alpha'), (dict(steps=0), ValueError, 'steps'),
                          (dict(epochs=0), ValueError, 'epochs'), (dict(width=0), ValueError, 'width'), (dict(batch_size=0), ValueError, 'batch_size')]:
        with pytest.raises(err, match=name): adversarial_train_mnist(0, (x, y), (x, y), **kw)
    with pytest.raises(ValueError, match='seed'): adversarial_train_mnist(-1, (x, y), (x, y))


def test_adversarial_train_mnist_runs_on_a_tiny_set():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 28, 28), generator=g, dtype=torch.uint8); y = torch.randint(0, 10, (64,), generator=g)
    r = adversarial_train_mnist(0, (x, y), (x[:16], y[:16]), eps=0.1, alpha=0.05, steps=1, epochs=1, width=2, batch_size=32, device='cpu')
    assert len(r.history) == 1 and 0 <= r.clean_acc <= 1 and not r.model.training
    assert r.model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def _pgd_l2(model, x, y, *, eps, alpha, steps):
    "A reference solution of exercise 2."
    from fm_course.adversarial import _eval_mode, _input_grad, cross_entropy_per_example
    x0, xk = x.detach(), x.detach()
    with _eval_mode(model):
        for _ in range(steps):
            g, _ = _input_grad(model, xk, y, cross_entropy_per_example)
            gn = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.ndim - 1))
            delta = xk + alpha * g / gn - x0
            dn = delta.flatten(1).norm(dim=1).view(-1, *[1] * (x.ndim - 1))
            delta = delta * torch.clamp(eps / dn.clamp_min(1e-12), max=1.0)
            xk = (x0 + delta).clamp(0, 1)
    return xk


def test_exercise_checkers():
    assert check_pgd_l2(_pgd_l2)
    with pytest.raises(AssertionError, match='l2 ball'):                         # no projection
        check_pgd_l2(lambda m, x, y, *, eps, alpha, steps: (x + 2 * eps * torch.sign(x - 0.5) / 28).clamp(0, 1))
    with pytest.raises(AssertionError, match='linear model'):                    # the l-infinity step in an l2 ball
        check_pgd_l2(lambda m, x, y, *, eps, alpha, steps: fgsm(m, x, y, eps=eps / 28 * 0.99))
    assert check_transfer_attack(lambda source, attack: (lambda model, x, y: attack(source, x, y)))
    with pytest.raises(AssertionError, match='source'): check_transfer_attack(lambda source, attack: attack)
