"""Fail when a Markdown heading in a notebook does not start its own block.

    python tools/check_headings.py              # every notebook in nbs/
    python tools/check_headings.py nbs/X.ipynb

Jupyter and MyST (CommonMark) let a `## heading` interrupt a paragraph, but Pandoc, which Quarto's
`nbdev_preview` uses, does not: there the line is plain text and drops out of the page's contents.
So a heading must be the first line of its cell or follow a blank line. Lines inside fenced code
blocks are not headings.
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADING = re.compile(r'^ {0,3}#{1,6}(\s|$)')
FENCE = re.compile(r'^ {0,3}(```|~~~)')


def bad_headings(source: str) -> list[tuple[int, str]]:
    "(line number, line) of each heading in a Markdown `source` that neither starts it nor follows a blank line."
    out, in_fence, prev = [], False, ''
    for n, line in enumerate(source.splitlines(), start=1):
        if FENCE.match(line): in_fence = not in_fence
        elif not in_fence and HEADING.match(line) and n > 1 and prev.strip():
            out.append((n, line))
        prev = line
    return out


def check(paths) -> list[str]:
    "One message per misplaced heading in the Markdown cells of the notebooks at `paths`."
    problems = []
    for path in paths:
        cells = json.loads(Path(path).read_text(encoding='utf-8'))['cells']
        for i, cell in enumerate(cells):
            if cell['cell_type'] != 'markdown': continue
            for n, line in bad_headings(''.join(cell['source'])):
                problems.append(f"{path}: cell {i}, line {n}: heading {line.strip()!r} must follow a blank line or start its cell")
    return problems


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    paths = [Path(a) for a in args] or sorted((ROOT / 'nbs').glob('*.ipynb'))
    problems = check(paths)
    for p in problems: print(p)
    if problems: sys.exit(f"check_headings: {len(problems)} heading(s) would render as plain text under Quarto/Pandoc")
    print(f"check_headings: {len(paths)} notebooks, every heading starts its own block")


if __name__ == '__main__':
    main()
