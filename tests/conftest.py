"""Shared fixtures: records and caches go to scratch folders, so tests never touch the project or ~/.cache."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tools'))   # tools/site.py and tools/run_notebooks.py are tested too


@pytest.fixture(autouse=True)
def scratch_env(tmp_path, monkeypatch):
    monkeypatch.setenv('FM_COURSE_RESULTS', str(tmp_path / 'results'))
    monkeypatch.setenv('FM_COURSE_CACHE', str(tmp_path / 'cache'))
    monkeypatch.delenv('FM_COURSE_DEVICE', raising=False)
    monkeypatch.delenv('FM_COURSE_PROFILE', raising=False)
    monkeypatch.delenv('FM_COURSE_SMOKE', raising=False)   # a developer's exported smoke mode must not reach the tests
    yield tmp_path


def shared_data() -> Path | None:
    "The folder FM_COURSE_DATA points at (the pre-filled mirror), if it is set and exists."
    d = os.environ.get('FM_COURSE_DATA')
    return Path(d) if d and Path(d).is_dir() else None


needs_data = pytest.mark.skipif(shared_data() is None, reason='FM_COURSE_DATA does not point at the data mirror')


def run_per_rank(script: str, tmp_path: Path, nproc: int) -> list[dict]:
    """Run `script` alone (`nproc=1`) or under torchrun with `nproc` gloo processes on this CPU; each process writes
    `$OUT_DIR/rank<r>.json` (one file per process: their stdouts would interleave). Returns those dicts in rank order."""
    path = tmp_path / f'script_{nproc}.py'
    path.write_text(script)
    out_dir = tmp_path / f'out{nproc}'
    out_dir.mkdir()
    env = {**os.environ, 'FM_COURSE_DEVICE': 'cpu', 'OMP_NUM_THREADS': '1', 'OUT_DIR': str(out_dir)}
    launch = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}'] if nproc > 1 else [sys.executable]
    out = subprocess.run(launch + [str(path)], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads((out_dir / f'rank{r}.json').read_text()) for r in range(nproc)]


def assert_two_processes_equal_one(alone: dict, pair: list[dict], keys: tuple[str, ...], time_keys: tuple[str, ...] = ('seconds',)):
    """The data-parallel equality: 2 processes with half the batch each end with identical copies equal to the 1-process
    model (float tolerance), log the same steps and token counts, the same `keys` values, and identical reduced logs."""
    import torch
    assert [r['rank'] for r in pair] == [0, 1] and {r['world'] for r in pair} == {2}
    w1, w2a, w2b = (torch.tensor(r['weights']) for r in (alone, *pair))
    assert torch.equal(w2a, w2b)                                       # DDP keeps the copies identical
    torch.testing.assert_close(w2a, w1, rtol=0, atol=1e-4)             # ... and equal to the one-process model
    for r1, r2 in zip(alone['log'], pair[0]['log'], strict=True):
        assert r1['step'] == r2['step'] and r1['tokens'] == r2['tokens']   # tokens count every process's rows
        for k in keys:
            assert abs(r1[k] - r2[k]) < 1e-4, (k, r1[k], r2[k])
    drop_time = lambda log: [{k: v for k, v in r.items() if k not in time_keys} for r in log]
    assert drop_time(pair[0]['log']) == drop_time(pair[1]['log'])      # reduced logs: every process reports the same
