"""Fail when a code cell mixes imports with other code, outside exported cells.

    python tools/check_import_cells.py              # every notebook in nbs/
    python tools/check_import_cells.py nbs/X.ipynb

When nbdev builds the docs (and the README), it executes every exported cell and every cell that
contains an import, so that `show_doc` can find the names (nbdev's `exec_show_docs` processor). A
cell that imports and also trains a model or runs an experiment would run again at every docs
build, and nbdev only warns ("Found cells containing imports and other code"). So imports go in
import-only cells (or exported cells). The rule is nbdev's own: the cell's syntax tree contains an
`import` and an expression statement or an assignment; cells marked `#| eval: false` and the
`nbdev_export()` cell are skipped.
"""
import ast, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+:?)\s*(.*)$')
EXPORTED = {'export', 'exports', 'exporti', 'exec_doc'}


def directives(source: str) -> dict:
    "The `#| name value` directives at the top of a cell."
    out = {}
    for line in source.splitlines():
        m = DIRECTIVE.match(line)
        if m: out[m.group(1)] = m.group(2).strip()
        elif line.strip(): break
    return out


def mixed(source: str) -> bool:
    "True if nbdev would execute this code cell at docs time and it holds more than imports."
    if 'nbdev_export' + '()' in source: return False                    # nbdev never runs the export call
    d = directives(source)
    if d.keys() & EXPORTED or d.get('eval:', '').lower() == 'false': return False
    code = '\n'.join(line for line in source.splitlines() if not line.lstrip().startswith(('%', '!')))
    try: tree = ast.parse(code)
    except SyntaxError: return False
    nodes = list(ast.walk(tree))
    return (any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in nodes)
            and any(isinstance(n, (ast.Expr, ast.Assign)) for n in nodes))


def check(paths) -> list[str]:
    "One message per code cell of the notebooks at `paths` that mixes imports with other code."
    problems = []
    for path in paths:
        cells = json.loads(Path(path).read_text(encoding='utf-8'))['cells']
        for i, cell in enumerate(cells):
            if cell['cell_type'] == 'code' and mixed(''.join(cell['source'])):
                problems.append(f"{path}: cell {i} mixes imports with other code; nbdev runs it at every docs build: "
                                "move its imports to an import-only cell")
    return problems


if __name__ == '__main__':
    paths = [Path(p) for p in sys.argv[1:]] or sorted((ROOT / 'nbs').glob('*.ipynb'))
    problems = check(paths)
    print('\n'.join(problems) or f'check_import_cells: {len(paths)} notebooks, no code cell mixes imports with other code')
    sys.exit(1 if problems else 0)
