"""The committed notebooks: full-run outputs, Colab set-up cell, and the book's table of contents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from llm_tutorial.assignments import find_exercises

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("ch*.ipynb"))


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def code_cells(notebook: dict) -> list[dict]:
    return [c for c in notebook["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def outputs_text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append("".join(output.get("text", "")))
        parts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "".join(parts)


def toc_entries(entries: list[dict]) -> list[str]:
    files = []
    for entry in entries:
        files.append(entry["file"])
        files += toc_entries(entry.get("sections", []))
    return files


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [file for part in toc["parts"] for file in toc_entries(part["chapters"])]


def test_there_are_chapter_notebooks():
    assert NOTEBOOKS, "no notebooks/ch*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_a_full_run_top_to_bottom(path):
    notebook = load(path)
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    counts = [cell.get("execution_count") for cell in code_cells(notebook)]
    assert None not in counts, "every code cell must have been executed"
    assert counts == list(range(1, len(counts) + 1)), "cells must be executed once, top to bottom, in a fresh kernel"
    errors = [o for c in code_cells(notebook) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    tagged = [c for c in code_cells(notebook) if "raises-exception" in c.get("metadata", {}).get("tags", [])]
    assert len(errors) <= len(tagged), "only cells tagged raises-exception may show an error"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_published_outputs_are_not_from_quick_mode(path):
    text = "".join(outputs_text(cell) for cell in code_cells(load(path)))
    assert "quick mode: False" in text, "the set-up cell must print 'quick mode: False' from a full run"
    assert "quick mode: True" not in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_installs_on_colab_from_the_configured_repository(path):
    first = "".join(code_cells(load(path))[0]["source"])
    configured = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert '"google.colab" in sys.modules' in first, "the install must run on Colab only"
    match = re.search(r'REPOSITORY = "([^"]+)"', first)
    assert match and match.group(1) == configured, f"install cell must use {configured} from _config.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_in_the_table_of_contents(path):
    assert f"notebooks/{path.stem}" in toc_files()


def test_every_toc_entry_exists():
    for entry in toc_files():
        assert any((ROOT / f"{entry}{suffix}").is_file() for suffix in (".md", ".ipynb")), f"{entry} is missing"


def test_chapters_appear_in_the_article_order():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    chapters = [c["file"] for part in toc["parts"] for c in part["chapters"] if c["file"].startswith("notebooks/ch")]
    assert chapters == sorted(chapters)


CHAPTERS = [p for p in NOTEBOOKS if re.fullmatch(r"ch\d\d_[a-z_]+", p.stem) and "_assignment_" not in p.stem]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_has_a_graded_exercise_with_collapsed_solution_and_hidden_tests(path):
    notebook = load(path)
    exercises = find_exercises(notebook)
    assert exercises, "each chapter needs at least one exercise marked in nbgrader's format"
    for exercise in exercises:
        assert exercise.solution_cells, f"{exercise.grade_id} has no solution cell"
        for index in exercise.solution_cells:
            cell = notebook["cells"][index]
            source = "".join(cell["source"])
            assert "### BEGIN SOLUTION" in source and "### END SOLUTION" in source
            assert "hide-input" in cell["metadata"].get("tags", []), "the book must show solutions collapsed"
        assert "### BEGIN HIDDEN TESTS" in "".join(notebook["cells"][exercise.test_cell]["source"])
        assert exercise.points > 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_is_skipped_by_nbval(path):
    """Quick mode shortens loops; it never skips a cell, so CI runs every cell the reader runs."""
    for cell in code_cells(load(path)):
        source = "".join(cell["source"])
        tags = cell.get("metadata", {}).get("tags", [])
        assert not re.search(r"#\s*NBVAL_SKIP|#\s*NBVAL_IGNORE_OUTPUT", source, re.IGNORECASE), source[:80]
        assert "nbval-skip" not in tags, source[:80]


# A cell that exists to show an error or a warning carries this tag; any other stderr output in a
# committed notebook is noise (a progress bar, a library's log line) that the published page would show.
SHOWS_STDERR_TAG = "shows-stderr"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_stderr_noise_in_committed_outputs(path):
    noisy = []
    for index, cell in enumerate(load(path)["cells"]):
        if cell["cell_type"] != "code" or SHOWS_STDERR_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                noisy.append(f"cell {index}: {''.join(output['text'])[:80]!r}")
    assert not noisy, f"stderr in committed outputs (tag the cell {SHOWS_STDERR_TAG!r} if it is the point):\n" + "\n".join(noisy)


CHAPTERS_ONLY = [p for p in NOTEBOOKS if "assignment" not in p.stem]


def _markdown(path: Path) -> str:
    return "\n".join("".join(c["source"]) for c in load(path)["cells"] if c["cell_type"] == "markdown")


@pytest.mark.parametrize("path", CHAPTERS_ONLY, ids=lambda p: p.stem)
def test_chapter_ends_with_a_chinese_summary(path):
    """Summary, Exercises and a 中文小结 of 200–400 Chinese characters; learning goals in Chinese too."""
    text = _markdown(path)
    headings = re.findall(r"^#+\s*(.+)$", text, flags=re.M)
    assert any("中文小结" in h for h in headings), f"{path.stem}: no '中文小结' heading"
    section = text.split("中文小结", 1)[1]
    section = re.split(r"^#{1,2}\s", section, maxsplit=1, flags=re.M)[0]
    han = len(re.findall(r"[\u4e00-\u9fff]", section))
    assert 200 <= han <= 400 + 150, f"{path.stem}: 中文小结 has {han} Chinese characters (200–400 wanted)"
    assert any("学习目标" in h for h in headings) or "学习目标" in text, f"{path.stem}: learning goals not in Chinese"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_glued_figure_in_the_prose_is_glued_by_a_cell(path):
    """``{glue:text}`name``` in markdown needs a cell output glued under that name (in this notebook)."""
    notebook = load(path)
    used = set(re.findall(r"\{glue(?::\w+)?\}`([A-Za-z0-9_]+)", _markdown(path)))
    glued = {
        output.get("metadata", {}).get("scrapbook", {}).get("name")
        for cell in notebook["cells"] if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
    }
    assert not used - glued, f"{path.stem}: glued in prose but not by any cell: {sorted(used - glued)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_glued_values_are_plain_numbers_or_text(path):
    """A glued tensor or array reaches the page as "tensor(0.9189)": a format spec such as ``:.3f``
    cannot read it, so the build warns and the page shows a hole where the figure should be."""
    notebook = load(path)
    bad = [
        (output["metadata"]["scrapbook"]["name"], text)
        for cell in notebook["cells"] if cell["cell_type"] == "code"
        for output in cell.get("outputs", []) if "scrapbook" in output.get("metadata", {})
        for mime, text in output.get("data", {}).items() if mime.endswith("text/plain")
        if re.match(r"(tensor|array|np\.|numpy)", "".join(text) if isinstance(text, list) else text)
    ]
    assert not bad, f"{path.stem}: glued values that are not plain numbers: {bad[:5]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_figures_are_vector_graphics(path):
    """Figures are saved as SVG (``plotting.use_book_style()``): sharp on high-density screens and in
    the PDF. A bitmap-only figure is a chapter that forgot the book's style."""
    bitmaps = [
        index for index, cell in enumerate(load(path)["cells"]) if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {}) and "image/svg+xml" not in output.get("data", {})
    ]
    assert not bitmaps, f"{path.stem}: PNG-only figures in cells {bitmaps} (call use_book_style() in the imports cell)"
