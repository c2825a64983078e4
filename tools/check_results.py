"""Check that re-executed chapters reproduce the committed numbers, and that the committed numbers were made with the
libraries installed here.

    python tools/check_results.py RUN COMMITTED [--chapters 80_rl ...]     # `make reproduce`, part of `make test`

RUN is the results file a fresh execution wrote (`make nbtest` records to a scratch folder), COMMITTED the project's
(results/fast.json). For each chapter asked for, the two must hold the same record names, and every record that is
exact on both sides (`exact` missing counts as exact; `record_result(..., exact=False)` marks wall-clock times and
throughputs) must have the identical `text`. Independently, every chapter's library-versions entry (`_env`) in
COMMITTED must match the versions installed here, so that a fresh clone installing constraints.txt gets the
environment the committed numbers were made with. The runner's own record of each notebook's execution time is left
out (tools/run_notebooks.py writes it; nbdev_test does not). Exits non-zero with a readable diff.
"""
import argparse, json, sys
from pathlib import Path

from run_notebooks import EXEC_TIME   # recorded by the notebook runner, not by the notebook (nbdev_test runs lack it)

ENV_KEY = '_env'


def load(path: Path) -> dict:
    "The records in the results file `path`."
    try: return json.loads(Path(path).read_text(encoding='utf-8'))
    except FileNotFoundError: sys.exit(f'check_results: no results file at {path}')
    except json.JSONDecodeError as e: sys.exit(f'check_results: {path} is not valid JSON ({e})')


def _exact(entry: dict) -> bool: return entry.get('exact', True) is not False


def record_diffs(run: dict, committed: dict, chapters) -> list:
    "Readable differences between the `chapters` of two results dicts: missing, extra and changed exact records."
    out = []
    for ch in chapters:
        if ch not in committed: out.append(f'{ch}: no committed records (results file has {sorted(committed)})'); continue
        if ch not in run: out.append(f'{ch}: the run recorded nothing (did the notebook run, with records going to this file?)'); continue
        new = {k: v for k, v in run[ch].items() if not k.startswith('_') and k != EXEC_TIME}
        old = {k: v for k, v in committed[ch].items() if not k.startswith('_') and k != EXEC_TIME}
        for name in sorted(old.keys() - new.keys()): out.append(f'{ch} / {name}: committed, but not recorded by the run')
        for name in sorted(new.keys() - old.keys()): out.append(f'{ch} / {name}: recorded by the run, but not committed')
        for name in sorted(old.keys() & new.keys()):
            a, b = old[name], new[name]
            if _exact(a) and _exact(b) and a['text'] != b['text']:
                out.append(f"{ch} / {name}:\n      committed: {a['text']}\n      this run:  {b['text']}")
    return out


def installed_versions() -> dict:
    "The versions `fm_course.core.record_result` would record here."
    from fm_course.core import library_versions
    return library_versions()


def env_diffs(committed: dict, installed: dict) -> list:
    "Where a chapter's `_env` entry in `committed` differs from the `installed` versions (chapters without one pass)."
    out = []
    for ch in sorted(committed):
        env = committed[ch].get(ENV_KEY) if isinstance(committed[ch], dict) else None
        if not env: continue
        bad = [f'{lib} {v} (installed: {installed.get(lib)})' for lib, v in sorted(env.items()) if installed.get(lib) != v]
        if bad: out.append(f"{ch}: committed results were made with {', '.join(bad)}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('run', type=Path, help='results file written by a fresh execution')
    ap.add_argument('committed', type=Path, help='the committed results file, e.g. results/fast.json')
    ap.add_argument('--chapters', nargs='+', default=['80_rl'], help="chapters to compare ('all': every committed one)")
    args = ap.parse_args(argv)
    run, committed = load(args.run), load(args.committed)
    chapters = sorted(committed) if args.chapters == ['all'] else args.chapters
    problems = []
    if diffs := record_diffs(run, committed, chapters):
        problems.append(f're-executed records differ from {args.committed}:\n    ' + '\n    '.join(diffs))
    if diffs := env_diffs(committed, installed_versions()):
        problems.append(f'{args.committed} was not made with the libraries installed here (install constraints.txt: '
                        '`make venv`; or, after a deliberate upgrade, re-execute the notebooks: `make lock course`):\n    '
                        + '\n    '.join(diffs))
    if problems: sys.exit('check_results failed:\n  ' + '\n  '.join(problems))
    n = sum(_exact(e) and _exact(committed[ch][k]) for ch in chapters for k, e in run[ch].items() if not k.startswith('_'))
    print(f"check_results: {', '.join(chapters)}: {n} exact records reproduce {args.committed}; "
          'committed library versions match the installed ones')


if __name__ == '__main__':
    main()
