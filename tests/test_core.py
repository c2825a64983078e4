import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fm_course.core import (Timer, atomic_path, by_profile, cache_dir, cached_run, check_arg, fingerprint, get_device, get_profile,
                            is_smoke, library_versions, load_checkpoint, load_results, map_runs, n_params, record_result, require_full_profile,
                            results_file, results_table, save_checkpoint, seed_everything, sync_device)


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
    monkeypatch.delenv('FM_COURSE_SMOKE', raising=False)
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



def test_check_arg_edge_cases():
    assert check_arg('x', np.float32(0.5), lo=0, hi=1) == np.float32(0.5)
    with pytest.raises(TypeError, match='flag must be a bool'): check_arg('flag', 1, bool)
    with pytest.raises(TypeError, match='x must be a number'): check_arg('x', np.bool_(True))
    with pytest.raises(ValueError, match=r'k must be an int <= 3'): check_arg('k', 4, int, hi=3)
    with pytest.raises(TypeError, match=r'got Tensor tensor\(\[0\., 0\.'): check_arg('x', torch.zeros(500), int)   # repr cut short


@pytest.mark.skipif(os.name != 'posix', reason='POSIX permission bits')
def test_atomic_path_respects_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / 'f.txt') as tmp: tmp.write_text('x')
    finally: os.umask(old)
    assert (tmp_path / 'f.txt').stat().st_mode & 0o777 == 0o640


def test_atomic_path_fsyncs_before_replace(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, 'fsync', lambda fd: (events.append('fsync'), real_fsync(fd))[1])
    monkeypatch.setattr(os, 'replace', lambda a, b: (events.append('replace'), real_replace(a, b))[1])
    with atomic_path(tmp_path / 'f.txt') as tmp: tmp.write_text('x')
    assert events[:2] == ['fsync', 'replace']


def test_timer_sync_names():
    assert Timer.sync is sync_device and not hasattr(Timer, "_sync")   # one name: the private alias went once mlm.py stopped using it
    with Timer() as t: pass
    assert t.seconds >= 0 and 'Timer(' in repr(t)
    sync_device('cpu')


def test_fingerprint_bad_input():
    assert fingerprint(torch.ones(3, device='cpu')) == fingerprint(torch.ones(3))
    assert fingerprint(torch.tensor(1.0)) != fingerprint(torch.tensor(2.0))   # 0-d tensors work
    with pytest.raises(TypeError, match=r'tensors\[1\]'): fingerprint(torch.ones(3), [1, 2])


def _build():
    seed_everything(0); return nn.Linear(2, 1)


def _train(model):
    with torch.no_grad(): model.weight.add_(1.0)
    return {'loss': 0.25, 'rows': [{'epoch': 1}]}


def test_cached_run_bad_input():
    with pytest.raises(TypeError, match='key'): cached_run([1], _build, _train)
    with pytest.raises(TypeError, match='key must be JSON-serialisable'): cached_run({'f': object()}, _build, _train)
    with pytest.raises(TypeError, match='results of train'): cached_run({'a': 1}, _build, lambda m: 0.5)
    with pytest.raises(TypeError, match='cache'): cached_run({'a': 1}, _build, _train, cache='yes')


def test_cached_run_cache_false_writes_nothing():
    r = cached_run({'a': 1}, _build, _train, cache=False)
    assert not r.hit and not r.path.exists() and not (cache_dir() / 'checkpoints').exists()


def test_cached_run_distrusts_a_file_saved_for_another_key():
    a = cached_run({'a': 1}, _build, _train)
    b = cached_run({'a': 2}, _build, _train)
    b.path.write_bytes(a.path.read_bytes())            # a's checkpoint under b's name
    with pytest.warns(RuntimeWarning, match='saved for another key'):
        again = cached_run({'a': 2}, _build, _train)
    assert not again.hit and cached_run({'a': 2}, _build, _train).hit


def test_cached_run_results_equal_on_hit_and_miss():
    first = cached_run({'a': 3}, _build, _train)
    second = cached_run({'a': 3}, _build, _train)
    assert (first.hit, second.hit) == (False, True) and first.results == second.results
    assert torch.equal(first.model.weight, second.model.weight)


def test_record_result_exact_device_and_env(scratch_env):
    record_result('ch', 'seconds', 1.5, exact=False, device='cpu')
    e = load_results()['ch']
    assert e['seconds']['exact'] is False and e['seconds']['device'] == 'cpu' and e['_env'] == library_versions()
    assert set(library_versions()) == {'python', 'torch', 'torchvision', 'transformers', 'numpy', 'gymnasium'}
    with pytest.raises(TypeError, match='exact'): record_result('ch', 'x', 1, exact='no')
    with pytest.raises(ValueError, match='name'): record_result('ch', '_private', 1)
    with pytest.raises(ValueError, match='device'): record_result('ch', 'x', 1, device='tpu')
    assert '_env' not in results_table()


@pytest.fixture
def smoke(monkeypatch):
    "Smoke mode: the full profile at toy sizes."
    monkeypatch.setenv('FM_COURSE_PROFILE', 'full'); monkeypatch.setenv('FM_COURSE_SMOKE', '1')


