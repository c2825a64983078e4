"Tests of the build tools: the site adapter, the notebook runner, the browser check and the results check."
import json, os, urllib.request
from pathlib import Path

import nbformat
import pytest

import browser_check
import build_site as course_site
import check_results
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


def test_runner_order():
    paths = [Path('index.ipynb'), Path('10_a.ipynb'), Path('00_core.ipynb')]
    assert [p.name for p in run_notebooks.course_order(paths)] == ['00_core.ipynb', '10_a.ipynb', 'index.ipynb']


# A notebook with one cell of each kind nbdev_test treats apart; each code cell appends its label to `ran.txt`.
CELLS = {'plain': '', 'hidden': '#| hide\n', 'eval_false': '#| eval: false\n', 'eval_false_quarto': '#|eval:false\n',
         'full': '#| full\n', 'notest': '#| notest\n', 'export': '#| export\n'}
SKIPPED = {'': {'eval_false', 'eval_false_quarto', 'full', 'notest', 'nbdev_export'},
           'full': {'eval_false', 'eval_false_quarto', 'notest', 'nbdev_export'}}


def synthetic_nb(folder: Path, front_matter: str = '') -> Path:
    cells = [nbformat.v4.new_raw_cell(f'---\ntitle: Synthetic\n{front_matter}---'), nbformat.v4.new_markdown_cell('# Synthetic')]
    cells += [nbformat.v4.new_code_cell(f"{d}open('ran.txt', 'a').write('{k}\\n'); print('{k}')") for k, d in CELLS.items()]
    cells.append(nbformat.v4.new_code_cell("#| hide\nopen('ran.txt', 'a').write('nbdev_export\\n')  # stands for nbdev_export()"))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / '99_synthetic.ipynb')
    return folder / '99_synthetic.ipynb'


LABELS = [*CELLS, 'nbdev_export']


@pytest.mark.parametrize('flags', ['', 'full'])
def test_runner_skips_what_nbdev_test_skips(tmp_path, flags):
    path = synthetic_nb(tmp_path)
    skips = run_notebooks.nbdev_skips(path, flags.split())
    assert {k for k, s in zip(LABELS, skips) if s} == SKIPPED[flags]
    # nbdev's own test_nb, run for real on the same notebook with the project's tst_flags, runs the other cells
    import nbdev.test
    from nbdev.config import get_config
    old = os.environ.get('IN_TEST')
    try: ok, _ = nbdev.test.test_nb(path, skip_flags=get_config(path=run_notebooks.ROOT).tst_flags.split(), force_flags=flags.split())
    finally:
        if old is None: os.environ.pop('IN_TEST', None)
        else: os.environ['IN_TEST'] = old
    assert ok and (tmp_path / 'ran.txt').read_text().split() == [k for k, s in zip(LABELS, skips) if not s]


def test_runner_skips_a_skip_exec_notebook(tmp_path):
    assert run_notebooks.nbdev_skips(synthetic_nb(tmp_path, 'skip_exec: true\n')) is None
    assert run_notebooks.run(synthetic_nb(tmp_path, 'skip_exec: true\n'), timeout=60) is None
    assert not (tmp_path / 'ran.txt').exists()


def test_runner_executes_in_place_and_leaves_skipped_cells_empty(tmp_path):
    path = synthetic_nb(tmp_path)
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:   # stale outputs, as a notebook committed from an earlier full-profile run has
        if c.cell_type == 'code': c.outputs = [nbformat.v4.new_output('stream', name='stdout', text='stale\n')]
    nbformat.write(nb, path)
    assert run_notebooks.run(path, timeout=60) > 0
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == 'code']
    printed = {k: ''.join(o.get('text', '') for o in c.outputs) for k, c in zip(LABELS, code)}
    assert printed == {k: ('' if k in SKIPPED[''] else f'{k}\n') for k in LABELS}
    assert all('tags' not in c.metadata for c in code)
    assert (tmp_path / 'ran.txt').read_text().split() == [k for k in LABELS if k not in SKIPPED['']]


