"""Execute the course notebooks in place, in course order, so that they are committed with outputs.

    python tools/run_notebooks.py                 # every notebook in nbs/, index.ipynb last
    python tools/run_notebooks.py nbs/10_foundations.ipynb
    FM_COURSE_PROFILE=full python tools/run_notebooks.py      # full profile, `#| full` cells included

Notebooks run with nbs/ as working directory, the same way `nbdev_test` runs them, and skip exactly the cells
`nbdev_test` skips: nbdev itself decides (`tst_flags` of settings.ini such as `#| notest` and `#| full`,
`#| eval: false`, `skip_exec: true` front matter, `nbdev_export()` cells). Skipped cells are left with no output.
The profile is one switch: FM_COURSE_PROFILE=full also runs the `full` cells (as `nbdev_test --flags full`), and
`--flags full` alone also sets FM_COURSE_PROFILE=full for the notebooks. Device and data folder come from the
environment (FM_COURSE_DEVICE, FM_COURSE_DATA). Run `nbdev_clean` afterwards to strip volatile metadata.
"""
import argparse, contextlib, os, sys, time
from pathlib import Path
from unittest import mock

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'
PROFILE_ENV, FULL = 'FM_COURSE_PROFILE', 'full'
SMOKE_ENV = 'FM_COURSE_SMOKE'   # smoke mode (`make smoke`): toy sizes, whose outputs must never be committed
SKIP = 'fm-course-skip'
EXEC_TIME = 'notebook execution time'   # the record each chapter gets: wall-clock seconds of its whole execution


def course_order(paths):
    "Numbered notebooks in order, index.ipynb last (its results table reads what the chapters recorded)."
    return sorted(paths, key=lambda p: (p.name == 'index.ipynb', p.name))


def run_flags(flags=(), environ=None) -> set:
    """The flags to run (nbdev_test's `--flags`): `flags` plus `full` under FM_COURSE_PROFILE=full. Sets
    FM_COURSE_PROFILE=full in `environ` (default os.environ) when `full` is asked for and the variable is unset, so
    `full` cells never run at fast-profile sizes; a contradiction (`full` with FM_COURSE_PROFILE=fast) is an error,
    and so is smoke mode (FM_COURSE_SMOKE set to anything but 0): its toy outputs must never be committed."""
    environ = os.environ if environ is None else environ
    smoke = environ.get(SMOKE_ENV, '').strip()
    if smoke not in ('', '0'):
        raise ValueError(f"{SMOKE_ENV}={smoke!r}: smoke mode runs the notebooks at toy sizes, whose outputs must never be "
                         f"committed; this runner executes notebooks in place. Unset {SMOKE_ENV} (or use `make smoke`, "
                         f"which runs them into a scratch folder)")
    flags = set(flags)
    profile = environ.get(PROFILE_ENV, '').strip().lower()
    if profile == FULL: flags.add(FULL)
    elif FULL in flags:
        if profile: raise ValueError(f"--flags {FULL} runs the full-profile cells, but {PROFILE_ENV}={profile!r}: "
                                     f"unset it or set {PROFILE_ENV}={FULL}")
        environ[PROFILE_ENV] = FULL
    return flags


@contextlib.contextmanager
def _env_kept(name):
    old = os.environ.get(name)
    try: yield
    finally:
        if old is None: os.environ.pop(name, None)
        else: os.environ[name] = old


def nbdev_skips(path: Path, flags=()) -> list | None:
    """For each code cell of the notebook at `path`, in order, whether `nbdev_test --flags "<flags>"` skips it; None
    when it skips the whole notebook. nbdev decides: `nbdev.test.test_nb` runs with the project's `tst_flags` and
    a stand-in for its shell that applies nbdev's own skip rule to the cells instead of executing them."""
    import nbdev.test
    from nbdev.config import get_config
    seen = {}

    class _Recorder:   # nbdev.test.test_nb calls CaptureShell(fn).run_all(nb, exc_stop=True, preproc=<its skip rule>)
        def __init__(self, *args, **kwargs): pass
        def run_all(self, nb, exc_stop=True, preproc=None):
            seen['cells'] = [(c.get('id'), bool(preproc(c))) for c in nb.cells if c.cell_type == 'code']

    skip_flags = get_config(path=ROOT).tst_flags.split()
    with _env_kept('IN_TEST'), mock.patch.object(nbdev.test, 'CaptureShell', _Recorder):
        ok, _ = nbdev.test.test_nb(Path(path), skip_flags=skip_flags, force_flags=sorted(flags))
    if not ok: raise RuntimeError(f'nbdev could not process {path}')
    if 'cells' not in seen: return None   # skip_exec front matter, or not a Python notebook
    nb = nbformat.read(path, as_version=4)
    ids = [c.get('id') for c in nb.cells if c.cell_type == 'code']
    if len(ids) != len(seen['cells']) or any(a and b and a != b for a, (b, _) in zip(ids, seen['cells'])):
        raise RuntimeError(f"{path}: the code cells nbdev read differ from the notebook's")
    return [s for _, s in seen['cells']]


def run(path: Path, timeout: int, flags=()) -> float | None:
    """Execute `path` in place, skipping the cells `nbdev_test` skips with `flags`; skipped cells are left with no
    output. The seconds it took, or None when nbdev skips the whole notebook."""
    skips = nbdev_skips(path, flags)
    if skips is None: return None
    nb = nbformat.read(path, as_version=4)
    skipped = [c for c, s in zip([c for c in nb.cells if c.cell_type == 'code'], skips) if s]
    for c in skipped:
        c.outputs, c.execution_count = [], None
        c.metadata.setdefault('tags', []).append(SKIP)
    from fm_course.core import clear_results, load_results, record_result
    clear_results(path.stem)   # records are keyed by notebook name: none from an earlier run may linger
    t0 = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name='python3', skip_cells_with_tag=SKIP,
                       resources={'metadata': {'path': str(path.parent)}}).execute()
    finally:
        for c in skipped:
            c.metadata['tags'].remove(SKIP)
            if not c.metadata['tags']: del c.metadata['tags']
    secs = time.perf_counter() - t0
    nbformat.write(nb, path)
    if load_results().get(path.stem):   # a chapter that records results also records how long it took to run
        record_result(path.stem, EXEC_TIME, secs, fmt='{:.0f}', unit='s', exact=False)
    return secs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('notebooks', nargs='*', type=Path, help='notebooks to run (default: all of nbs/)')
    ap.add_argument('--timeout', type=int, default=1800, help='seconds allowed per cell')
    ap.add_argument('--flags', default='', help="space-separated test flags to run, as nbdev_test's (`full` implies "
                                                f'{PROFILE_ENV}=full)')
    args = ap.parse_args(argv)
    try: flags = run_flags(args.flags.split())
    except ValueError as e: sys.exit(f'run_notebooks: {e}')
    paths = course_order([p.resolve() for p in args.notebooks] or list(NBS.glob('*.ipynb')))
    for p in paths:
        if not p.is_file(): sys.exit(f"run_notebooks: no notebook at {p}")
    print(f"profile {os.environ.get(PROFILE_ENV) or 'fast'}; flags run: {' '.join(sorted(flags)) or '(none)'}", flush=True)
    total = 0.0
    for p in paths:
        print(f"executing {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p} ...", flush=True)
        secs = run(p, args.timeout, flags)
        if secs is None: print('  skipped: nbdev_test skips this notebook', flush=True); continue
        total += secs
        print(f"  done in {secs:.1f} s", flush=True)
    print(f"executed {len(paths)} notebooks in {total:.0f} s")


if __name__ == '__main__':
    main()
