"""The data layer: bad input, corrupt copies, and downloads end to end from a real HTTP server on 127.0.0.1.

The notebook (nbs/01_data.ipynb) loads every canonical file from the mirror and checks sizes; these tests cover what it
does not run: downloads (plain files and archives), corrupt, truncated, missing and hanging downloads, and that a data
folder, a downloaded archive and a fresh process all give the same data."""
import hashlib, http.server, json, os, shutil, socket, subprocess, sys, threading, time, zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from fm_course import data
from fm_course.data import (DATA_FILES, CorruptDataError, DataFile, MissingDataError, cache_dir, data_dirs, fetch,
                            load_ag_news, load_minilm, load_mnist, load_mnist_5k, load_sst2, load_tinyshakespeare)
from conftest import needs_data, shared_data

CANONICAL = ['mnist/t10k-images-idx3-ubyte.gz', 'mnist/t10k-labels-idx1-ubyte.gz', 'sst2/SST-2/train.tsv', 'sst2/SST-2/dev.tsv',
             'sst2/sentiment-test', 'ag_news/ag_news_csv/test.csv', 'tinyshakespeare/input.txt']
MIRROR = shared_data()   # read once: the tests below point FM_COURSE_DATA elsewhere
SIZES = {('sst2', 'train'): 67349, ('sst2', 'dev'): 872, ('sst2', 'test'): 1821, ('ag_news', 'test'): 7600}


def leftovers(folder: Path) -> list:
    "Partial files (atomic_path's temporaries) anywhere under `folder`."
    return [p for p in folder.rglob('*.part')] if folder.exists() else []


# --- a real web server ---------------------------------------------------------------------------------------------
class _Handler(http.server.SimpleHTTPRequestHandler):
    "Serves `directory`; `truncate` maps a URL path to a byte count: the response announces the full length, sends fewer."
    truncate: dict = {}
    def log_message(self, *a): pass
    def do_GET(self):
        n = self.truncate.get(self.path.lstrip('/'))
        if n is None: return super().do_GET()
        body = (Path(self.directory) / self.path.lstrip('/')).read_bytes()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body[:n]); self.wfile.flush()
        self.close_connection = True


@contextmanager
def serve(folder: Path, truncate: dict | None = None):
    "An HTTP server for `folder` on 127.0.0.1 (a free port), stopped on exit; yields its base URL."
    handler = type('H', (_Handler,), dict(truncate=truncate or {}))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), lambda *a, **k: handler(*a, directory=str(folder), **k))
    t = threading.Thread(target=srv.serve_forever, daemon=True); t.start()
    try: yield f'http://127.0.0.1:{srv.server_address[1]}'
    finally: srv.shutdown(); srv.server_close(); t.join()


@contextmanager
def silent_server():
    "A socket that accepts connections and never answers."
    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)
    try: yield f'http://127.0.0.1:{s.getsockname()[1]}'
    finally: s.close()


