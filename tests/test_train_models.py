import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fm_course.core import seed_everything
from fm_course.models import MLP, SmallCNN
from fm_course.train import History, TensorLoader, accuracy, evaluate, fit, get_preds


def _data(n=64):
    g = seed_everything(0)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_fit_history_and_determinism():
    def run():
        x, y = _data(); seed_everything(0)
        m = nn.Linear(4, 3)
        h = fit(m, TensorLoader(x, y, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0)),
                loss_fn=F.cross_entropy, opt=torch.optim.SGD(m.parameters(), lr=0.1), epochs=2,
                valid_dl=TensorLoader(x, y, batch_size=64), metrics={'acc': accuracy}, progress=False)
        return h
    a, b = run(), run()
    assert len(a) == 2 and a['train_loss'] == b['train_loss'] and set(a.last) >= {'train_loss', 'valid_loss', 'valid_acc', 'seconds'}


def test_fit_with_progress_and_clipping():
    x, y = _data(); m = nn.Linear(4, 3)
    h = fit(m, TensorLoader(x, y, batch_size=16), loss_fn=F.cross_entropy, opt=torch.optim.SGD(m.parameters(), lr=0.1),
            epochs=1, clip_grad=0.5, progress=True)
    assert isinstance(h, History) and len(h) == 1


@pytest.mark.parametrize('kw, err, msg', [
    (dict(epochs=0), ValueError, 'epochs'), (dict(epochs=1.5), TypeError, 'epochs'), (dict(amp=1), TypeError, 'amp'),
    (dict(clip_grad=-1.0), ValueError, 'clip_grad'), (dict(patience=2), ValueError, 'patience needs a valid_dl'),
    (dict(patience=0), ValueError, 'patience must be')])
def test_fit_bad_input(kw, err, msg):
    x, y = _data(); m = nn.Linear(4, 3)
    args = dict(loss_fn=F.cross_entropy, opt=torch.optim.SGD(m.parameters(), lr=0.1), epochs=1) | kw
    with pytest.raises(err, match=msg): fit(m, TensorLoader(x, y), **args)
    with pytest.raises(TypeError, match='model'): fit('m', TensorLoader(x, y), loss_fn=F.cross_entropy, opt=args['opt'], epochs=1)
    with pytest.raises(TypeError, match='opt'): fit(m, TensorLoader(x, y), loss_fn=F.cross_entropy, opt='sgd', epochs=1)


def test_tensor_loader_bad_input():
    with pytest.raises(TypeError, match='at least one tensor'): TensorLoader()
    with pytest.raises(TypeError, match=r'tensors\[1\]'): TensorLoader(torch.zeros(3), [1, 2, 3])
    with pytest.raises(ValueError, match='same first dimension'): TensorLoader(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match='batch_size'): TensorLoader(torch.zeros(3), batch_size=-1)
    with pytest.raises(TypeError, match='shuffle'): TensorLoader(torch.zeros(3), shuffle=1)
    with pytest.raises(TypeError, match='tfm'): TensorLoader(torch.zeros(3), tfm='normalise')


def test_evaluate_and_preds():
    x, y = _data(); m = nn.Linear(4, 3)
    ev = evaluate(m, TensorLoader(x, y, batch_size=10), F.cross_entropy, {'acc': accuracy})
    logits, targets = get_preds(m, TensorLoader(x, y, batch_size=10))
    assert abs(ev['loss'] - F.cross_entropy(logits, targets).item()) < 1e-5
    assert abs(ev['acc'] - accuracy(logits, targets).item()) < 1e-6
    with pytest.raises(ValueError, match='no batches'): evaluate(m, [], F.cross_entropy)
    with pytest.raises(ValueError, match='no batches'): get_preds(m, [])
    with pytest.raises(TypeError, match='model'): evaluate('m', [], F.cross_entropy)
    with pytest.raises(ValueError, match='logits must be'): accuracy(torch.zeros(3), torch.zeros(3))


