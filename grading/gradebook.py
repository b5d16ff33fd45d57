"""What autograding writes into the gradebook about one submission, as plain data.

``nbgrader autograde`` writes a submission's timestamp, each notebook's late penalty, each
graded cell's automatic score (and whether it needs manual grading) and each answer
cell's automatic comment. Everything else about a submission (manual scores and
comments, extra credit, flags, extensions) belongs to the graders and is never touched
here. :mod:`grading.parallel` reads these results from a worker's scratch gradebook and
writes them into the course's; :meth:`grading.workflow.Course.grade` resets them before
grading again.
"""

from __future__ import annotations

from nbgrader.api import Gradebook, MissingEntry


def automatic_results(gb: Gradebook, assignment: str, student: str) -> dict | None:
    """The automatic results of ``student``'s submission of ``assignment``; None if there is none.

    ``{"timestamp": datetime | None, "notebooks": {notebook: {"late_submission_penalty": float |
    None, "grades": {cell: {"auto_score": float | None, "needs_manual_grade": bool}},
    "comments": {cell: str | None}}}}``"""
    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        return None
    return {
        "timestamp": submission.timestamp,
        "notebooks": {
            nb.name: {
                "late_submission_penalty": nb.late_submission_penalty,
                "grades": {
                    g.name: {"auto_score": g.auto_score, "needs_manual_grade": g.needs_manual_grade} for g in nb.grades
                },
                "comments": {c.name: c.auto_comment for c in nb.comments},
            }
            for nb in submission.notebooks
        },
    }


def write_automatic_results(gb: Gradebook, assignment: str, student: str, results: dict | None) -> None:
    """Make the automatic results of the submission ``results`` (as :func:`automatic_results`
    returns them), creating the student and the submission if needed; ``None`` resets them."""
    if results is None:
        reset_automatic_results(gb, assignment, student)
        return
    gb.update_or_create_student(student)
    submission = gb.update_or_create_submission(assignment, student)
    submission.timestamp = results["timestamp"]
    for nb in submission.notebooks:
        written = results["notebooks"][nb.name]
        nb.late_submission_penalty = written["late_submission_penalty"]
        for grade in nb.grades:
            grade.auto_score = written["grades"][grade.name]["auto_score"]
            grade.needs_manual_grade = written["grades"][grade.name]["needs_manual_grade"]
        for comment in nb.comments:
            comment.auto_comment = written["comments"][comment.name]
    gb.db.commit()


def reset_automatic_results(gb: Gradebook, assignment: str, student: str) -> None:
    """Give the submission (if there is one) the automatic results of one never graded: no
    automatic score (so every graded cell needs manual grading), comment or late penalty."""
    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        return
    for nb in submission.notebooks:
        nb.late_submission_penalty = None
        for grade in nb.grades:
            grade.auto_score = None
            grade.needs_manual_grade = True
        for comment in nb.comments:
            comment.auto_comment = None
    gb.db.commit()
