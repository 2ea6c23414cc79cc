"""Student notebooks: solutions replaced by stubs, hidden tests removed, outputs cleared."""

from __future__ import annotations

import copy
from pathlib import Path

from .exercises import find_exercises, is_solution, is_test, read_notebook, strip_hidden_tests, strip_solutions

RAISES = "raises-exception"  # the tag nbval and Jupyter Book both honour


def student_notebook(notebook: dict) -> dict:
    """A copy of ``notebook`` to hand out.

    Solution regions become ``raise NotImplementedError(...)`` stubs and hidden tests disappear.
    Test cells are tagged ``raises-exception`` (they call the stubs), and so are solution cells
    whose stub runs at the top level, so that the handed-out notebook still executes in CI.
    """
    student = copy.deepcopy(notebook)
    for cell in student["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if is_solution(cell):
            source = strip_solutions(source)
            if any(line.startswith("raise NotImplementedError") for line in source.splitlines()):
                _tag(cell, RAISES)
        if is_test(cell):
            source = strip_hidden_tests(source)
            _tag(cell, RAISES)
        if is_solution(cell) or is_test(cell):
            tags = cell["metadata"].get("tags", [])
            cell["metadata"]["tags"] = [t for t in tags if t not in ("hide-input", "remove-input")]
        cell["source"] = source
        cell["outputs"], cell["execution_count"] = [], None
    return student


def _tag(cell: dict, tag: str) -> None:
    tags = cell["metadata"].setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


def chapter_notebooks(chapter: str, notebooks_dir: Path) -> list[Path]:
    """The notebooks of a chapter given as ``3``, ``03``, ``ch03`` or a notebook's file name;
    ``all`` gives every chapter's notebooks."""
    if chapter == "all":
        return sorted(notebooks_dir.glob("ch*.ipynb"))
    wanted = Path(chapter).stem
    if wanted.isdigit():
        wanted = f"ch{int(wanted):02d}"
    found = sorted(p for p in notebooks_dir.glob("*.ipynb") if p.stem == wanted or p.stem.startswith(f"{wanted}_"))
    if not found:
        available = sorted({p.stem.split("_")[0] for p in notebooks_dir.glob("ch*.ipynb")})
        raise FileNotFoundError(f"no notebook for chapter {chapter!r} in {notebooks_dir}; chapters: {', '.join(available)}")
    return found


def build_chapter(chapter: str, notebooks_dir: Path, out_dir: Path) -> list[Path]:
    """Write the student version of every notebook of ``chapter`` that has graded exercises."""
    written = []
    for path in chapter_notebooks(chapter, notebooks_dir):
        notebook = read_notebook(path)
        if not find_exercises(notebook):
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / path.name
        import nbformat  # here, not at the top: the grader's cell in a student's kernel imports this package

        nbformat.write(student_notebook(notebook), target)
        written.append(target)
    if not written:
        raise ValueError(f"chapter {chapter!r} has no graded exercises")
    return written
