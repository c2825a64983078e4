"""Check that `pip install .` (not editable) gives a working package, as a user who installs the course gets it.

    python tools/check_wheel.py [--work DIR]      # `make check-wheel`, part of `make test`

1. every line of MANIFEST.in matches a file;
2. the sdist is built from a copy of the checkout, and the wheel from that sdist (`pip wheel --no-deps`), so a file
   that setup.py needs but the sdist lacks fails here; the wheel holds every module of the package;
3. the wheel is installed with `--no-deps` into a throwaway venv whose dependencies come from the project venv's
   site-packages through a .pth file (nothing is downloaded). A path in a .pth file is added to sys.path without
   running that folder's own .pth files, so the project's editable install stays invisible;
4. `fm_course` and every module listed in the installed `fm_course/_modidx.py` import in that venv, from a folder
   outside the checkout, and come from the installed files.
"""
import argparse, configparser, glob, json, shutil, subprocess, sys, sysconfig, tempfile, time, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manifest_problems(root: Path) -> list:
    "The lines of `root`/MANIFEST.in that name files or folders that do not exist."
    problems = []
    for n, line in enumerate((root / 'MANIFEST.in').read_text().splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith('#'): continue
        cmd, args = words[0], words[1:]
        if cmd == 'include': missing = [a for a in args if not glob.glob(str(root / a))]
        elif cmd == 'recursive-include':
            folder, pats = args[0], args[1:]
            missing = [] if any(glob.glob(str(root / folder / '**' / p), recursive=True) for p in pats) else [' '.join(args)]
        elif cmd == 'graft': missing = [a for a in args if not (root / a).is_dir()]
        elif cmd in ('exclude', 'recursive-exclude', 'global-include', 'global-exclude', 'prune'): missing = []
        else: missing = [f'unknown command {cmd!r}']
        problems += [f'MANIFEST.in:{n}: {line.strip()!r}: no match for {m}' for m in missing]
    return problems


def run(cmd, **kw) -> str:
    "Run `cmd`; on failure exit with its output."
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode: sys.exit(f"check_wheel: `{' '.join(map(str, cmd))}` failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


IMPORT_ALL = '''
import importlib, json, sys
lib = sys.argv[1]
pkg, idx = importlib.import_module(lib), importlib.import_module(lib + '._modidx')
mods = [lib, *sorted(idx.d['syms'])]
print(json.dumps({'version': pkg.__version__, 'files': {m: importlib.import_module(m).__file__ for m in mods}}))
'''


def check(work: Path, root: Path = ROOT) -> list:
    "Build, install and import the package under `work`; the problems found (empty: all good)."
    problems = manifest_problems(root)
    cfg = configparser.ConfigParser(); cfg.read(root / 'settings.ini')
    lib, version = cfg['DEFAULT']['lib_name'], cfg['DEFAULT']['version']
    src, dist, wheels, venv, outside = (work / d for d in ('src', 'dist', 'wheel', 'venv', 'outside'))
    # a checkout's files as a fresh clone has them: the top-level files and the package
    src.mkdir(parents=True)
    for f in root.iterdir():
        if f.is_file(): shutil.copy2(f, src)
    shutil.copytree(root / lib, src / lib, ignore=shutil.ignore_patterns('__pycache__'))
    run([sys.executable, 'setup.py', '-q', 'sdist', '-d', dist], cwd=src)
    sdist, = dist.glob('*.tar.gz')
    run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation', '-w', wheels, sdist], cwd=work)
    wheel, = wheels.glob('*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    problems += [f'{wheel.name} lacks {p.relative_to(root)}' for p in sorted((root / lib).glob('*.py'))
                 if p.relative_to(root).as_posix() not in names]
    # a throwaway venv: the wheel alone, its dependencies seen through a .pth file
    run([sys.executable, '-m', 'venv', '--without-pip', venv])
    py = venv / 'bin' / 'python'
    site = Path(run([py, '-c', "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    deps = dict.fromkeys([sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']])
    (site / '_project_venv_deps.pth').write_text(''.join(f'{d}\n' for d in deps))
    run([sys.executable, '-m', 'pip', '--python', py, 'install', '-q', '--no-deps', '--no-index', wheel])
    outside.mkdir()
    got = json.loads(run([py, '-I', '-c', IMPORT_ALL, lib], cwd=outside).strip().splitlines()[-1])
    if got['version'] != version: problems.append(f"installed {lib}.__version__ is {got['version']}, settings.ini says {version}")
    for mod, f in got['files'].items():
        if not Path(f).resolve().is_relative_to(site.resolve()): problems.append(f'{mod} was imported from {f}, not from the installed wheel')
    print(f"check_wheel: {wheel.name} installed without the checkout; imported {', '.join(got['files'])}")
    return problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--work', type=Path, help='empty or missing scratch folder (default: a temporary one, removed)')
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.work is None:
        with tempfile.TemporaryDirectory() as d: problems = check(Path(d) / 'wheel')
    else:
        if args.work.exists() and any(args.work.iterdir()): sys.exit(f'check_wheel: --work {args.work} is not empty')
        problems = check(args.work.resolve())
    if problems: sys.exit('check_wheel failed:\n  ' + '\n  '.join(problems))
    print(f'check_wheel: OK in {time.perf_counter() - t0:.0f} s')


if __name__ == '__main__':
    main()
