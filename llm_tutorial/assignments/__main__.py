"""Command line: build student notebooks for a chapter, or grade one submission or a folder of them.

    python -m llm_tutorial.assignments build 3 --out handout/
    python -m llm_tutorial.assignments grade submissions/alice/ch03_assignment_attention.ipynb
    python -m llm_tutorial.assignments grade submissions/ --out grades/

A folder holds one folder per student, named after the student, with the notebook under the name
it was handed out with (``submissions/alice/ch03_assignment_attention.ipynb``); a notebook lying
directly in the folder (``submissions/alice.ipynb``) is graded against ``--source``. Errors in
what you typed are one line and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .build import build_chapter
from .exercises import read_notebook
from .grade import GradingError, Report, grade, positive_seconds
from .report import record, table, write_gradebook, write_report, write_student

REPOSITORY_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


class UsageError(Exception):
    """Something the user typed or pointed at is wrong; the message says what to do."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2 (argparse prints the usage too)
        raise UsageError(f"{message} (see {self.prog} --help)")


def seconds(text: str) -> float:
    """argparse type: a positive, finite number of seconds."""
    try:
        return positive_seconds(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}") from None


def default_notebooks_dir() -> Path:
    """./notebooks when it exists (a clone of the book), else the one beside the package."""
    return Path("notebooks") if Path("notebooks").is_dir() else REPOSITORY_NOTEBOOKS


def find_submissions(folder: Path, source: Path | None) -> list[tuple[str, Path]]:
    """(student, notebook) pairs: FOLDER/STUDENT/**/NAME.ipynb, and FOLDER/STUDENT.ipynb with --source."""
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            notebooks = sorted(p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            found += [(entry.name, p) for p in notebooks]
        elif entry.suffix == ".ipynb":
            if source is None:
                raise UsageError(f"{entry} lies directly in {folder}: grade such notebooks with --source TEACHER_NOTEBOOK, "
                                 f"or put each in a folder named after its student ({folder}/{entry.stem}/NOTEBOOK.ipynb)")
            found.append((entry.stem, entry))
    if not found:
        raise UsageError(f"no submissions in {folder}: put each student's notebook in a folder named after the student, "
                         f"e.g. {folder}/alice/ch03_assignment_attention.ipynb")
    return found


def teacher_source(notebook: Path, source: Path | None, notebooks: Path | None) -> Path:
    path = source or (notebooks or default_notebooks_dir()) / notebook.name
    if not path.is_file():
        raise UsageError(f"no teacher's notebook at {path}; pass it with --source")
    return path


def grade_folder(folder: Path, args) -> int:
    """Grade every submission in ``folder``; write the gradebook and one feedback file per student."""
    from tqdm.auto import tqdm

    submissions = find_submissions(folder, args.source)
    sources = {nb: teacher_source(nb, args.source, args.notebooks) for _, nb in submissions}
    reports: list[Report] = []
    by_student: dict[str, list[Report]] = {}
    with tqdm(submissions, unit="submission", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
        for student, notebook in bar:
            bar.set_postfix_str(student)
            report = grade(notebook, sources[notebook], timeout=args.timeout, quick=not args.full, seed=args.seed,
                           student=student)
            reports.append(report)
            by_student.setdefault(student, []).append(report)
    for student, theirs in by_student.items():
        write_student(student, theirs, args.out)
    gradebook = write_gradebook(reports, args.out / "gradebook.csv")
    print(f"graded {len(reports)} submissions of {len(by_student)} students: {gradebook}, feedback in {args.out}/")
    return warn_about(reports)


def warn_about(reports: list[Report]) -> int:
    """Print what went wrong beyond single exercises; 1 when a submission changed the grader's files."""
    tampered = False
    for report in reports:
        for problem in report.problems:
            print(f"warning: {report.student} ({report.notebook}): {problem}", file=sys.stderr)
            tampered |= "changed the grader's files" in problem
    return 1 if tampered else 0


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m llm_tutorial.assignments", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    build = commands.add_parser("build", help="write student notebooks: solutions stubbed, hidden tests removed")
    build.add_argument("chapter", help="chapter number (3), id (ch03), notebook name, or 'all'")
    build.add_argument("--notebooks", type=Path, default=None, help="folder of the teacher's notebooks (default: ./notebooks)")
    build.add_argument("--out", type=Path, default=Path("student"), help="folder to write to (default: ./student)")
    grader = commands.add_parser("grade", help="grade a submitted notebook, or a folder of submissions")
    grader.add_argument("path", type=Path, help="a student's notebook, or a folder with one folder per student")
    grader.add_argument("--source", type=Path, default=None,
                        help="the teacher's notebook (default: the notebook of the same name in --notebooks)")
    grader.add_argument("--notebooks", type=Path, default=None, help="folder of the teacher's notebooks (default: ./notebooks)")
    grader.add_argument("--timeout", type=seconds, default=120.0,
                        help="seconds one exercise may run, a positive number (default: 120)")
    grader.add_argument("--full", action="store_true",
                        help="notebooks without the book's checks: run their training loops at full length (default: quick mode)")
    grader.add_argument("--out", type=Path, default=Path("grades"), help="folder for reports and the gradebook (default: ./grades)")
    grader.add_argument("--json", type=Path, default=None, help="also write one submission's record to this JSON file")
    grader.add_argument("--seed", type=int, default=None, help="seed of the test inputs (default: a fresh one each time)")
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = parser.parse_args(argv)
        return run(args)
    except (UsageError, GradingError, FileNotFoundError, NotADirectoryError, ValueError) as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


def run(args) -> int:
    if args.command == "build":
        notebooks = args.notebooks or default_notebooks_dir()
        if not notebooks.is_dir():
            raise UsageError(f"no folder of notebooks at {notebooks}; pass it with --notebooks")
        for path in build_chapter(args.chapter, notebooks, args.out):
            print(f"wrote {path}")
        return 0
    if args.path.is_dir():
        if args.json:
            raise UsageError(f"--json is for one notebook; for a folder the records are {args.out}/STUDENT.json")
        return grade_folder(args.path, args)
    if not args.path.is_file():
        raise UsageError(f"no notebook or folder at {args.path}")
    read_notebook(args.path)  # a broken submission: one line, before any kernel starts
    report = grade(args.path, teacher_source(args.path, args.source, args.notebooks), timeout=args.timeout,
                   quick=not args.full, seed=args.seed)
    json_path, _ = write_report(report, args.out)
    if args.json:
        args.json.write_text(json.dumps(record(report), indent=2, ensure_ascii=False))
    print(table(report))  # the kernel is gone: nothing it printed can follow or precede this
    print(f"report: {json_path} and {json_path.with_suffix('.txt')}")
    return warn_about([report])


if __name__ == "__main__":
    sys.exit(main())
