"""Shared fixtures: records and caches go to scratch folders, so tests never touch the project or ~/.cache."""
import os, sys
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
