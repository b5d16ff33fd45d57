"""The status of each graded submission, so that nothing ungraded is read as a 0.

Statuses: ``graded``; ``flagged`` (graded, but the instructor should look: a cell timed
out or ran out of memory, a test cell's checks did not report, locked cells were
edited, code that tampers with the tests); ``failed`` (not graded: the kernel died or
was killed at a limit, the notebook is unreadable, the sandbox is missing); ``stale``
(the submission changed after grading); ``missing`` (nothing submitted).

:func:`grade_submission` (used by ``python -m grading autograde``) writes a report per
submission under ``grading_reports/``; :func:`submission_status` (used by the export)
reads it back, or, after a plain ``nbgrader autograde``, works the status out from the
autograded notebooks alone.
"""

from __future__ import annotations

import datetime
import json
import os
import re

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.coursedir import CourseDirectory

from .audit import VERDICT_KEY
from .paths import report_path

PROBLEM_ERRORS = {
    "CellTimeoutError": "timed out",
    "MemoryError": "ran out of memory",
    "GradingError": "did not report all of its checks",
}


def notebook_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Problems visible in an autograded notebook's outputs (timeouts, memory, missing checks)."""
    problems = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "error" and output.ename in PROBLEM_ERRORS:
                grade_id = (cell.metadata.get("nbgrader") or {}).get("grade_id")
                where = f"cell {index}" + (f" ('{grade_id}')" if grade_id else "")
                problems.append(f"{where} {PROBLEM_ERRORS[output.ename]}")
    return list(dict.fromkeys(problems))


def notebook_verdict(nb: nbformat.NotebookNode) -> dict[str, list[str]]:
    """The review flags and notes the grading steps kept in an autograded notebook's metadata
    (see :mod:`grading.audit`); strings only, whatever the file holds."""
    verdict = nb.metadata.get(VERDICT_KEY)
    verdict = verdict if isinstance(verdict, dict) else {}
    return {
        kind: [str(item) for item in verdict.get(kind, []) if isinstance(item, str)]
        if isinstance(verdict.get(kind), list)
        else []
        for kind in ("review", "notes")
    }


def _read_timestamp(directory: str) -> str | None:
    try:
        with open(os.path.join(directory, "timestamp.txt")) as f:
            return f.read().strip()
    except OSError:
        return None


def autograded_notebooks(
    coursedir: CourseDirectory, assignment: str, student: str, notebooks: list[str]
) -> dict[str, str | None]:
    """Path of each of ``notebooks``' autograded version, None where it is missing."""
    directory = coursedir.format_path(coursedir.autograded_directory, student, assignment)
    paths = {nb: os.path.join(directory, nb + ".ipynb") for nb in notebooks}
    return {nb: (p if os.path.exists(p) else None) for nb, p in paths.items()}


def _mtimes(paths: dict[str, str | None]) -> dict[str, float | None]:
    return {nb: (os.path.getmtime(p) if p else None) for nb, p in paths.items()}


def grade_summary(gb: Gradebook, assignment: str, student: str) -> dict:
    """Scores of the submission from the gradebook."""
    submission = gb.find_submission(assignment, student)
    return {
        "score": submission.score,
        "max_score": submission.max_score,
        "code_score": submission.code_score,
        "max_code_score": submission.max_code_score,
        "needs_manual_grade": submission.needs_manual_grade,
        "seconds_late": submission.total_seconds_late,
        "late_penalty": submission.late_submission_penalty or 0.0,
        "cells": {g.name: g.score for nb in submission.notebooks for g in nb.grades},
    }


