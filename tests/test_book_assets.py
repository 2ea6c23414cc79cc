"""The book's Sphinx extension (book/_ext/book_assets.py): folded-cell labels, author–year
bibliography labels, and the checksum guard on what it downloads."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
import book_assets  # noqa: E402


def _code(source: str, tags=(), nbgrader=None) -> dict:
    metadata = {"tags": list(tags)}
    if nbgrader:
        metadata["nbgrader"] = nbgrader
    return {"cell_type": "code", "source": source, "metadata": metadata, "outputs": []}


def test_folded_cells_are_named_by_what_they_hold():
    notebook = {"cells": [
        {"cell_type": "markdown", "source": "# Title", "metadata": {}},
        _code("import subprocess  # set-up"),
        _code("x = 1"),
        _code("### BEGIN SOLUTION\nx = 2\n### END SOLUTION", ["hide-input"], {"solution": True, "grade": False}),
        _code("assert x == 2", ["hide-input"], {"solution": False, "grade": True, "points": 1}),
        _code("print('folded helper')", ["hide-input"]),
    ]}
    cells = book_assets.label_folded_cells(notebook)["cells"]
    prompts = [c["metadata"].get("mystnb", {}).get("code_prompt_show") for c in cells[1:]]
    assert prompts == ["Show set-up", None, "Show solution", "Show hidden test", "Show code"]
    assert "hide-input" in cells[1]["metadata"]["tags"], "the set-up cell is folded in every chapter"
    assert "hide-input" not in cells[2]["metadata"]["tags"]


def test_bibliography_labels_are_author_year():
    from pybtex.database import parse_string
    from pybtex.plugin import find_plugin

    bib = parse_string(r"""
@article{v17, author={Vaswani, Ashish and Shazeer, Noam and Parmar, Niki}, title={Attention}, journal={J}, year={2017}}
@article{b16, author={Ba, Jimmy and Kiros, Jamie}, title={Layer normalization}, journal={J}, year={2016}}
@article{s1, author={Shannon, Claude}, title={A}, journal={J}, year={1948}}
@article{s2, author={Shannon, Claude}, title={B}, journal={J}, year={1948}}
""", "bibtex")
    book_assets._register_author_year_labels()
    style = find_plugin("pybtex.style.formatting", "authoryear")()
    labels = {entry.key: entry.label for entry in style.format_entries(bib.entries.values())}
    assert labels == {"v17": "Vaswani et al., 2017", "b16": "Ba and Kiros, 2016",
                      "s1": "Shannon, 1948a", "s2": "Shannon, 1948b"}


def test_a_download_with_the_wrong_checksum_is_refused(monkeypatch):
    monkeypatch.setattr(book_assets.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"not mermaid"))
    with pytest.raises(RuntimeError, match="refusing"):
        book_assets._fetch_checked("https://registry.npmjs.org/x.tgz", book_assets.MERMAID["sha512"])
