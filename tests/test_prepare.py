"""`data prepare`: the raw files a reader downloads by hand become the book's checked data files.

The raw forms are rebuilt here from the book's files the way upstream publishes them: GPT-2's
``vocab.bpe`` is the merges file with a ``#version: 0.2`` first line, Tatoeba's pairs come as
``cmn-eng.zip`` holding ``cmn.txt`` (beside manythings.org's ``_about.txt``), Tiny Shakespeare is
char-rnn's ``input.txt`` and GPT-2's vocabulary is ``encoder.json``.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from llm_tutorial import data
from llm_tutorial.data.corpora import CORPORA
from llm_tutorial.data.prepare import PrepareError, prepare_folder, recognise

REPO = Path(__file__).resolve().parents[1]
# The checksums the book was made with, written out independently of the package's table.
BOOK_SHA256 = {
    "tinyshakespeare.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    "tatoeba-cmn-eng.txt": "aa264a2447b26ab7c9d413f8321f9e2a779fd134b5118306b6e26a3499b3926e",
    "gpt2-vocab.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "gpt2-merges.txt": "ac33235097fe06d4a8fff0feac994644809e6eb6ab70669e1e9fd40ae032428e",
}


_BOOK_FILES: dict[str, bytes] = {}


def book_file(name: str) -> bytes:
    """The book's own file (from the shared data folder), read once before any test clears the variable."""
    return _BOOK_FILES[name]


@pytest.fixture(autouse=True, scope="module")
def _read_book_files():
    for name in CORPORA:
        _BOOK_FILES[name] = data.data_path(name, download=False).read_bytes()


def write_upstream_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, payload in members.items():
            archive.writestr(member, payload)


@pytest.fixture
def downloads(tmp_path) -> Path:
    """A downloads folder as a reader has it after fetching the four upstream files by hand."""
    folder = tmp_path / "Downloads"
    folder.mkdir()
    (folder / "input.txt").write_bytes(book_file("tinyshakespeare"))
    (folder / "encoder.json").write_bytes(book_file("gpt2-vocab"))
    (folder / "vocab.bpe").write_bytes(b"#version: 0.2\n" + book_file("gpt2-merges"))
    write_upstream_zip(folder / "cmn-eng.zip", {"cmn.txt": book_file("tatoeba-cmn-eng"),
                                                "_about.txt": b"Tab-delimited Bilingual Sentence Pairs\n"})
    (folder / "holiday.jpg").write_bytes(os.urandom(2000))
    return folder


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """No data folder and an empty cache: only what `prepare` writes can be found."""
    monkeypatch.delenv("LLM_TUTORIAL_DATA", raising=False)
    monkeypatch.setenv("LLM_TUTORIAL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_package_table_agrees_with_the_book_checksums():
    assert {corpus.filename: corpus.sha256 for corpus in CORPORA.values()} == BOOK_SHA256


def test_upstream_files_become_the_book_files_in_the_cache(downloads, isolated):
    assert not (book_file("gpt2-merges").startswith(b"#version"))  # the raw form really differs
    prepared = prepare_folder(downloads)
    assert prepared.missing == [] and [p.name for p in prepared.ignored] == ["holiday.jpg"]
    assert {name: path.name for name, path in prepared.sources.items()} == {
        "tinyshakespeare": "input.txt", "gpt2-vocab": "encoder.json", "gpt2-merges": "vocab.bpe",
        "tatoeba-cmn-eng": "cmn-eng.zip"}
    assert sorted(p.name for p in isolated.iterdir()) == sorted(BOOK_SHA256)
    for path in isolated.iterdir():
        assert sha256(path) == BOOK_SHA256[path.name]
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # a teacher's shared folder must be readable by all
    # The package now finds them with downloads switched off.
    assert data.data_path("gpt2-merges", download=False) == isolated / "gpt2-merges.txt"
    lines = book_file("tatoeba-cmn-eng").decode("utf-8-sig").splitlines()
    assert len(data.load_translation_pairs()) == sum(line.count("\t") >= 2 for line in lines) > 29000


def test_renamed_downloads_text_forms_and_an_output_folder(tmp_path, isolated):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "input (1).txt").write_bytes(book_file("tinyshakespeare"))  # a browser's second download
    (folder / "cmn.txt").write_bytes(book_file("tatoeba-cmn-eng"))  # the zip's text file, unzipped
    (folder / "gpt2-merges.txt").write_bytes(book_file("gpt2-merges"))  # already normalised
    out = tmp_path / "shared drive"
    prepared = prepare_folder(folder, out)
    assert prepared.missing == ["gpt2-vocab"]
    assert sorted(p.name for p in out.iterdir()) == ["gpt2-merges.txt", "tatoeba-cmn-eng.txt", "tinyshakespeare.txt"]
    assert all(sha256(p) == BOOK_SHA256[p.name] for p in out.iterdir())
    assert not isolated.exists()  # nothing went to the cache