@pytest.mark.parametrize('value, smoke_on', [('', False), ('0', False), ('1', True)])
def test_smoke_values(monkeypatch, value, smoke_on):
    monkeypatch.setenv('FM_COURSE_PROFILE', 'full'); monkeypatch.setenv('FM_COURSE_SMOKE', value)
    assert is_smoke() is smoke_on and by_profile(1, 2, smoke=3) == (3 if smoke_on else 2)


@pytest.mark.parametrize('value', ['yes', 'true', '2', 'on'])
def test_smoke_bad_value(monkeypatch, value):
    monkeypatch.setenv('FM_COURSE_PROFILE', 'full'); monkeypatch.setenv('FM_COURSE_SMOKE', value)
    with pytest.raises(ValueError, match='FM_COURSE_SMOKE'): by_profile(1, 2, smoke=3)


def test_smoke_needs_the_full_profile(monkeypatch):
    monkeypatch.setenv('FM_COURSE_SMOKE', '1')                      # FM_COURSE_PROFILE unset: the fast profile
    with pytest.raises(ValueError, match='FM_COURSE_PROFILE=full'): by_profile(1, 2, smoke=3)
    with pytest.raises(ValueError, match='FM_COURSE_PROFILE=full'): results_file()
    with pytest.raises(RuntimeError, match='make test-full'): require_full_profile('cpu')


def test_smoke_error_names_the_call(smoke):
    with pytest.raises(TypeError, match=r"by_profile\(fast='a', full='b'\) has no smoke= value.*test_core\.py:\d+: .*by_profile"):
        by_profile(fast='a', full='b')
    assert by_profile(fast=None, full=(1, 2), smoke=(0, 1)) == (0, 1)   # a `#| full` cell's call: no fast size


def test_smoke_full_cells_run_on_any_device(smoke):
    require_full_profile('cpu'); require_full_profile(torch.device('cpu'))


def test_smoke_records_never_go_to_the_project(smoke, scratch_env, monkeypatch):
    root = Path(__file__).resolve().parent.parent
    assert results_file() == scratch_env / 'results' / 'smoke.json'
    monkeypatch.delenv('FM_COURSE_RESULTS'); monkeypatch.chdir(root)
    assert results_file('full') == root / 'results' / 'full.json'            # a profile's file, as before
    assert results_file().name == 'smoke.json' and root / 'results' not in results_file().parents
    with pytest.raises(ValueError, match='profile'): results_file('toy')


def test_smoke_checkpoints_live_as_long_as_the_process(smoke):
    first, second = cached_run({'a': 4}, _build, _train), cached_run({'a': 4}, _build, _train)
    assert (first.hit, second.hit) == (False, True)                           # within the process the cache works ...
    assert cache_dir() not in first.path.parents and not (cache_dir() / 'checkpoints').exists()   # ... but not in cache_dir()
    code = ("from fm_course.core import cached_run; from torch import nn\n"
            "r = cached_run({'a': 4}, lambda: nn.Linear(2, 1), lambda m: {}); print(r.hit, r.path)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, env=os.environ).stdout.split()
    assert out[0] == 'False' and not Path(out[1]).exists() and not Path(out[1]).parent.exists()   # trained afresh; deleted at exit


def _square_and_pid(x):
    return x * x, os.getpid()


def test_map_runs_edge_cases():
    assert map_runs(_square_and_pid, [], 'cpu') == []
    out = map_runs(_square_and_pid, (i for i in range(5)), 'cpu', workers=8)     # a generator; more workers than runs
    assert [v for v, _ in out] == [0, 1, 4, 9, 16]
    assert {pid for _, pid in map_runs(_square_and_pid, range(3), 'cpu', workers=1)} == {os.getpid()}   # one worker: inline
    assert {pid for _, pid in map_runs(_square_and_pid, range(3), torch.device('meta'))} == {os.getpid()}


def test_map_runs_keeps_the_error_type():
    def bad(x):
        if x == 2: raise ValueError(f'run {x} failed')
        return x
    with pytest.raises(ValueError, match='run 2 failed'): map_runs(bad, range(4), 'cpu', workers=2)


@pytest.mark.parametrize('kwargs, err, msg', [(dict(fn=None), TypeError, 'fn must be'), (dict(items=5), TypeError, 'items must be'),
                                              (dict(items='abc'), TypeError, 'items must be'), (dict(device=1), TypeError, 'device must be'),
                                              (dict(workers=0), ValueError, 'workers must be'), (dict(workers=1.5), TypeError, 'workers must be')])
def test_map_runs_bad_input(kwargs, err, msg):
    args = dict(fn=_square_and_pid, items=[1, 2], device='cpu') | kwargs
    with pytest.raises(err, match=msg): map_runs(**args)


def test_map_runs_error_cancels_the_runs_not_started(tmp_path):
    import time
    def run(i):
        (tmp_path / f'started-{i}').touch()
        if i == 0: raise RuntimeError('first run failed')
        time.sleep(0.3)
        return i
    with pytest.raises(RuntimeError, match='first run failed'): map_runs(run, range(12), 'cpu', workers=2)
    assert len(list(tmp_path.glob('started-*'))) < 12                             # the queue was cancelled, not run to the end
