import json

from check_import_cells import check, mixed


def test_mixed():
    assert not mixed('import torch\nfrom fm_course.train import fit')          # imports only
    assert mixed('import torch\nx = torch.zeros(3)')                            # imports and an assignment
    assert mixed('import warnings\nwarnings.filterwarnings("ignore")')          # imports and an expression
    assert not mixed('#| export\nimport torch\nx = 1')                          # exported: nbdev runs it anyway
    assert not mixed('#| eval: false\nimport torch\nx = 1')                     # never executed
    assert not mixed('#| hide\nimport nbdev; nbdev.nbdev_export()')             # nbdev skips the export call
    assert not mixed('x = 1\nprint(x)')                                         # no import
    assert mixed('def f():\n    import torch\n    return torch.ones(1)\ny = f()')  # nbdev walks the whole tree


def test_check(tmp_path):
    nb = {'cells': [{'cell_type': 'code', 'source': ['import torch\n']},
                    {'cell_type': 'markdown', 'source': ['import this, x = 1']},
                    {'cell_type': 'code', 'source': ['from math import pi\n', 'r = pi']}]}
    p = tmp_path / 'x.ipynb'; p.write_text(json.dumps(nb))
    problems = check([p])
    assert len(problems) == 1 and 'cell 2' in problems[0]
