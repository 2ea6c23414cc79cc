"""Coursework: exercises with hidden solutions, student notebooks, and an autograder.

    python -m llm_tutorial.assignments build CHAPTER [--out DIR]
    python -m llm_tutorial.assignments grade NOTEBOOK [--source TEACHER_NOTEBOOK] [--timeout S]

The notebooks use nbgrader's markers and metadata, so nbgrader can grade them too; this module
needs only Jupyter's own ``nbclient``. See the book's page for teachers.
"""

from .build import build_chapter, chapter_notebooks, student_notebook
from .exercises import Exercise, find_exercises, strip_hidden_tests, strip_solutions
from .grade import Score, grade, report

__all__ = [
    "Exercise",
    "Score",
    "build_chapter",
    "chapter_notebooks",
    "find_exercises",
    "grade",
    "report",
    "strip_hidden_tests",
    "strip_solutions",
    "student_notebook",
]
