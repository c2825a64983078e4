"Tests of tools/check_wheel.py on a small synthetic project: it passes a sound package and names what breaks one."
import shutil
from pathlib import Path

import pytest

import check_wheel

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = '''[DEFAULT]
lib_name = minipkg
lib_path = minipkg
version = 0.0.1
description = A package made by a test.
keywords = test
author = test
author_email = test@example.com
user = test
branch = main
license = apache2
status = 2
min_python = 3.10
audience = Developers
language = English
git_url = https://example.com/minipkg
requirements =
'''
MANIFEST = 'include settings.ini\ninclude README.md\n'


def make_project(root: Path, manifest: str = MANIFEST, module: str = 'X = 1\n') -> Path:
    "An nbdev-style project with the course's setup.py: package `minipkg` with one module `a` listed in its _modidx."
    (root / 'minipkg').mkdir(parents=True)
    shutil.copy(ROOT / 'setup.py', root)
    (root / 'settings.ini').write_text(SETTINGS)
    (root / 'README.md').write_text('# minipkg\n')
    (root / 'MANIFEST.in').write_text(manifest)
    (root / 'minipkg' / '__init__.py').write_text("__version__ = '0.0.1'\n")
    (root / 'minipkg' / '_modidx.py').write_text("d = {'settings': {}, 'syms': {'minipkg.a': {}}}\n")
    (root / 'minipkg' / 'a.py').write_text(module)
    return root


def test_manifest_names_files_that_exist():
    assert check_wheel.manifest_problems(ROOT) == []


def test_manifest_problems_name_the_missing_file(tmp_path):
    root = make_project(tmp_path / 'p', manifest=MANIFEST + 'include LICENSE\nrecursive-include docs *.md\n')
    problems = check_wheel.manifest_problems(root)
    assert len(problems) == 2 and 'LICENSE' in problems[0] and 'docs' in problems[1]


def test_sound_package_passes(tmp_path, capsys):
    assert check_wheel.check(tmp_path / 'work', make_project(tmp_path / 'p')) == []
    assert 'imported minipkg, minipkg.a' in capsys.readouterr().out


def test_module_that_reads_the_checkout_fails_once_installed(tmp_path):
    module = "from pathlib import Path\nTEXT = (Path(__file__).parent.parent / 'settings.ini').read_text()\n"
    root = make_project(tmp_path / 'p', module=module)
    with pytest.raises(SystemExit, match='FileNotFoundError'): check_wheel.check(tmp_path / 'work', root)


def test_sdist_without_settings_ini_fails_to_build(tmp_path):
    root = make_project(tmp_path / 'p', manifest='include README.md\n')
    with pytest.raises(SystemExit, match='missing expected setting'): check_wheel.check(tmp_path / 'work', root)
