"""Where things are in a course directory, for the grading modules."""

from __future__ import annotations

import os

from nbgrader.coursedir import CourseDirectory

# Per-submission grading reports (status and messages), next to nbgrader's own directories.
REPORTS_DIRECTORY = "grading_reports"


def find_coursedir(configurable) -> CourseDirectory:
    """The course directory of the nbgrader converter that owns ``configurable``."""
    node = configurable.parent
    while node is not None:
        if isinstance(getattr(node, "coursedir", None), CourseDirectory):
            return node.coursedir
        node = node.parent
    return CourseDirectory(config=configurable.config)


def release_notebook_path(coursedir: CourseDirectory, assignment: str, notebook: str) -> str:
    return os.path.join(coursedir.format_path(coursedir.release_directory, ".", assignment), notebook + ".ipynb")


def report_path(coursedir: CourseDirectory, assignment: str, student: str) -> str:
    return os.path.join(coursedir.root, REPORTS_DIRECTORY, assignment, student + ".json")


def private_paths(
    coursedir: CourseDirectory, exchange_root: str | None = None, *, existing_only: bool = True
) -> list[str]:
    """Paths of the course that a student's kernel must not see: sources and solutions, every
    student's files, the gradebook, reports, the exchange, git history (only those that exist,
    unless ``existing_only`` is False: a folder created during a run is private too)."""
    names = [
        coursedir.source_directory,
        coursedir.source_with_tests_directory,
        coursedir.solution_directory,
        coursedir.submitted_directory,
        coursedir.autograded_directory,
        coursedir.feedback_directory,
        "downloaded",
        REPORTS_DIRECTORY,
        ".git",
        "gradebook.db",
        "grades.csv",
    ]
    paths = [os.path.join(coursedir.root, name) for name in names]
    if coursedir.db_url.startswith("sqlite:///"):
        paths.append(coursedir.db_url.removeprefix("sqlite:///"))
    if exchange_root:
        paths.append(exchange_root)
    return sorted({os.path.abspath(p) for p in paths if not existing_only or os.path.exists(p)})
