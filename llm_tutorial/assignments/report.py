"""What the grader writes: a table for the terminal, a feedback file per student, a JSON record,
and a CSV gradebook. Everything here is written by the grader after the student's kernel is gone,
to files the grader opens itself."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict
from pathlib import Path

from .grade import Report

RULES = ("Each exercise scores its points when every check passes, and 0 otherwise. Each exercise is "
         "checked with the reference solutions of the other exercises in place of yours, so a mistake "
         "costs only the points of the exercise where it is made.")


def table(report: Report) -> str:
    """One line per exercise (the first line of its message) and the total."""
    width = max([len("exercise"), *(len(s.grade_id) for s in report.scores)])
    lines = [f"{'exercise':<{width}}  {'score':<11}  result"]
    for s in report.scores:
        first = s.message.splitlines()[0] if s.message else ""
        lines.append(f"{s.grade_id:<{width}}  {s.points:>5g} / {s.max_points:<3g}  {first if len(first) <= 200 else first[:200] + '…'}")
    total = report.max_points
    percent = f"({100 * report.points / total:.0f}%)" if total else ""
    lines.append(f"{'total':<{width}}  {report.points:>5g} / {total:<3g}  {percent}")
    return "\n".join(lines)


def feedback(report: Report) -> str:
    """The file a student reads: the table, every message in full, and the rules."""
    parts = [f"# {report.notebook}: {report.student}", "", table(report), ""]
    for s in report.scores:
        if s.message != "passed":
            parts += [f"## {s.grade_id} ({s.points:g} / {s.max_points:g})", "", s.message, ""]
    if report.problems:
        parts += ["## Problems", "", *(f"- {p}" for p in report.problems), ""]
    if not report.isolated:
        parts += ["Note: this notebook has no grader checks; its tests ran in your own kernel.", ""]
    parts += [RULES, f"(seed {report.seed}; notebook sha256 {report.source_sha256[:12]})", ""]
    return "\n".join(parts)


def record(report: Report) -> dict:
    """The report as JSON-able data."""
    data = asdict(report)
    data.update(points=report.points, max_points=report.max_points)
    return data


def write_atomically(path: Path, text: str) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8", newline="")  # as given: the CSV writer chose its line ends
    os.replace(partial, path)


def write_report(report: Report, folder: Path, name: str | None = None) -> tuple[Path, Path]:
    """``folder/NAME.json`` (the record) and ``folder/NAME.txt`` (the feedback)."""
    name = name or report.student
    json_path, text_path = folder / f"{name}.json", folder / f"{name}.txt"
    write_atomically(json_path, json.dumps(record(report), indent=2, ensure_ascii=False))
    write_atomically(text_path, feedback(report))
    return json_path, text_path


def write_student(student: str, reports: list[Report], folder: Path) -> Path:
    """``folder/STUDENT.txt``, the feedback on each of the student's notebooks, and ``STUDENT.json``."""
    write_atomically(folder / f"{student}.json", json.dumps([record(r) for r in reports], indent=2, ensure_ascii=False))
    path = folder / f"{student}.txt"
    write_atomically(path, "\n".join(feedback(r) for r in reports))
    return path


def write_gradebook(reports: list[Report], path: Path) -> Path:
    """One row per submission: student, notebook, each exercise's points, total, and problems."""
    exercises = list(dict.fromkeys(s.grade_id for r in reports for s in r.scores))
    rows = []
    for r in reports:
        points = {s.grade_id: f"{s.points:g}" for s in r.scores}
        rows.append({"student": r.student, "notebook": r.notebook, **{e: points.get(e, "") for e in exercises},
                     "points": f"{r.points:g}", "max_points": f"{r.max_points:g}",
                     "percent": f"{100 * r.points / r.max_points:.1f}" if r.max_points else "",
                     "problems": " | ".join(r.problems)})
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, ["student", "notebook", *exercises, "points", "max_points", "percent", "problems"])
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(path, text.getvalue())
    return path
