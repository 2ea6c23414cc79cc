"""The PDF edition (``python3 tasks.py pdf``): every chapter in it, math and diagrams drawn, Chinese
extractable as text (not boxes, not pictures)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PDF = ROOT / "_build" / "pdf" / "llm-tutorial.pdf"
pytestmark = pytest.mark.skipif(
    not os.environ.get("LLM_TUTORIAL_CHROMIUM"), reason="headless Chromium is not available; the PDF is not built"
)


def _toc_files(entries):
    for entry in entries:
        yield entry["file"]
        yield from _toc_files(entry.get("sections", []))


def _title(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = next("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    else:
        text = path.read_text(encoding="utf-8")
    return re.search(r"^#\s+(.+)$", text, flags=re.M).group(1).strip()


@pytest.fixture(scope="module")
def pdf_text():
    from pypdf import PdfReader

    assert PDF.is_file(), f"{PDF} does not exist: run `python3 tasks.py pdf` first"
    reader = PdfReader(PDF)
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    # Chinese characters drawn from different slices of the subset font come out with spaces
    # between them ("背 景 介 绍"): join them again, as a reader's eye does.
    han = r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]"
    text = re.sub(rf"(?<={han})[ \t]+(?={han})", "", text)
    text = re.sub(rf"(?<={han})[ \t]+(?=[)）])|(?<=[(（])[ \t]+(?={han})", "", text)
    return len(reader.pages), text


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).lower()


def test_every_page_of_the_book_is_in_the_pdf(pdf_text):
    pages, text = pdf_text
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [f for part in toc["parts"] for f in _toc_files(part["chapters"])]
    sources = [next(ROOT.glob(f + ".*")) for f in files]
    missing = []
    for source in sources:
        title = _title(source)
        words = re.sub(r"[^\w\s]", " ", title).split()[:4]  # the title's first words, punctuation aside
        if not re.search(r"\W+".join(map(re.escape, (w.lower() for w in words))), _squash(text)):
            missing.append(title)
    assert not missing, f"titles not found in the PDF's text: {missing}"
    assert pages >= 10 * len([s for s in sources if s.suffix == ".ipynb"]), f"only {pages} pages"


def test_chinese_is_text_in_the_pdf(pdf_text):
    _, text = pdf_text
    assert "中文小结" in text, "the chapters' 中文小结 headings are not extractable from the PDF"
    assert len(re.findall(r"[\u4e00-\u9fff]", text)) > 500


def test_math_and_diagrams_were_drawn_before_printing(pdf_text):
    _, text = pdf_text
    assert "\\frac" not in text and "\\begin{" not in text, "raw LaTeX in the PDF: MathJax had not finished"
    assert not re.search(r"\b(graph|flowchart) (LR|TD|TB)\b", text), "raw mermaid source in the PDF"