def write_report(coursedir: CourseDirectory, report: dict) -> str:
    path = report_path(coursedir, report["assignment"], report["student"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    return path


def read_report(coursedir: CourseDirectory, assignment: str, student: str) -> dict | None:
    try:
        with open(report_path(coursedir, assignment, student)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def grade_submission(
    coursedir: CourseDirectory,
    assignment: str,
    student: str,
    *,
    succeeded: bool,
    failure: str | None = None,
    notes: list[str] = (),
    problems: list[str] = (),
    review: list[str] = (),
    seconds: float | None = None,
) -> dict:
    """Build, store and return the report of one autograde run of one submission.

    ``failure`` explains a failed run; ``notes`` are informational, ``problems`` and
    ``review`` (code-audit flags) make a graded submission ``flagged``; ``seconds`` is
    how long grading it took.
    """
    report = {
        "student": student,
        "assignment": assignment,
        "seconds": seconds,
        "graded_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "notes": list(notes),
        "problems": list(problems),
        "review": list(review),
        "autograded": {},
        "score": None,
        "max_score": None,
    }
    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        try:
            notebooks = [nb.name for nb in gb.find_assignment(assignment).notebooks]
            summary = grade_summary(gb, assignment, student) if succeeded else {}
            if succeeded:  # points of the answers that wait for a grader
                submission = gb.find_submission(assignment, student)
                grades = [g for nb in submission.notebooks for g in nb.grades]
                summary["manual_points"] = sum(g.max_score for g in grades if g.needs_manual_grade)
        except MissingEntry:
            notebooks, summary = [], {}
    if succeeded:
        paths = autograded_notebooks(coursedir, assignment, student, notebooks)
        for path in filter(None, paths.values()):
            graded = nbformat.read(path, as_version=4)
            report["problems"] += notebook_problems(graded)
            verdict = notebook_verdict(graded)
            report["review"] = list(dict.fromkeys(report["review"] + verdict["review"]))
            report["notes"] = list(dict.fromkeys(report["notes"] + verdict["notes"]))
        report["autograded"] = _mtimes(paths)
        report.update(summary)
        if summary.get("needs_manual_grade"):
            report["notes"].append("needs manual grading")
        if summary.get("seconds_late", 0) > 0:
            report["notes"].append(f"late by {datetime.timedelta(seconds=round(summary['seconds_late']))}")
    report["status"] = "failed" if not succeeded else "flagged" if report["problems"] or report["review"] else "graded"
    report["failure"] = failure if not succeeded else None
    write_report(coursedir, report)
    return report


def submission_status(coursedir: CourseDirectory, gb: Gradebook, assignment: str, student: str) -> dict:
    """Status and message of one submission for the export (see the module's docstring)."""
    report = read_report(coursedir, assignment, student)
    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        if report and report["status"] == "failed":
            return {"status": "failed", "message": report["failure"]}
        return {"status": "missing", "message": "nothing submitted"}
    notebooks = [nb.name for nb in submission.notebooks]
    paths = autograded_notebooks(coursedir, assignment, student, notebooks)
    if not all(paths.values()):
        message = (
            report["failure"]
            if report and report["status"] == "failed"
            else "not autograded (autograde failed or has not run; see its log)"
        )
        return {"status": "failed", "message": message}
    submitted = coursedir.format_path(coursedir.submitted_directory, student, assignment)
    autograded = coursedir.format_path(coursedir.autograded_directory, student, assignment)
    if os.path.isdir(submitted) and _read_timestamp(submitted) != _read_timestamp(autograded):
        return {"status": "stale", "message": "the submission changed after it was graded: autograde it again"}
    if report and report.get("autograded") == _mtimes(paths):
        return {
            "status": report["status"],
            "message": "; ".join(report["problems"] + report["review"] + report["notes"]),
        }
    # graded by a plain `nbgrader autograde` (without its report): what the notebooks and the gradebook show
    graded = [nbformat.read(path, as_version=4) for path in paths.values()]
    messages = [p for nb in graded for p in notebook_problems(nb)]
    review = [r for nb in graded for r in notebook_verdict(nb)["review"]]
    status = "flagged" if messages or review else "graded"
    messages += review + [n for nb in graded for n in notebook_verdict(nb)["notes"]]
    if submission.needs_manual_grade:
        messages.append("needs manual grading")
    if submission.total_seconds_late > 0:
        messages.append(f"late by {datetime.timedelta(seconds=round(submission.total_seconds_late))}")
    return {"status": status, "message": "; ".join(messages)}


def _stock_coursedir() -> CourseDirectory | None:
    """The course directory of the running ``nbgrader`` command, or None when grading runs in
    another program (``python -m grading`` and its workers write their own reports)."""
    from traitlets.config import Application

    app = Application.instance() if Application.initialized() else None
    coursedir = getattr(getattr(app, "subapp", None) or app, "coursedir", None)
    return coursedir if isinstance(coursedir, CourseDirectory) else None


def record_stock_failure(assignment: str, student: str, failure: str) -> None:
    """Under stock ``nbgrader autograde``, store a ``failed`` report saying why the submission was
    not graded (nbgrader itself only logs it)."""
    coursedir = _stock_coursedir()
    if coursedir is not None:
        with Gradebook(coursedir.db_url, coursedir.course_id) as gb:  # so that the export lists the student
            gb.update_or_create_student(student)
        grade_submission(coursedir, assignment, student, succeeded=False, failure=failure)


def report_stock_run(assignment: str, student: str, notebooks: list[str]) -> None:
    """``Autograde.post_convert_hook``: the report of a submission graded by stock ``nbgrader
    autograde`` (``python -m grading`` writes its own, which adds timings and repairs).

    nbgrader passes the command line's patterns as ``assignment`` and ``student``; the
    submission is the one whose ``notebooks`` (paths in the submitted directory) were graded."""
    coursedir = _stock_coursedir()
    if coursedir is None or not notebooks:
        return
    pattern = coursedir.format_path(
        coursedir.submitted_directory, "(?P<student>[^/]+)", "(?P<assignment>[^/]+)", escape=True
    )
    found = re.fullmatch(pattern, os.path.dirname(os.path.abspath(notebooks[0])))
    if found:
        grade_submission(coursedir, found["assignment"], found["student"], succeeded=True)
