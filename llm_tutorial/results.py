"""A chapter's measured results: glued into the prose, recorded for the claims tests.

A figure typed by hand into a sentence drifts from the output it describes the moment a run
changes. So every figure the book quotes is measured in a code cell and handed to
:class:`ChapterResults`, which does two things with it:

* **glue** — it writes the value into the notebook's outputs the way myst-nb's ``glue`` does, so
  the markdown can say ``{glue:text}`ch05_gpt_val:.3f``` and the built page shows the number
  the run produced;
* **record** — :meth:`ChapterResults.save` writes every value to ``book/results/chNN.json``,
  which ``tests/test_claims.py`` reads to assert each comparison the prose makes ("beam beats
  greedy", "chapter 5's GPT beats chapter 1's Kneser–Ney").

Quick mode (``LLM_TUTORIAL_QUICK=1``, used by CI) still glues, so the pages build, but never
overwrites the recorded file: a shortened run's numbers are not the book's results.

Example::

    results = ChapterResults("ch05")
    results.record("gpt_val", 1.624)          # glued as ch05_gpt_val
    results.save()                             # book/results/ch05.json (full runs only)
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path

from ._checks import check_bool
from .runtime import quick_mode

GLUE_PREFIX = "application/papermill.record/"
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_CHAPTER = re.compile(r"ch\d\d(?:[a-z]+|_[a-z]+)?\Z")  # "ch05"; a section notebook adds letters: "ch06cg" or "ch05_speedrun"


def results_folder(start: str | Path | None = None) -> Path | None:
    """``book/results`` of the checkout that holds ``start`` (default: the working directory).

    ``None`` outside a checkout of the book (Colab, an installed package): results are then glued
    but not recorded, since there is no book to record them in.
    """
    here = Path.cwd() if start is None else Path(start)
    for folder in (here, *here.resolve().parents):
        if (folder / "_toc.yml").is_file() and (folder / "book").is_dir():
            return folder / "book" / "results"
    return None


def glue(name: str, value, display: bool = False) -> None:
    """Make ``value`` available to the page as ``{glue:text}`name```, as myst-nb's ``glue`` does.

    Written here (on IPython alone) so a notebook runs where myst-nb is not installed; the output
    is the same mime bundle myst-nb reads. Outside IPython this does nothing.
    """
    try:
        from IPython import get_ipython
        from IPython.core.formatters import format_display_data
        from IPython.display import display as ipy_display
    except ImportError:  # plain Python: nothing to glue into
        return
    if get_ipython() is None:
        return
    bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    ipy_display({prefix + mime: data for mime, data in bundle.items()}, raw=True, metadata=metadata)


def _plain(value):
    """``value`` as JSON can hold it: numbers, strings, booleans, and lists/dicts of them."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # NumPy / torch scalars
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a recorded result must be finite, got {value}")
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    raise TypeError(f"cannot record a {type(value).__name__}; record numbers, strings, lists or dicts")


class ChapterResults:
    """The figures one chapter measures, glued as ``<chapter>_<name>`` and saved to ``<chapter>.json``."""

    def __init__(self, chapter: str, folder: str | Path | None = None):
        if not isinstance(chapter, str) or not _CHAPTER.match(chapter):
            raise ValueError(f"chapter must look like 'ch05' (or 'ch06cg' / 'ch05_speedrun' for a section notebook), "
                             f"got {chapter!r}")
        self.chapter = chapter
        self.folder = Path(folder) if folder is not None else results_folder()
        self.values: dict[str, object] = {}

    def record(self, name: str, value, display: bool = False):
        """Keep ``value`` under ``name`` and glue it as ``<chapter>_<name>``; returns ``value``.

        Recording the same name twice is an error: two cells would claim the same figure.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"a result name is lower_snake_case, got {name!r}")
        check_bool(display, "display")
        if name in self.values:
            raise ValueError(f"{self.chapter}: result {name!r} was already recorded")
        plain = _plain(value)
        self.values[name] = plain
        glue(f"{self.chapter}_{name}", plain, display=display)  # a tensor would be glued as "tensor(0.9189)"
        return value

    def update(self, **values) -> None:
        """Record several results at once: ``results.update(greedy_bleu=16.0, beam_bleu=16.9)``."""
        for name, value in values.items():
            self.record(name, value)

    def save(self) -> Path | None:
        """Write ``<folder>/<chapter>.json`` after a full run; returns its path.

        Does nothing (returns ``None``) in quick mode or outside a checkout of the book. The file is
        written whole or not at all (a temporary file renamed over it), so an interrupted run never
        leaves half a results file.
        """
        if quick_mode() or self.folder is None:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.chapter}.json"
        text = json.dumps(self.values, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{self.chapter}-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def load_results(chapter: str, folder: str | Path | None = None) -> dict:
    """The recorded results of ``chapter`` (``"ch05"``) as a dict; a clear error when none exist."""
    base = Path(folder) if folder is not None else results_folder()
    if base is None:
        raise FileNotFoundError("not inside a checkout of the book: no book/results folder")
    path = base / f"{chapter}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the chapter's notebook in full mode to record it")
    return json.loads(path.read_text(encoding="utf-8"))
