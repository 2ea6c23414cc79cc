"""Named corpora: found in a local folder, or downloaded once, checked, and cached.

Every data file the book uses has a name, a canonical public URL and a SHA-256 checksum. Looking a
name up tries, in order:

1. the folder named by ``LLM_TUTORIAL_DATA`` (offline machines, CI, a teacher's shared drive);
2. the cache folder (``LLM_TUTORIAL_CACHE``, default ``~/.cache/llm_tutorial``);
3. a download from the canonical URL into the cache.

A file is used only if its checksum matches: a truncated download or an edited copy fails loudly
instead of silently changing the book's numbers.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..runtime import progress_bars

DATA_ENV = "LLM_TUTORIAL_DATA"
CACHE_ENV = "LLM_TUTORIAL_CACHE"


class DataUnavailableError(RuntimeError):
    """A corpus is neither on disk nor downloadable (e.g. offline)."""


class ChecksumError(RuntimeError):
    """A file's SHA-256 differs from the one the book was made with."""


@dataclass(frozen=True)
class Corpus:
    """Where a named file comes from and how to recognise a good copy."""

    filename: str
    url: str
    sha256: str
    licence: str
    extract: Callable[[bytes], bytes] | None = None  # turns the downloaded bytes into the file


def _unzip_member(member: str) -> Callable[[bytes], bytes]:
    def extract(payload: bytes) -> bytes:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            return archive.read(member)

    return extract


def _drop_version_line(payload: bytes) -> bytes:
    # OpenAI's vocab.bpe starts with "#version: 0.2"; the merges file is the rest.
    first, _, rest = payload.partition(b"\n")
    return rest if first.startswith(b"#version") else payload


CORPORA: dict[str, Corpus] = {
    "tinyshakespeare": Corpus(
        filename="tinyshakespeare.txt",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        licence="public domain (karpathy/char-rnn)",
    ),
    "tatoeba-cmn-eng": Corpus(
        filename="tatoeba-cmn-eng.txt",
        url="https://www.manythings.org/anki/cmn-eng.zip",
        sha256="aa264a2447b26ab7c9d413f8321f9e2a779fd134b5118306b6e26a3499b3926e",
        licence="CC-BY 2.0 FR, Tatoeba (tatoeba.org) via manythings.org",
        extract=_unzip_member("cmn.txt"),
    ),
    "gpt2-vocab": Corpus(
        filename="gpt2-vocab.json",
        url="https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
        sha256="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
        licence="MIT (OpenAI GPT-2)",
    ),
    "gpt2-merges": Corpus(
        filename="gpt2-merges.txt",
        url="https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
        sha256="ac33235097fe06d4a8fff0feac994644809e6eb6ab70669e1e9fd40ae032428e",
        licence="MIT (OpenAI GPT-2)",
        extract=_drop_version_line,
    ),
}


def cache_dir() -> Path:
    """The folder downloads go to: ``$LLM_TUTORIAL_CACHE`` or ``~/.cache/llm_tutorial``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "llm_tutorial")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(path: Path, corpus: Corpus) -> Path:
    actual = sha256_of(path)
    if actual != corpus.sha256:
        raise ChecksumError(
            f"{path} has SHA-256 {actual}, but the book was made with {corpus.sha256}. "
            f"The file is corrupt or a different version: delete it, download {corpus.url} again, and run "
            f"`python -m llm_tutorial data prepare FOLDER` on the folder you saved it in."
        )
    return path


def _lookup(name: str) -> Corpus:
    if name not in CORPORA:
        raise KeyError(f"unknown corpus {name!r}; choose one of {', '.join(sorted(CORPORA))}")
    return CORPORA[name]


def data_path(name: str, *, download: bool = True) -> Path:
    """The local path of the named file, downloading it on first use.

    Raises ``DataUnavailableError`` when the file is nowhere on disk and cannot be downloaded,
    and ``ChecksumError`` when a copy is found but is not the expected file.
    """
    corpus = _lookup(name)
    local_folder = os.environ.get(DATA_ENV)
    if local_folder and (Path(local_folder) / corpus.filename).is_file():
        return _verified(Path(local_folder) / corpus.filename, corpus)
    cached = cache_dir() / corpus.filename
    if cached.is_file():
        return _verified(cached, corpus)
    if not download:
        raise DataUnavailableError(_missing_message(corpus, local_folder, reason="downloads are switched off"))
    try:
        payload = _fetch(corpus.url)
    except (urllib.error.URLError, OSError) as error:
        raise DataUnavailableError(_missing_message(corpus, local_folder, reason=str(error))) from error
    return _store(payload, corpus, cached)


def _missing_message(corpus: Corpus, local_folder: str | None, reason: str) -> str:
    looked = f"{local_folder} (from {DATA_ENV}) and " if local_folder else ""
    return (
        f"{corpus.filename} is not in {looked}{cache_dir()}, and downloading it failed ({reason}). Either\n"
        f"  1. connect to the internet, and it will be downloaded from {corpus.url}; or\n"
        f"  2. download that address by hand (on any machine), put the file in a folder and run\n"
        f"     `python -m llm_tutorial data prepare FOLDER`: it checks the file and puts it where it is found; or\n"
        f"  3. if you have the book's {corpus.filename} already (say, on a teacher's shared drive), set\n"
        f"     {DATA_ENV}=/path/to/its/folder."
    )


def _fetch(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "llm-tutorial"})
    with urllib.request.urlopen(request, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        chunks = []
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {url.rsplit('/', 1)[-1]}",
                  disable=not progress_bars()) as bar:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                chunks.append(chunk)
                bar.update(len(chunk))
    return b"".join(chunks)


def _store(payload: bytes, corpus: Corpus, target: Path) -> Path:
    """Check the payload, then write it with a rename, so a crash never leaves half a file."""
    content = corpus.extract(payload) if corpus.extract else payload
    actual = hashlib.sha256(content).hexdigest()
    if actual != corpus.sha256:
        raise ChecksumError(
            f"downloaded {corpus.filename} from {corpus.url} has SHA-256 {actual}, expected {corpus.sha256}: "
            f"the download is corrupt or the file changed upstream. Nothing was saved. "
            f"Get the book's version of the file into a folder and run `python -m llm_tutorial data prepare FOLDER`."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as handle:
        handle.write(content)
        temporary = Path(handle.name)
    os.replace(temporary, target)
    return target


def load_text(name: str) -> str:
    """The named corpus as one string (UTF-8)."""
    return data_path(name).read_text(encoding="utf-8")


def load_translation_pairs(name: str = "tatoeba-cmn-eng") -> list[tuple[str, str, str]]:
    """Tatoeba's English–Chinese pairs as ``(english, chinese, attribution)`` triples.

    The attribution column names each sentence's Tatoeba authors (CC-BY 2.0 FR): keep it with
    any copy you share.
    """
    pairs = []
    for line in load_text(name).lstrip("\ufeff").splitlines():  # the file starts with a byte-order mark
        fields = line.split("\t")
        if len(fields) >= 3:
            pairs.append((fields[0], fields[1], fields[2]))
    return pairs
