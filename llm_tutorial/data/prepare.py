"""Offline set-up: turn the files a reader downloads by hand into the files the book reads.

The package downloads its data itself on first use (:mod:`llm_tutorial.data.corpora`). Where that
cannot work — no internet on the machine, a slow route to foreign hosts, a lab of thirty machines —
a reader fetches the public files once, by any means, and runs::

    python -m llm_tutorial data prepare ~/Downloads

The upstream files are not quite the book's files: GPT-2's ``vocab.bpe`` starts with a
``#version: 0.2`` line the book's ``gpt2-merges.txt`` leaves out, and Tatoeba's pairs come as
``cmn-eng.zip`` holding ``cmn.txt``. This module recognises each file **by its content** (the
SHA-256 of the book's version of it, after the same normalisation the download applies), so a
browser's renamed ``input (1).txt`` is found too, and writes the normalised copies, checked, under
the names the package looks for. A file that carries one of the upstream names but is not the
book's version (truncated, edited, or a newer release upstream) is an error that names it.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .corpora import CORPORA, Corpus, _store, cache_dir, sha256_of

PREPARE_COMMAND = "python -m llm_tutorial data prepare FOLDER"

# No file of the book is larger than a few MB: anything much larger is not one of them, and is not
# read into memory (nor is a zip member that claims to be that large).
MAX_BYTES = 64 << 20

# Besides the book's own file name and the upstream name (the last part of the download address),
# the names under which a reader may hold a file.
OTHER_NAMES = {"tatoeba-cmn-eng": ("cmn.txt",)}


class PrepareError(ValueError):
    """The folder holds a file that should be one of the book's but is not, or none of them at all."""


@dataclass
class Prepared:
    """What :func:`prepare_folder` did: files written (or already in place), files missing."""

    written: dict[str, Path] = field(default_factory=dict)  # corpus name -> the file now in ``out``
    sources: dict[str, Path] = field(default_factory=dict)  # corpus name -> the file it came from
    missing: list[str] = field(default_factory=list)  # corpus names found nowhere in the folder
    ignored: list[Path] = field(default_factory=list)  # files that are none of the book's


def upstream_name(corpus: Corpus) -> str:
    """The file name a download from the canonical address gets (``input.txt``, ``vocab.bpe``, ...)."""
    return corpus.url.rsplit("/", 1)[-1]


def known_names(name: str) -> tuple[str, ...]:
    """Every file name under which a reader may hold the named corpus."""
    corpus = CORPORA[name]
    return (corpus.filename, upstream_name(corpus), *OTHER_NAMES.get(name, ()))


def _candidates(payload: bytes, corpus: Corpus) -> list[bytes]:
    """The payload as it is, and as the download would normalise it (unzipped, version line dropped)."""
    candidates = [payload]
    if corpus.extract is not None:
        if zipfile.is_zipfile(io.BytesIO(payload)):
            with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                # A zip's directory states each member's size: refuse to inflate a huge one.
                if any(info.file_size > MAX_BYTES for info in archive.infolist()):
                    return candidates
        try:
            candidates.append(corpus.extract(payload))
        except (KeyError, zipfile.BadZipFile, ValueError, OSError, EOFError):
            pass  # not this corpus's upstream form (e.g. a zip without cmn.txt)
    return candidates


def recognise(payload: bytes) -> tuple[str, bytes] | None:
    """``(corpus name, the book's file content)`` when ``payload`` is one of the book's files in its
    upstream or normalised form; ``None`` otherwise."""
    for name, corpus in CORPORA.items():
        for content in _candidates(payload, corpus):
            if hashlib.sha256(content).hexdigest() == corpus.sha256:
                return name, content
    return None


def prepare_folder(folder: str | Path, out: str | Path | None = None) -> Prepared:
    """Find the book's files among those in ``folder`` and write their normalised, checked copies
    into ``out`` (default: the download cache, where the package looks without further set-up).

    Raises :class:`PrepareError` when a file bearing one of the book's or upstream names is not the
    book's version, or when the folder holds none of the book's files.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise PrepareError(f"{folder} is not a folder: give the folder that holds the files you downloaded")
    target = Path(out).expanduser() if out is not None else cache_dir()
    by_name = {file_name: name for name in CORPORA for file_name in known_names(name)}
    result = Prepared()
    found: dict[str, bytes] = {}
    bad: list[str] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        recognised = recognise(path.read_bytes()) if path.stat().st_size <= MAX_BYTES else None
        if recognised is None:
            expected = by_name.get(path.name)
            if expected is not None:
                bad.append(_not_the_book_file(path, CORPORA[expected]))
            else:
                result.ignored.append(path)
        elif recognised[0] not in found:  # the same file twice (the zip and its cmn.txt): one copy is enough
            found[recognised[0]] = recognised[1]
            result.sources[recognised[0]] = path
    if bad:  # nothing is written: fix the folder, then run again
        raise PrepareError("\n".join(bad))
    for name, content in found.items():
        destination = target / CORPORA[name].filename
        if destination.resolve() != result.sources[name].resolve():
            _store(content, _as_is(CORPORA[name]), destination)  # checks the checksum again, writes atomically
            destination.chmod(0o644)  # readable by every user: a teacher's shared folder serves a whole lab
        result.written[name] = destination
    result.missing = [name for name in CORPORA if name not in result.written]
    if not result.written:
        raise PrepareError(
            f"none of the book's data files is in {folder}. Download them (addresses below), put them "
            f"in one folder and run `{PREPARE_COMMAND}` on it:\n" + missing_help(list(CORPORA))
        )
    return result


def _as_is(corpus: Corpus) -> Corpus:
    """The corpus with no extraction step: the content handed to ``_store`` is already normalised."""
    return Corpus(corpus.filename, corpus.url, corpus.sha256, corpus.licence)


def _not_the_book_file(path: Path, corpus: Corpus) -> str:
    actual = sha256_of(path)  # streamed: a large wrong file is named, not read into memory
    return (
        f"{path} is not the {corpus.filename} the book was made with (its SHA-256 is {actual}; the book's "
        f"file, after normalising, has {corpus.sha256}). It is truncated, edited, or a different version: "
        f"download it again from {corpus.url} and rerun `{PREPARE_COMMAND}`."
    )


def missing_help(names: list[str]) -> str:
    """One line per corpus: its file name, where to download it, and its licence."""
    return "\n".join(
        f"  {CORPORA[name].filename:<22} from {CORPORA[name].url}  ({CORPORA[name].licence})" for name in names
    )