def test_full_profile_is_one_switch():
    env = {'FM_COURSE_PROFILE': 'Full'}
    assert run_notebooks.run_flags([], env) == {'full'}
    env = {}
    assert run_notebooks.run_flags(['full'], env) == {'full'} and env == {'FM_COURSE_PROFILE': 'full'}
    env = {}
    assert run_notebooks.run_flags(['other'], env) == {'other'} and env == {}
    with pytest.raises(ValueError, match='FM_COURSE_PROFILE'): run_notebooks.run_flags(['full'], {'FM_COURSE_PROFILE': 'fast'})


@pytest.mark.parametrize('flags', [[], ['full']])
def test_runner_refuses_smoke_mode(flags, monkeypatch, capsys):
    env = {'FM_COURSE_PROFILE': 'full', 'FM_COURSE_SMOKE': '1'}
    with pytest.raises(ValueError, match='FM_COURSE_SMOKE'): run_notebooks.run_flags(flags, env)
    assert env == {'FM_COURSE_PROFILE': 'full', 'FM_COURSE_SMOKE': '1'}        # nothing set on the way out
    assert run_notebooks.run_flags(flags, {'FM_COURSE_PROFILE': 'full', 'FM_COURSE_SMOKE': '0'}) == {'full'}
    monkeypatch.setenv('FM_COURSE_SMOKE', '1')
    with pytest.raises(SystemExit, match='FM_COURSE_SMOKE'): run_notebooks.main(['--flags', ' '.join(flags)])
    assert 'executing' not in capsys.readouterr().out                           # refused before any notebook ran


def test_browser_check_saves_screenshots_outside_the_checkout(tmp_path, monkeypatch, capsys):
    "A stand-in for Chromium that fetches the page and writes a screenshot file; --out is a folder outside the checkout."
    html = tmp_path / 'html'; html.mkdir()
    (html / 'index.html').write_text('<html><body><p>Course</p></body></html>')
    (html / 'search.html').write_text('<html><body><a href="foundations.html">x</a></body></html>')

    def fake_chromium(exe, url, *extra, timeout=90):
        for e in extra:
            if e.startswith('--screenshot='): Path(e.split('=', 1)[1]).write_bytes(b'png')
        with urllib.request.urlopen(url) as r: return r.read().decode()

    monkeypatch.setattr(browser_check, 'HTML', html)
    monkeypatch.setattr(browser_check, 'chromium', lambda: 'chromium')
    monkeypatch.setattr(browser_check, 'run_chromium', fake_chromium)
    out = tmp_path / 'shots'
    browser_check.main(['--out', str(out)])
    assert (out / 'index.png').read_bytes() == b'png'
    assert f'screenshots in {out}' in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)   # a relative --out is taken from the working directory
    browser_check.main(['--out', 'rel'])
    assert (tmp_path / 'rel' / 'index.png').is_file()
    assert browser_check.shown(browser_check.ROOT / '_build' / 'x.png') == os.path.join('_build', 'x.png')


ENV = {'python': '3.11.7', 'torch': '2.14.1+cu130', 'numpy': '2.4.6'}


def results(**texts) -> dict:
    "A results dict for chapter '80_rl' with records name -> text (a (text, exact) pair for an explicit `exact`)."
    recs = {}
    for name, t in texts.items():
        text, exact = t if isinstance(t, tuple) else (t, None)
        recs[name] = {'value': text, 'text': text, 'unit': '', 'device': 'cpu', **({} if exact is None else {'exact': exact})}
    return {'80_rl': recs, '10_foundations': {'acc': {'text': '98%', 'value': 0.98, 'unit': '', 'device': 'cpu'}}}


def check(tmp_path, monkeypatch, run, committed, installed=ENV, chapters=('80_rl',)):
    (tmp_path / 'run.json').write_text(json.dumps(run)); (tmp_path / 'committed.json').write_text(json.dumps(committed))
    monkeypatch.setattr(check_results, 'installed_versions', lambda: dict(installed))
    check_results.main([str(tmp_path / 'run.json'), str(tmp_path / 'committed.json'), '--chapters', *chapters])


def test_check_results_passes_identical_exact_records_and_ignores_inexact_ones(tmp_path, monkeypatch, capsys):
    committed = results(solved='3', steps=('20,000', True), secs=('14.7 s', False))
    committed['80_rl']['_env'] = dict(ENV)
    check(tmp_path, monkeypatch, results(solved='3', steps=('20,000', True), secs=('16.2 s', False)), committed)
    assert '2 exact records reproduce' in capsys.readouterr().out


