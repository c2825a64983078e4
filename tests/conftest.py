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
