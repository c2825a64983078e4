"Tests of the build tools: the site adapter and the notebook runner."
import nbformat
import pytest

from pathlib import Path

import build_site as course_site
import run_notebooks


def test_fix_links_rewrites_nbdev_doc_links():
    names = {'00_core.ipynb': 'core', '10_foundations.ipynb': 'foundations'}
    md = ('[`get_device`](https://x.io/fm_course/core.html#get_device) '
          '[src](https://github.com/a/b){target="_blank" style="float:right"} [ch](10_foundations.ipynb) '
          '[m](models.html#smallcnn.features)')
    out = course_site._fix_links(md, names, 'https://x.io/fm_course')
    assert '](core.ipynb#get_device)' in out and '{target' not in out
    assert '](foundations.ipynb)' in out and '](models.ipynb#smallcnnfeatures)' in out


def test_adapt_turns_quarto_options_into_tags(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_raw_cell("---\ntitle: '# Core'\ndescription: The core.\noutput-file: core.html\n---"),
        nbformat.v4.new_code_cell('#| echo: false\n#| output: asis\nshow_doc(f)', outputs=[
            nbformat.v4.new_output('display_data', data={'text/markdown': '---\n\n### f\n\nDoes $x$.', 'text/plain': 'f'})]),
        nbformat.v4.new_code_cell('#| include: false\nx = 1'),
        nbformat.v4.new_code_cell('print(1)')])
    p = tmp_path / '00_core.ipynb'; nbformat.write(nb, p)
    out = course_site.adapt(p, {'00_core.ipynb': 'core'}, '')
    assert out.cells[0].source.startswith('# Core\n') and 'The core.' in out.cells[0].source
    assert out.cells[1].metadata['tags'] == ['remove-input'] and out.cells[1].source == 'show_doc(f)'
    assert out.cells[1].outputs[0]['data']['text/markdown'].startswith('### f')
    assert out.cells[2].metadata['tags'] == ['remove-cell']
    assert 'tags' not in out.cells[3].metadata


def test_runner_flags_and_order():
    cell = nbformat.v4.new_code_cell('#| full\n#| hide\nx = 1')
    assert run_notebooks.flags(cell) == {'full', 'hide'}
    assert run_notebooks.flags(nbformat.v4.new_code_cell('x = 1  #| full')) == set()
    paths = [Path('index.ipynb'), Path('10_a.ipynb'), Path('00_core.ipynb')]
    assert [p.name for p in run_notebooks.course_order(paths)] == ['00_core.ipynb', '10_a.ipynb', 'index.ipynb']
