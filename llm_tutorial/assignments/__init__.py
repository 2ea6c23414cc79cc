"""Coursework: exercises with hidden solutions, student notebooks, and an autograder.

    python -m llm_tutorial.assignments build CHAPTER [--out DIR]
    python -m llm_tutorial.assignments grade NOTEBOOK_OR_FOLDER [--source TEACHER_NOTEBOOK] [--timeout S] [--out DIR]

The notebooks use nbgrader's markers and metadata, so nbgrader can grade them too; this module
needs only Jupyter's own ``nbclient``. The grader runs a submission in a sandboxed kernel and
judges what it computed in its own process (see :mod:`.grade`). See the book's page for teachers.
"""

from .build import build_chapter, chapter_notebooks, student_notebook
from .exercises import Exercise, find_exercises, strip_hidden_tests, strip_solutions
from .grade import GradingError, Report, Score, grade, positive_seconds
from .report import feedback, table, write_gradebook, write_report

__all__ = [
    "Exercise",
    "GradingError",
    "Report",
    "Score",
    "build_chapter",
    "chapter_notebooks",
    "feedback",
    "find_exercises",
    "grade",
    "positive_seconds",
    "strip_hidden_tests",
    "strip_solutions",
    "student_notebook",
    "table",
    "write_gradebook",
    "write_report",
]