def test_a_folder_already_holding_the_book_files_is_left_as_it_is(tmp_path):
    folder = tmp_path / "book-data"
    folder.mkdir()
    (folder / "gpt2-vocab.json").write_bytes(book_file("gpt2-vocab"))
    before = (folder / "gpt2-vocab.json").stat().st_mtime_ns
    assert prepare_folder(folder, folder).written == {"gpt2-vocab": folder / "gpt2-vocab.json"}
    assert (folder / "gpt2-vocab.json").stat().st_mtime_ns == before


@pytest.mark.parametrize("damage", ["truncated", "one byte changed", "version line kept twice", "wrong zip member"])
def test_a_damaged_upstream_file_is_named_and_nothing_is_written(downloads, isolated, damage):
    if damage == "truncated":
        bad = downloads / "vocab.bpe"
        bad.write_bytes(bad.read_bytes()[:-100])
    elif damage == "one byte changed":
        bad = downloads / "input.txt"
        text = bytearray(bad.read_bytes())
        text[5000] ^= 1
        bad.write_bytes(bytes(text))
    elif damage == "version line kept twice":
        bad = downloads / "vocab.bpe"
        bad.write_bytes(b"#version: 0.2\n" + bad.read_bytes())
    else:
        bad = downloads / "cmn-eng.zip"
        write_upstream_zip(bad, {"fra.txt": book_file("tatoeba-cmn-eng")})
    with pytest.raises(PrepareError) as error:
        prepare_folder(downloads)
    message = str(error.value)
    assert str(bad) in message and "python -m llm_tutorial data prepare" in message
    assert CORPORA[{"vocab.bpe": "gpt2-merges", "input.txt": "tinyshakespeare",
                    "cmn-eng.zip": "tatoeba-cmn-eng"}[bad.name]].url in message
    assert not isolated.exists()


def test_a_zip_bomb_is_not_inflated(tmp_path, isolated):
    folder = tmp_path / "in"
    folder.mkdir()
    write_upstream_zip(folder / "cmn-eng.zip", {"cmn.txt": bytes(65 << 20)})  # 65 MiB of zeros, ~65 kB zipped
    assert (folder / "cmn-eng.zip").stat().st_size < 1 << 20
    with pytest.raises(PrepareError, match="cmn-eng.zip is not the tatoeba-cmn-eng.txt"):
        prepare_folder(folder)


def test_unrelated_payloads_are_not_recognised():
    assert recognise(b"") is None
    assert recognise(b"#version: 0.2\n") is None
    assert recognise(os.urandom(1000)) is None


def test_an_empty_folder_or_no_folder_says_where_to_download(tmp_path, isolated):
    with pytest.raises(PrepareError) as error:
        prepare_folder(tmp_path)
    assert all(corpus.url in str(error.value) for corpus in CORPORA.values())
    with pytest.raises(PrepareError, match="is not a folder"):
        prepare_folder(tmp_path / "nowhere")


def run_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLM_TUTORIAL_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    env.pop("LLM_TUTORIAL_DATA", None)
    return subprocess.run([sys.executable, "-m", "llm_tutorial", "data", "prepare", *args], capture_output=True,
                          text=True, cwd=REPO, env=env)


def test_command_line(downloads, tmp_path):
    out = tmp_path / "out"
    done = run_cli(str(downloads), "--out", str(out), cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(SHA-256 checked)") == 4 and "ignored  holiday.jpg" in done.stdout
    assert f"export LLM_TUTORIAL_DATA={out.resolve()}" in done.stdout
    (downloads / "encoder.json").write_bytes(b"{}")
    failed = run_cli(str(downloads), cache=tmp_path / "cache")
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert "encoder.json is not the gpt2-vocab.json" in failed.stderr and "data prepare" in failed.stderr
    assert not (tmp_path / "cache").exists()


def test_every_data_error_names_the_prepare_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TUTORIAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LLM_TUTORIAL_DATA", str(tmp_path))
    with pytest.raises(data.DataUnavailableError, match="python -m llm_tutorial data prepare FOLDER"):
        data.data_path("gpt2-vocab", download=False)
    (tmp_path / "gpt2-vocab.json").write_bytes(b"{}")
    with pytest.raises(data.ChecksumError, match="python -m llm_tutorial data prepare FOLDER"):
        data.data_path("gpt2-vocab", download=False)