@pytest.mark.parametrize('run_exact, committed_exact', [(None, None), (True, None), (None, True), (True, True)])
def test_check_results_shows_a_changed_exact_record(tmp_path, monkeypatch, run_exact, committed_exact):
    pair = lambda text, exact: text if exact is None else (text, exact)
    with pytest.raises(SystemExit) as e:
        check(tmp_path, monkeypatch, results(steps=pair('25,000', run_exact)), results(steps=pair('20,000', committed_exact)))
    msg = str(e.value)
    assert '80_rl / steps' in msg and 'committed: 20,000' in msg and 'this run:  25,000' in msg


def test_check_results_names_missing_and_extra_records_and_chapters(tmp_path, monkeypatch):
    with pytest.raises(SystemExit) as e: check(tmp_path, monkeypatch, results(a='1', new='2'), results(a='1', old='3'))
    assert "old: committed, but not recorded" in str(e.value) and "new: recorded by the run, but not committed" in str(e.value)
    run = results(a='1'); del run['80_rl']
    with pytest.raises(SystemExit, match='80_rl: the run recorded nothing'): check(tmp_path, monkeypatch, run, results(a='1'))
    with pytest.raises(SystemExit, match='60_gan: no committed records'):
        check(tmp_path, monkeypatch, results(a='1'), results(a='1'), chapters=('60_gan',))


def test_check_results_all_chapters(tmp_path, monkeypatch):
    run = results(a='1'); run['10_foundations']['acc']['text'] = '97%'
    check(tmp_path, monkeypatch, run, results(a='1'))   # only 80_rl compared
    with pytest.raises(SystemExit, match='10_foundations / acc'): check(tmp_path, monkeypatch, run, results(a='1'), chapters=('all',))


def test_check_results_committed_versions_must_be_installed(tmp_path, monkeypatch):
    committed = results(a='1')
    committed['10_foundations']['_env'] = {**ENV, 'torch': '2.15.0+cu132'}
    with pytest.raises(SystemExit) as e: check(tmp_path, monkeypatch, results(a='1'), committed)
    assert '10_foundations: committed results were made with torch 2.15.0+cu132 (installed: 2.14.1+cu130)' in str(e.value)
    assert 'python' not in str(e.value)


def test_check_results_installed_versions_are_what_record_result_records():
    from fm_course.core import library_versions
    v = check_results.installed_versions()
    assert v == library_versions() and v['torch']


def test_runner_records_the_execution_time_of_a_chapter_that_records_results(tmp_path, monkeypatch):
    from fm_course.core import load_results
    monkeypatch.setenv('FM_COURSE_RESULTS', str(tmp_path / 'results'))   # the kernel inherits it
    quiet, chapter = tmp_path / 'quiet', tmp_path / 'chapter'
    run_notebooks.run(synthetic_nb(quiet), timeout=60)
    assert '99_synthetic' not in load_results('fast')   # records nothing: no time either
    path = synthetic_nb(chapter)
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("from fm_course.core import record_result\nrecord_result('99_synthetic', 'answer', 42)"))
    nbformat.write(nb, path)
    secs = run_notebooks.run(path, timeout=60)
    rec = load_results('fast')['99_synthetic']
    assert rec['answer']['text'] == '42' and rec[run_notebooks.EXEC_TIME]['exact'] is False
    assert rec[run_notebooks.EXEC_TIME]['value'] == pytest.approx(secs) and rec[run_notebooks.EXEC_TIME]['unit'] == 's'


def test_check_results_leaves_out_the_runners_execution_time(tmp_path, monkeypatch, capsys):
    committed = results(solved='3')
    committed['80_rl'][run_notebooks.EXEC_TIME] = {'value': 80.0, 'text': '80 s', 'unit': 's', 'device': 'cpu', 'exact': False}
    check(tmp_path, monkeypatch, results(solved='3'), committed)   # an nbdev_test run has no such record
    assert '1 exact records reproduce' in capsys.readouterr().out