def test_models_shapes_and_bad_input():
    assert MLP((10, 5, 2))(torch.zeros(4, 10)).shape == (4, 2)
    assert SmallCNN(width=4)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(TypeError, match='sizes'): MLP('784,10')
    with pytest.raises(TypeError, match=r'sizes\[0\]'): MLP((7.5, 3))
    with pytest.raises(ValueError, match='dropout'): MLP(dropout=-0.1)
    with pytest.raises(TypeError, match='width'): SmallCNN(width=2.0)
    with pytest.raises(TypeError, match='act'): SmallCNN(act='relu')
    with pytest.raises(TypeError, match='act'): MLP(act='relu')
    with pytest.raises(ValueError, match='x must be'): SmallCNN(width=4)(torch.zeros(2, 1, 32, 32))


def test_amp_switch_reaches_evaluation(monkeypatch):
    "fit(amp=False) must turn autocast off in its validation passes too (and evaluate/get_preds take the switch)."
    import fm_course.train as train
    seen, real = [], train.autocast
    monkeypatch.setattr(train, 'autocast', lambda device, enabled=True: (seen.append(enabled), real(device, enabled))[1])
    x, y = _data(); m = nn.Linear(4, 3)
    fit(m, TensorLoader(x, y, batch_size=32), loss_fn=F.cross_entropy, opt=torch.optim.SGD(m.parameters(), lr=0.1), epochs=1,
        valid_dl=TensorLoader(x, y, batch_size=32), amp=False, progress=False)
    assert seen and not any(seen)
    seen.clear(); get_preds(m, TensorLoader(x, y, batch_size=32), amp=False); evaluate(m, TensorLoader(x, y), F.cross_entropy, amp=False)
    assert seen and not any(seen)


def test_history_edge_cases():
    h = History()
    assert len(h) == 0 and h.last == {} and h['train_loss'] == [] and list(h) == [] and h.columns == []
    with pytest.raises(IndexError): h[0]
    with pytest.raises(TypeError, match='key'): h[True]
    with pytest.raises(TypeError, match='row'): h.append([1, 2])
    h.append({'epoch': 1}); assert h[0:5] == History([{'epoch': 1}])


@pytest.mark.parametrize('n,bs,world,drop_last', [(10, 2, 2, False), (11, 3, 2, False), (11, 3, 2, True), (5, 1, 4, False), (7, 4, 3, False)])
def test_tensor_loader_shards_by_rank(monkeypatch, n, bs, world, drop_last):
    "Under torchrun each rank gets a disjoint part of each batch; together the parts are the one-process batch of bs*world rows."
    import fm_course.train as train
    x = torch.arange(n)
    one = [b[0].tolist() for b in TensorLoader(x, batch_size=bs * world, drop_last=drop_last)]
    parts = []
    for rank in range(world):
        monkeypatch.setattr(train, 'dist_info', lambda rank=rank: (rank, world))
        dl = TensorLoader(x, batch_size=bs, drop_last=drop_last)
        parts.append([b[0].tolist() for b in dl])
        assert len(dl) == len(parts[-1])
    rows = sorted(r for p in parts for b in p for r in b)
    assert rows == sorted(r for b in one for r in b)            # disjoint, and together every row of the epoch
    for i, batch in enumerate(one):                              # batch i of one process = the ranks' i-th parts, in rank order
        assert sum((p[i] for p in parts if i < len(p)), []) == batch


def test_fit_under_torchrun_needs_drop_last(monkeypatch):
    import fm_course.train as train
    monkeypatch.setattr(train, 'dist_info', lambda: (0, 2))
    x, y = _data(); m = nn.Linear(4, 3)
    with pytest.raises(ValueError, match='drop_last'):
        fit(m, TensorLoader(x, y, batch_size=8), loss_fn=F.cross_entropy, opt=torch.optim.SGD(m.parameters(), lr=0.1),
            epochs=1, progress=False)