@pytest.fixture
def served(tmp_path, monkeypatch):
    "A folder laid out like a data folder, holding the canonical files and an SST-2 zip built from GLUE's members."
    src = MIRROR
    if src is None: pytest.skip('FM_COURSE_DATA does not point at the data mirror')
    root = tmp_path / 'served'
    for rel in CANONICAL:
        if rel.startswith('sst2/SST-2/'): continue          # served only inside the archive, as GLUE serves them
        (root / rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy(src / rel, root / rel)
    (root / 'sst2').mkdir(exist_ok=True)
    with zipfile.ZipFile(root / 'sst2/SST-2.zip', 'w', zipfile.ZIP_DEFLATED) as z:
        for m in ('SST-2/train.tsv', 'SST-2/dev.tsv'): z.write(src / 'sst2' / m, m)
    # this zip is not GLUE's (other bytes, same members): register its checksum for this test only
    real = DATA_FILES['sst2/SST-2.zip']
    monkeypatch.setitem(DATA_FILES, 'sst2/SST-2.zip', DataFile(real.relpath, md5=data.file_digest(root / 'sst2/SST-2.zip', 'md5'),
                                                                 urls=real.urls, how=real.how))
    monkeypatch.setenv('FM_COURSE_DATA', str(tmp_path / 'empty'))   # a data folder with nothing in it
    monkeypatch.setenv('FM_COURSE_DOWNLOAD_TIMEOUT', '5')
    monkeypatch.delenv('FM_COURSE_OFFLINE', raising=False)
    return root


def load_all():
    "Every text/MNIST loader's output, as plain Python for comparison."
    out = {}
    for split in ('train', 'dev', 'test'):
        t, y = load_sst2(split); out[f'sst2/{split}'] = (t, y.tolist())
    t, y = load_ag_news('test'); out['ag_news/test'] = (t, y.tolist())
    x, y = load_mnist('test'); out['mnist/test'] = (hashlib.sha256(x.numpy().tobytes()).hexdigest(), y.tolist())
    out['tinyshakespeare'] = load_tinyshakespeare()
    return out


# --- end to end ------------------------------------------------------------------------------------------------------
def test_every_loader_downloads_verifies_caches_then_works_without_the_server(served, monkeypatch):
    with serve(served) as url:
        monkeypatch.setenv('FM_COURSE_MIRROR', url)
        downloaded = load_all()
    for (name, split), n in SIZES.items(): assert len(downloaded[f'{name}/{split}'][0]) == n
    cached = sorted(str(p.relative_to(cache_dir())) for p in cache_dir().rglob('*') if p.is_file())
    assert cached == sorted(CANONICAL + ['sst2/SST-2.zip'])     # archive and extracted members, nothing partial
    monkeypatch.setenv('FM_COURSE_MIRROR', 'http://127.0.0.1:9')  # server gone: a download would fail
    assert load_all() == downloaded                                 # second call: the cache
    # ... and the mirror's plain files give the same data as the downloaded archive
    monkeypatch.setenv('FM_COURSE_DATA', str(MIRROR))
    monkeypatch.setenv('FM_COURSE_CACHE', str(served.parent / 'other-cache'))
    assert load_all() == downloaded
    assert not (served.parent / 'other-cache').exists()            # all found in the mirror: nothing written


def test_corrupt_archive_is_refused_and_nothing_stays(served, monkeypatch):
    zpath = served / 'sst2/SST-2.zip'
    raw = bytearray(zpath.read_bytes()); raw[len(raw) // 2] ^= 0xFF; zpath.write_bytes(bytes(raw))
    with serve(served) as url:
        monkeypatch.setenv('FM_COURSE_MIRROR', url)
        t0 = time.perf_counter()
        with pytest.raises(MissingDataError) as e: load_sst2('dev')
    assert time.perf_counter() - t0 < 10
    msg = str(e.value)
    assert "'sst2/SST-2/dev.tsv'" in msg and 'sst2/SST-2.zip' in msg and 'is corrupt' in msg and url in msg
    assert not any(p.is_file() for p in cache_dir().rglob('*'))


def test_corrupt_member_inside_a_good_archive_is_refused(served, monkeypatch, tmp_path):
    "The archive matches its (registered) checksum, but the member inside does not match the member's."
    zpath = served / 'sst2/SST-2.zip'
    with zipfile.ZipFile(zpath, 'w') as z:
        z.writestr('SST-2/dev.tsv', (MIRROR / 'sst2/SST-2/dev.tsv').read_text().replace('bleak', 'bleek'))
    real = DATA_FILES['sst2/SST-2.zip']
    monkeypatch.setitem(DATA_FILES, 'sst2/SST-2.zip', DataFile(real.relpath, md5=data.file_digest(zpath, 'md5'), urls=real.urls))
    with serve(served) as url:
        monkeypatch.setenv('FM_COURSE_MIRROR', url)
        with pytest.raises(CorruptDataError) as e: load_sst2('dev')
    msg = str(e.value)
    assert "member 'SST-2/dev.tsv'" in msg and 'is corrupt' in msg and DATA_FILES['sst2/SST-2/dev.tsv'].sha256 in msg
    assert not (cache_dir() / 'sst2/SST-2/dev.tsv').exists() and not leftovers(cache_dir())


def test_corrupt_plain_member_in_data_folder(tmp_path, monkeypatch):
    src = MIRROR
    if src is None: pytest.skip('FM_COURSE_DATA does not point at the data mirror')
    bad = tmp_path / 'bad'; (bad / 'sst2/SST-2').mkdir(parents=True)
    raw = bytearray((src / 'sst2/SST-2/train.tsv').read_bytes()); raw[1000] ^= 0x01
    (bad / 'sst2/SST-2/train.tsv').write_bytes(bytes(raw))
    with pytest.raises(CorruptDataError) as e: load_sst2('train', root=bad)
    assert str(bad / 'sst2/SST-2/train.tsv') in str(e.value) and 'sha256' in str(e.value)
    assert not cache_dir().exists() or not any(cache_dir().rglob('*'))


def test_truncated_download_is_refused(served, monkeypatch):
    with serve(served, truncate={'ag_news/ag_news_csv/test.csv': 1000}) as url:
        monkeypatch.setenv('FM_COURSE_MIRROR', url)
        with pytest.raises(MissingDataError) as e: load_ag_news('test')
    msg = str(e.value)
    assert "'ag_news/ag_news_csv/test.csv'" in msg and f'{url}/ag_news/ag_news_csv/test.csv' in msg and 'Remedy' in msg
    assert not any(p.is_file() for p in cache_dir().rglob('*'))


def test_404_fails_fast_with_where_it_looked(served, monkeypatch):
    (served / 'tinyshakespeare/input.txt').unlink()
    with serve(served) as url:
        monkeypatch.setenv('FM_COURSE_MIRROR', url)
        t0 = time.perf_counter()
        with pytest.raises(MissingDataError) as e: load_tinyshakespeare()
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    assert '404' in msg and str(cache_dir()) in msg and os.environ['FM_COURSE_DATA'] in msg
    assert 'FM_COURSE_DATA' in msg and 'FM_COURSE_MIRROR' in msg      # how to get it
    assert not any(p.is_file() for p in cache_dir().rglob('*'))


def test_server_that_never_answers_times_out(served, monkeypatch):
    monkeypatch.setenv('FM_COURSE_DOWNLOAD_TIMEOUT', '1')
    with silent_server() as url:
        monkeypatch.setenv('FM_COURSE_MIRROR', url)
        t0 = time.perf_counter()
        with pytest.raises(MissingDataError, match='timed out'): load_sst2('test')
    assert time.perf_counter() - t0 < 5
    assert not any(p.is_file() for p in cache_dir().rglob('*'))


def test_offline_and_download_false(monkeypatch, tmp_path):
    monkeypatch.setenv('FM_COURSE_DATA', str(tmp_path / 'empty'))
    monkeypatch.setenv('FM_COURSE_OFFLINE', '1')
    with pytest.raises(MissingDataError, match='downloads are off') as e: load_mnist('test')
    assert str(tmp_path / 'empty') in str(e.value) and 'ossci-datasets' in str(e.value)
    monkeypatch.delenv('FM_COURSE_OFFLINE')
    with pytest.raises(MissingDataError, match='download=False'): fetch('sst2/SST-2/train.tsv', download=False)


@needs_data
def test_loaders_identical_in_two_fresh_processes():
    code = ("import hashlib, json; from fm_course.data import *\n"
            "out = {}\n"
            "for s in ('train','dev','test'): t, y = load_sst2(s); out['sst2/'+s] = [len(t), hashlib.sha256(json.dumps([t, y.tolist()]).encode()).hexdigest()]\n"
            "t, y = load_ag_news('test'); out['ag'] = [len(t), hashlib.sha256(json.dumps([t, y.tolist()]).encode()).hexdigest()]\n"
            "s = load_tinyshakespeare(); out['shakespeare'] = [len(s), hashlib.sha256(s.encode()).hexdigest()]\n"
            "x, y = load_mnist('test'); out['mnist'] = [len(x), hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()]\n"
            "print(json.dumps(out))")
    runs = [json.loads(subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout) for _ in range(2)]
    assert runs[0] == runs[1]
    assert {k: v[0] for k, v in runs[0].items()} == {'sst2/train': 67349, 'sst2/dev': 872, 'sst2/test': 1821, 'ag': 7600, 'mnist': 10000,
                                                    'shakespeare': 1115394}


# --- registry and bad input --------------------------------------------------------------------------------------------
def test_registry_is_canonical():
    "Every file has a checksum and a source (a URL, or an archive that has one); no deprecated derived file is listed."
    for rel, spec in DATA_FILES.items():
        assert spec.checksum[1], rel
        assert spec.urls or (spec.archive in DATA_FILES and DATA_FILES[spec.archive].urls and spec.member), rel
    assert not {'sst2/train.tsv', 'sst2/dev.tsv', 'sst2/test.tsv', 'ag_news/dev.tsv', 'ag_news/test.tsv'} & set(DATA_FILES)
    published = {'sst2/SST-2.zip': '9f81648d4199384278b86e315dac217c', 'ag_news/ag_news_csv/test.csv': 'd52ea96a97a2d943681189a97654912d',
                 'ag_news/ag_news_csv/train.csv': 'b1a00f826fdfbd249f79597b59e1dc12', 'mnist/t10k-images-idx3-ubyte.gz': '9fb629c4189551a2d022fa330f9573f3',
                 'mnist/t10k-labels-idx1-ubyte.gz': 'ec29112dd5afa0611ce80d1b7f02629c', 'mnist/train-images-idx3-ubyte.gz': 'f68b3c2dcbeaaa9fbdd348bbdeb94873',
                 'mnist/train-labels-idx1-ubyte.gz': 'd53e105ee54ea40749a09fcbcd1e9432'}
    sha = {'sst2/SST-2/train.tsv': '48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1',
           'sst2/SST-2/dev.tsv': '54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0',
           'sst2/sentiment-test': '4fefd1cd67526cf87ebc7fafc3afc21cc7cfa6ae53b45e74f77f9456e3c62752',
           'tinyshakespeare/input.txt': '86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed'}
    assert {k: DATA_FILES[k].md5 for k in published} == published      # the published checksums, not a test's
    assert {k: DATA_FILES[k].sha256 for k in sha} == sha


def test_data_dirs_order(monkeypatch, tmp_path):
    monkeypatch.setenv('FM_COURSE_DATA', str(tmp_path / 'mirror'))
    assert data_dirs() == [tmp_path / 'mirror', cache_dir()]
    assert data_dirs(tmp_path / 'other') == [tmp_path / 'other', cache_dir()]
    monkeypatch.delenv('FM_COURSE_DATA')
    assert data_dirs() == [cache_dir()]
    with pytest.raises(TypeError, match='root'): data_dirs(42)


@pytest.mark.parametrize('fn, bad', [(load_mnist, 'valid'), (load_sst2, 'validation'), (load_ag_news, 'valid'), (load_sst2, 0)])
def test_bad_split(fn, bad):
    with pytest.raises(ValueError, match='split='): fn(bad)


def test_fetch_bad_input():
    with pytest.raises(TypeError, match='relpath'): fetch(3)
    with pytest.raises(ValueError, match='relpath'): fetch('mnist/train.csv')
    with pytest.raises(TypeError, match='spec'): data.download_urls('sst2/SST-2.zip')


def test_corrupt_ag_news_row(tmp_path, monkeypatch):
    rel = 'ag_news/ag_news_csv/test.csv'
    p = tmp_path / rel; p.parent.mkdir(parents=True); p.write_text('"5","title","text"\n')
    monkeypatch.setitem(DATA_FILES, rel, DataFile(rel, sha256=data.file_digest(p)))
    with pytest.raises(CorruptDataError, match='row 1'): load_ag_news('test', root=tmp_path)


def test_mnist_5k():
    x, y = load_mnist_5k()
    assert x.shape == (5000, 28, 28) and x.dtype == torch.uint8 and torch.bincount(y).tolist() == [500] * 10


def test_idx_parser_rejects_bad_header(tmp_path):
    import gzip
    p = tmp_path / 'x.gz'
    with gzip.open(p, 'wb') as f: f.write((0x0803).to_bytes(4, 'big') + (2).to_bytes(4, 'big') * 3 + bytes(7))
    with pytest.raises(CorruptDataError, match='header says'): data._read_idx(p, 3)
    with pytest.raises(CorruptDataError, match='magic'): data._read_idx(p, 1)


def test_minilm_loads_offline(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    tok, enc = load_minilm()
    ids = tok('hello world', return_tensors='pt')
    with torch.no_grad(): h = enc(**ids).last_hidden_state
    assert h.shape[-1] == 384 and enc.config.num_hidden_layers == 6


def test_mirror_serving_a_data_folder_as_it_is(tmp_path, monkeypatch):
    "The documented mirror: a web server over a data folder that holds the archive's members as plain files (no zip)."
    if MIRROR is None: pytest.skip('FM_COURSE_DATA does not point at the data mirror')
    root = tmp_path / 'folder'
    for rel in CANONICAL:
        (root / rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy(MIRROR / rel, root / rel)
    monkeypatch.setenv('FM_COURSE_DATA', str(tmp_path / 'empty'))
    with serve(root) as url:
        monkeypatch.setenv('FM_COURSE_MIRROR', url)
        texts, labels = load_sst2('train')
    assert len(texts) == 67349 and (cache_dir() / 'sst2/SST-2/train.tsv').is_file() and not (cache_dir() / 'sst2/SST-2.zip').exists()


def test_second_canonical_url_is_tried(tmp_path, monkeypatch):
    "A file with two sources (MNIST has two mirrors) comes from the second when the first does not answer."
    src = tmp_path / 'x.gz'; src.write_bytes(b'idx bytes')
    rel = 'mnist/train-labels-idx1-ubyte.gz'
    monkeypatch.setitem(DATA_FILES, rel, DataFile(rel, sha256=data.file_digest(src), urls=('http://127.0.0.1:9/x.gz', src.as_uri())))
    monkeypatch.delenv('FM_COURSE_DATA', raising=False); monkeypatch.delenv('FM_COURSE_MIRROR', raising=False)
    monkeypatch.setenv('FM_COURSE_DOWNLOAD_TIMEOUT', '2')
    assert fetch(rel).read_bytes() == b'idx bytes'


def _zip_folder(tmp_path, members: dict, monkeypatch) -> Path:
    "A data folder holding only sst2/SST-2.zip with `members`, registered with its own checksum."
    root = tmp_path / 'zipfolder'; (root / 'sst2').mkdir(parents=True)
    with zipfile.ZipFile(root / 'sst2/SST-2.zip', 'w') as z:
        for name, text in members.items(): z.writestr(name, text)
    real = DATA_FILES['sst2/SST-2.zip']
    monkeypatch.setitem(DATA_FILES, real.relpath, DataFile(real.relpath, md5=data.file_digest(root / 'sst2/SST-2.zip', 'md5'), urls=real.urls))
    monkeypatch.setenv('FM_COURSE_OFFLINE', '1')
    return root


def test_archive_without_the_member(tmp_path, monkeypatch):
    root = _zip_folder(tmp_path, {'SST-2/other.tsv': 'x'}, monkeypatch)
    t0 = time.perf_counter()
    with pytest.raises(CorruptDataError, match="has no member 'SST-2/dev.tsv'"): load_sst2('dev', root=root)
    assert time.perf_counter() - t0 < 5 and not leftovers(cache_dir()) and not (cache_dir() / 'sst2/SST-2/dev.tsv').exists()


def test_archive_that_is_not_a_zip(tmp_path, monkeypatch):
    root = tmp_path / 'notzip'; (root / 'sst2').mkdir(parents=True); (root / 'sst2/SST-2.zip').write_bytes(b'not a zip at all')
    real = DATA_FILES['sst2/SST-2.zip']
    monkeypatch.setitem(DATA_FILES, real.relpath, DataFile(real.relpath, md5=data.file_digest(root / 'sst2/SST-2.zip', 'md5'), urls=real.urls))
    with pytest.raises(CorruptDataError, match='not a readable zip') as e: load_sst2('train', root=root)
    assert str(root / 'sst2/SST-2.zip') in str(e.value) and not leftovers(cache_dir())


def test_corrupt_archive_in_a_data_folder(tmp_path, monkeypatch):
    "An archive copy that does not match the published checksum is refused by name; nothing is extracted."
    root = tmp_path / 'bad'; (root / 'sst2').mkdir(parents=True)
    with zipfile.ZipFile(root / 'sst2/SST-2.zip', 'w') as z: z.writestr('SST-2/dev.tsv', 'sentence\tlabel\nfine\t1\n')
    with pytest.raises(CorruptDataError, match='is corrupt') as e: load_sst2('dev', root=root)
    assert str(root / 'sst2/SST-2.zip') in str(e.value) and '9f81648d4199384278b86e315dac217c' in str(e.value)
    assert not any(p.is_file() for p in cache_dir().rglob('*'))


@needs_data
def test_ag_news_text_rule_on_the_real_file():
    texts, _ = load_ag_news('test')
    assert not any('\\' in t for t in texts)                     # no backslash survives
    assert any('$1' in t for t in texts) and not any('  ' in t for t in texts)
    assert data.ag_news_text('A', r'costs \$5\and more') == 'A costs $5 and more'
