import shutil, time

import pytest
import torch

from fm_course import data
from fm_course.data import (DATA_FILES, CorruptDataError, DataFile, MissingDataError, cache_dir, data_dirs, fetch,
                            load_ag_news, load_minilm, load_mnist, load_mnist_5k, load_sst2, load_tinyshakespeare)
from conftest import needs_data, shared_data


def test_data_dirs_order(monkeypatch, tmp_path):
    monkeypatch.setenv('FM_COURSE_DATA', str(tmp_path / 'mirror'))
    assert data_dirs() == [tmp_path / 'mirror', cache_dir()]
    assert data_dirs(tmp_path / 'other') == [tmp_path / 'other', cache_dir()]
    monkeypatch.delenv('FM_COURSE_DATA')
    assert data_dirs() == [cache_dir()]
    with pytest.raises(TypeError, match='root must be a path'): data_dirs(42)


def test_fetch_bad_input():
    with pytest.raises(TypeError, match='relpath must be a str'): fetch(3)
    with pytest.raises(ValueError, match='not a known data file'): fetch('mnist/train.csv')


@needs_data
def test_corrupt_copy_raises_and_nothing_is_cached(tmp_path):
    rel = 'sst2/test.tsv'
    bad = tmp_path / 'bad'; (bad / 'sst2').mkdir(parents=True)
    raw = bytearray((shared_data() / rel).read_bytes()); raw[len(raw) // 2] ^= 0x01   # one byte changed
    (bad / rel).write_bytes(bytes(raw))
    with pytest.raises(CorruptDataError) as e: load_sst2('test', root=bad)
    msg = str(e.value)
    assert str(bad / rel) in msg and 'sha256' in msg and DATA_FILES[rel].sha256 in msg
    assert not cache_dir().exists() or not any(cache_dir().rglob('*'))            # nothing written to the cache


@needs_data
def test_corrupt_mnist_is_not_replaced_by_other_data(tmp_path):
    "A corrupt copy in the first folder is an error even though a good copy exists elsewhere: no silent switch."
    rel = 'mnist/t10k-labels-idx1-ubyte.gz'
    cache = cache_dir(); (cache / 'mnist').mkdir(parents=True)
    shutil.copy(shared_data() / rel, cache / rel)                                  # a good copy in the cache ...
    bad = tmp_path / 'bad'; (bad / 'mnist').mkdir(parents=True)
    raw = bytearray((shared_data() / rel).read_bytes()); raw[-5] ^= 0xFF
    (bad / rel).write_bytes(bytes(raw))                                            # ... and a corrupt one first
    with pytest.raises(CorruptDataError, match='is corrupt'): fetch(rel, root=bad)
    assert fetch(rel, root=cache) == cache / rel      # without the corrupt folder, the good copy is found


def test_unreachable_download_fails_fast_with_remedy(monkeypatch):
    spec = DataFile('tinyshakespeare/input.txt', sha256='0' * 64, urls=('http://127.0.0.1:9/input.txt',))
    monkeypatch.setitem(DATA_FILES, spec.relpath, spec)
    monkeypatch.delenv('FM_COURSE_DATA', raising=False)
    monkeypatch.setenv('FM_COURSE_DOWNLOAD_TIMEOUT', '3')
    t0 = time.perf_counter()
    with pytest.raises(MissingDataError) as e: load_tinyshakespeare()
    assert time.perf_counter() - t0 < 10
    msg = str(e.value)
    assert "'tinyshakespeare/input.txt'" in msg and str(cache_dir()) in msg and 'http://127.0.0.1:9/input.txt' in msg
    assert 'Remedy' in msg
    assert not any(cache_dir().rglob('*.txt')) and not any(cache_dir().rglob('*.part'))


def test_download_with_wrong_checksum_is_not_kept(monkeypatch, tmp_path):
    "A download that completes but does not match its checksum never lands in the cache."
    src = tmp_path / 'served.txt'; src.write_text('not shakespeare')
    spec = DataFile('tinyshakespeare/input.txt', sha256='0' * 64, urls=(src.as_uri(),))
    monkeypatch.setitem(DATA_FILES, spec.relpath, spec)
    monkeypatch.delenv('FM_COURSE_DATA', raising=False)
    with pytest.raises(MissingDataError, match='is corrupt'): load_tinyshakespeare()
    assert not any(p.is_file() for p in cache_dir().rglob('*'))


def test_download_success_is_verified_and_cached(monkeypatch, tmp_path):
    import hashlib
    src = tmp_path / 'served.txt'; src.write_text('To be, or not to be')
    spec = DataFile('tinyshakespeare/input.txt', sha256=hashlib.sha256(src.read_bytes()).hexdigest(), urls=(src.as_uri(),))
    monkeypatch.setitem(DATA_FILES, spec.relpath, spec)
    monkeypatch.delenv('FM_COURSE_DATA', raising=False)
    assert load_tinyshakespeare() == 'To be, or not to be'
    assert (cache_dir() / spec.relpath).is_file()


def test_offline_and_sourceless_errors(monkeypatch, tmp_path):
    monkeypatch.setenv('FM_COURSE_DATA', str(tmp_path / 'empty'))
    monkeypatch.setenv('FM_COURSE_OFFLINE', '1')
    with pytest.raises(MissingDataError, match='downloads are off'): load_mnist('test')
    with pytest.raises(MissingDataError, match='FM_COURSE_DATA') as e: load_ag_news('test')
    assert str(tmp_path / 'empty') in str(e.value)


@pytest.mark.parametrize('fn, bad', [(load_mnist, 'valid'), (load_sst2, 'validation'), (load_ag_news, 'train')])
def test_bad_split(fn, bad):
    with pytest.raises(ValueError, match='split='): fn(bad)


@needs_data
def test_loaders_types_and_sizes():
    x, y = load_mnist('test')
    assert x.shape == (10000, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.int64 and int(y.max()) == 9
    s, l = load_sst2('test')
    assert len(s) == 872 and isinstance(s[0], str) and l.dtype == torch.int64
    t, l = load_ag_news('test')
    assert len(t) == 7600 and set(l.tolist()) == {0, 1, 2, 3}
    assert load_tinyshakespeare().startswith('First Citizen')


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
