import json, os

import numpy as np
import pytest
import torch
from torch import nn

from fm_course.core import (atomic_path, by_profile, get_device, get_profile, load_checkpoint, load_results, n_params,
                            record_result, results_file, results_table, save_checkpoint, seed_everything)


def test_get_device_default_and_override(monkeypatch):
    assert get_device().type in ('cpu', 'cuda', 'mps')
    monkeypatch.setenv('FM_COURSE_DEVICE', 'cpu')
    assert get_device() == torch.device('cpu')
    assert get_device('cpu') == torch.device('cpu')


@pytest.mark.parametrize('bad, err, msg', [('gpu0', ValueError, 'not a device name'), (0.5, TypeError, 'must be a str'),
                                           (['cpu'], TypeError, 'must be a str')])
def test_get_device_bad_input(bad, err, msg):
    with pytest.raises(err, match=msg): get_device(bad)


def test_get_device_bad_env(monkeypatch):
    monkeypatch.setenv('FM_COURSE_DEVICE', 'nonsense')
    with pytest.raises(ValueError, match='FM_COURSE_DEVICE'): get_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the error on a machine without CUDA')
def test_get_device_missing_cuda():
    with pytest.raises(ValueError, match='CUDA'): get_device('cuda')


def test_seed_everything_reproducible_training_step():
    def run():
        seed_everything(123)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))
        for _ in range(3):
            loss = nn.functional.cross_entropy(model(x), y); opt.zero_grad(); loss.backward(); opt.step()
        return loss.item(), np.random.rand(), [p.detach().clone() for p in model.parameters()]
    a, b = run(), run()
    assert a[0] == b[0] and a[1] == b[1]
    assert all(torch.equal(p, q) for p, q in zip(a[2], b[2]))


@pytest.mark.parametrize('bad, err', [(1.0, TypeError), ('1', TypeError), (True, TypeError), (-3, ValueError), (2**32, ValueError)])
def test_seed_everything_bad_input(bad, err):
    with pytest.raises(err, match='seed'): seed_everything(bad)


def test_profiles(monkeypatch):
    assert get_profile() == 'fast' and by_profile(1, 2) == 1
    monkeypatch.setenv('FM_COURSE_PROFILE', 'full')
    assert by_profile(fast=1, full=2) == 2
    monkeypatch.setenv('FM_COURSE_PROFILE', 'medium')
    with pytest.raises(ValueError, match="FM_COURSE_PROFILE='medium'"): get_profile()


def test_n_params_bad_input():
    assert n_params(nn.Linear(3, 2)) == 8
    with pytest.raises(TypeError, match='model'): n_params(torch.zeros(3))


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / 'sub' / 'f.bin'
    with pytest.raises(OSError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b'partial')
            raise OSError('disk full')
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_checkpoint_roundtrip_with_tied_weights(tmp_path):
    seed_everything(0)
    def make():
        emb = nn.Embedding(10, 4); head = nn.Linear(4, 10, bias=False); head.weight = emb.weight
        return nn.ModuleDict(dict(emb=emb, head=head))
    a, b = make(), make()
    with torch.no_grad(): b.emb.weight.zero_()
    save_checkpoint(a, tmp_path / 'ck.safetensors', {'epochs': 3})
    assert load_checkpoint(b, tmp_path / 'ck.safetensors') == {'epochs': '3'}
    assert torch.equal(a.emb.weight, b.emb.weight) and b.head.weight is b.emb.weight


def test_checkpoint_errors(tmp_path):
    m = nn.Linear(2, 2)
    with pytest.raises(FileNotFoundError, match='no checkpoint at'): load_checkpoint(m, tmp_path / 'missing.safetensors')
    (tmp_path / 'junk.safetensors').write_bytes(b'\x00' * 20)
    with pytest.raises(ValueError, match='not a readable safetensors checkpoint'): load_checkpoint(m, tmp_path / 'junk.safetensors')
    with pytest.raises(TypeError, match='model'): save_checkpoint({'w': 1}, tmp_path / 'x.safetensors')
    with pytest.raises(TypeError, match='metadata'): save_checkpoint(m, tmp_path / 'x.safetensors', metadata=[1])
    save_checkpoint(m, tmp_path / 'ok.safetensors')
    with pytest.raises(RuntimeError): load_checkpoint(nn.Linear(3, 3), tmp_path / 'ok.safetensors')   # shape mismatch


def test_record_result_and_table(scratch_env, capsys):
    record_result('ch', 'accuracy', np.float32(0.5), fmt='{:.1%}')
    assert 'accuracy: 50.0%' in capsys.readouterr().out
    record_result('ch', 'time', 3, unit='s')
    assert results_file() == scratch_env / 'results' / 'fast.json'
    res = json.loads(results_file().read_text())
    assert res['ch']['accuracy']['value'] == 0.5 and res['ch']['time']['text'] == '3 s'
    assert '| ch | accuracy | 50.0% |' in results_table()
    assert load_results('full') == {}


@pytest.mark.parametrize('args, err, msg', [(('', 'x', 1), TypeError, 'chapter'), (('c', None, 1), TypeError, 'name'),
                                            (('c', 'x', None), TypeError, 'value'), (('c', 'x', True), TypeError, 'value'),
                                            (('c', 'x', torch.ones(3)), ValueError, 'scalar')])
def test_record_result_bad_input(args, err, msg):
    with pytest.raises(err, match=msg): record_result(*args)


def test_corrupt_results_file_is_reported(scratch_env):
    f = results_file(); f.parent.mkdir(parents=True); f.write_text('{not json')
    with pytest.raises(ValueError, match='not valid JSON'): load_results()


def test_clear_results(scratch_env):
    from fm_course.core import clear_results
    record_result('a', 'x', 1); record_result('b', 'y', 2)
    clear_results('a')
    assert set(load_results()) == {'b'}
    clear_results('never-recorded')   # a no-op
    with pytest.raises(TypeError, match='chapter'): clear_results('')


def test_results_table_escapes_pipes(scratch_env):
    record_result('ch', 'largest |a - b|', 0.5)
    row = [r for r in results_table().splitlines() if 'largest' in r][0]
    assert row == '| ch | largest \\|a - b\\| | 0.5 | ' + load_results()['ch']['largest |a - b|']['device'] + ' |'

