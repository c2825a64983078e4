"""Execute the course notebooks in place, in course order, so that they are committed with outputs.

    python tools/run_notebooks.py                 # every notebook in nbs/, index.ipynb last
    python tools/run_notebooks.py nbs/10_foundations.ipynb

Notebooks run with nbs/ as working directory, the same way `nbdev_test` runs them; the profile,
device and data folder come from the environment (FM_COURSE_PROFILE, FM_COURSE_DEVICE,
FM_COURSE_DATA). Run `nbdev_clean` afterwards to strip volatile metadata.
"""
import argparse, os, sys, time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'


def course_order(paths):
    "Numbered notebooks in order, index.ipynb last (its results table reads what the chapters recorded)."
    return sorted(paths, key=lambda p: (p.name == 'index.ipynb', p.name))


SKIP = 'fm-course-skip'


def flags(cell) -> set:
    "The nbdev test flags of a code cell: its leading `#| word` directives, e.g. {'full'}."
    out = set()
    for line in cell.source.splitlines():
        if not line.startswith('#|'): break
        out.update(line[2:].split())
    return out


def run(path: Path, timeout: int) -> float:
    """Execute `path` in place. Cells flagged `#| full` run only under FM_COURSE_PROFILE=full, as nbdev_test
    runs them only with `--flags full`; skipped cells are left with no output."""
    nb = nbformat.read(path, as_version=4)
    full = os.environ.get('FM_COURSE_PROFILE', '').strip().lower() == 'full'
    skipped = [c for c in nb.cells if c.cell_type == 'code' and 'full' in flags(c) and not full]
    for c in skipped:
        c.outputs, c.execution_count = [], None
        c.metadata.setdefault('tags', []).append(SKIP)
    from fm_course.core import clear_results
    clear_results(path.stem)   # records are keyed by notebook name: none from an earlier run may linger
    t0 = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name='python3', skip_cells_with_tag=SKIP,
                       resources={'metadata': {'path': str(path.parent)}}).execute()
    finally:
        for c in skipped:
            c.metadata['tags'].remove(SKIP)
            if not c.metadata['tags']: del c.metadata['tags']
    nbformat.write(nb, path)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('notebooks', nargs='*', type=Path, help='notebooks to run (default: all of nbs/)')
    ap.add_argument('--timeout', type=int, default=1800, help='seconds allowed per cell')
    args = ap.parse_args(argv)
    paths = course_order([p.resolve() for p in args.notebooks] or list(NBS.glob('*.ipynb')))
    for p in paths:
        if not p.is_file(): sys.exit(f"run_notebooks: no notebook at {p}")
    total = 0.0
    for p in paths:
        print(f"executing {p.relative_to(ROOT)} ...", flush=True)
        secs = run(p, args.timeout)
        total += secs
        print(f"  done in {secs:.1f} s", flush=True)
    print(f"executed {len(paths)} notebooks in {total:.0f} s")


if __name__ == '__main__':
    main()
