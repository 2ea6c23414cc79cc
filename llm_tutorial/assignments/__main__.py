"""Command line: build student notebooks for a chapter, or grade a submission."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from .build import build_chapter
from .grade import grade, report

REPOSITORY_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def default_notebooks_dir() -> Path:
    """./notebooks when it exists (a clone of the book), else the one beside the package."""
    return Path("notebooks") if Path("notebooks").is_dir() else REPOSITORY_NOTEBOOKS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_tutorial.assignments", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write student notebooks: solutions stubbed, hidden tests removed")
    build.add_argument("chapter", help="chapter number (3), id (ch03), notebook name, or 'all'")
    build.add_argument("--notebooks", type=Path, default=None, help="folder of the teacher's notebooks (default: ./notebooks)")
    build.add_argument("--out", type=Path, default=Path("student"), help="folder to write to (default: ./student)")
    grader = commands.add_parser("grade", help="execute a submission with the hidden tests and score each exercise")
    grader.add_argument("notebook", type=Path, help="the student's submitted notebook")
    grader.add_argument("--source", type=Path, default=None,
                        help="the teacher's notebook (default: the notebook of the same name in ./notebooks)")
    grader.add_argument("--timeout", type=float, default=120.0, help="seconds one cell may run (default: 120)")
    grader.add_argument("--full", action="store_true", help="run training loops at full length (default: quick mode)")
    grader.add_argument("--json", type=Path, default=None, help="also write the scores to this JSON file")
    args = parser.parse_args(argv)

    if args.command == "build":
        for path in build_chapter(args.chapter, args.notebooks or default_notebooks_dir(), args.out):
            print(f"wrote {path}")
        return 0
    source = args.source or default_notebooks_dir() / args.notebook.name
    if not source.is_file():
        parser.error(f"no teacher's notebook at {source}; pass it with --source")
    scores = grade(args.notebook, source, timeout=args.timeout, quick=not args.full)
    print(report(scores))
    if args.json:
        args.json.write_text(json.dumps([asdict(s) for s in scores], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
