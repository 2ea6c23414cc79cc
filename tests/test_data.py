"""Corpora (checksum, cache, offline errors) and batching (shapes, ranges, determinism)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading

import pytest
import torch

from llm_tutorial import data
from llm_tutorial.data import corpora


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No local data folder, an empty cache: every lookup must go to the URL."""
    monkeypatch.delenv("LLM_TUTORIAL_DATA", raising=False)
    monkeypatch.setenv("LLM_TUTORIAL_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def server(tmp_path):
    """A file server on 127.0.0.1 that counts its requests."""
    root = tmp_path / "served"
    root.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()


def _register(monkeypatch, name, url, content: bytes, **kwargs):
    corpus = corpora.Corpus(
        filename=f"{name}.txt", url=url, sha256=hashlib.sha256(content).hexdigest(), licence="test", **kwargs
    )
    monkeypatch.setitem(corpora.CORPORA, name, corpus)
    return corpus


def test_shared_corpora_match_their_checksums():
    for name in data.CORPORA:
        path = data.data_path(name, download=False)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == data.CORPORA[name].sha256


def test_download_once_then_cache(isolated, server, monkeypatch):
    root, base, hits = server
    content = "to be, or not to be\n".encode()
    (root / "t.txt").write_bytes(content)
    _register(monkeypatch, "toy", f"{base}/t.txt", content)
    first = data.data_path("toy")
    second = data.data_path("toy")
    assert first == second == isolated / "cache" / "toy.txt"
    assert first.read_bytes() == content
    assert hits == ["/t.txt"], "the second lookup must come from the cache"
    assert not list((isolated / "cache").glob("*.part")), "no temporary file may be left behind"


def test_download_with_bad_checksum_saves_nothing(isolated, server, monkeypatch):
    root, base, _ = server
    (root / "t.txt").write_bytes(b"tampered")
    _register(monkeypatch, "toy", f"{base}/t.txt", b"original")
    with pytest.raises(data.ChecksumError, match="Nothing was saved"):
        data.data_path("toy")
    assert not (isolated / "cache" / "toy.txt").exists()


def test_corrupt_local_copy_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "tinyshakespeare.txt").write_text("First Citizen:\nnot the real file\n")
    monkeypatch.setenv("LLM_TUTORIAL_DATA", str(folder))
    with pytest.raises(data.ChecksumError, match="corrupt or a different version"):
        data.load_text("tinyshakespeare")


def test_corrupt_cached_copy_is_refused(isolated, monkeypatch):
    _register(monkeypatch, "toy", "http://127.0.0.1:9/never", b"good")
    (isolated / "cache").mkdir()
    (isolated / "cache" / "toy.txt").write_bytes(b"bad")
    with pytest.raises(data.ChecksumError):
        data.data_path("toy")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_offline_error_names_both_ways_out(isolated, monkeypatch):
    _register(monkeypatch, "toy", f"http://127.0.0.1:{_closed_port()}/t.txt", b"x")
    with pytest.raises(data.DataUnavailableError) as error:
        data.data_path("toy")
    message = str(error.value)
    assert "connect to the internet" in message and "LLM_TUTORIAL_DATA" in message


def test_no_download_when_switched_off(isolated, monkeypatch):
    _register(monkeypatch, "toy", "http://127.0.0.1:9/t.txt", b"x")
    with pytest.raises(data.DataUnavailableError, match="switched off"):
        data.data_path("toy", download=False)


def test_zip_member_is_extracted_and_checked(isolated, server, monkeypatch):
    import io
    import zipfile

    root, base, _ = server
    member = "Hi.\t嗨。\tCC-BY 2.0 (France) Attribution: tatoeba.org #1 (a) & #2 (b)\n".encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cmn.txt", member)
    (root / "cmn-eng.zip").write_bytes(buffer.getvalue())
    _register(monkeypatch, "pairs", f"{base}/cmn-eng.zip", member, extract=corpora._unzip_member("cmn.txt"))
    assert data.load_translation_pairs("pairs") == [("Hi.", "嗨。", member.decode().split("\t")[2].rstrip("\n"))]


def test_unknown_corpus():
    with pytest.raises(KeyError, match="tinyshakespeare"):
        data.data_path("shakespeare")


def test_tatoeba_pairs_keep_attribution():
    pairs = data.load_translation_pairs()
    assert len(pairs) == 29155
    assert all(attribution.startswith("CC-BY 2.0 (France)") for _, _, attribution in pairs)
    assert pairs[0][:2] == ("Hi.", "嗨。"), "the file's byte-order mark must not stick to the first sentence"


def test_batches_are_windows_with_shifted_targets():
    stream = torch.arange(1000)
    x, y = data.get_batch(stream, batch_size=7, context_length=13, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (7, 13) and x.dtype == torch.long
    assert torch.equal(y, x + 1), "targets are the inputs shifted by one position"
    assert torch.equal(x[:, 1:], x[:, :-1] + 1), "each row is a contiguous window"
    assert int(x.min()) >= 0 and int(y.max()) <= 999


def test_every_start_offset_is_reachable_and_none_overflows():
    stream = torch.arange(12)
    x, y = data.get_batch(stream, batch_size=4000, context_length=4, generator=torch.Generator().manual_seed(1))
    assert set(x[:, 0].tolist()) == set(range(8)), "offsets 0..N-T-1 must all occur"
    assert int(y.max()) == 11


def test_same_seed_same_batches_different_seed_different_batches():
    stream = torch.randint(0, 50, (5000,))

    def draw(seed):
        return data.get_batch(stream, 8, 16, generator=torch.Generator().manual_seed(seed))[0]

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


def test_train_val_split_is_contiguous():
    stream = torch.arange(100)
    train, val = data.train_val_split(stream, 0.1)
    assert torch.equal(torch.cat([train, val]), stream) and len(val) == 10


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: data.get_batch(torch.arange(5), 2, 5), ValueError, "too few"),
        (lambda: data.get_batch(torch.arange(50).view(5, 10), 2, 3), ValueError, "1 dimensions"),
        (lambda: data.get_batch(torch.arange(50), 0, 3), ValueError, "batch_size"),
        (lambda: data.train_val_split(torch.arange(50), 1.5), ValueError, "val_fraction"),
        (lambda: data.encode_corpus([1, 2, 99], vocab_size=10), ValueError, "outside"),
    ],
)
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()
