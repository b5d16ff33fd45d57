"""Grades to CSV, with each submission's status: a failed autograde is never a silent 0."""

from __future__ import annotations

import csv

from nbgrader.api import Gradebook
from nbgrader.plugins import ExportPlugin

from .paths import find_coursedir
from .report import submission_status

COLUMNS = [
    "assignment",
    "duedate",
    "timestamp",
    "student_id",
    "last_name",
    "first_name",
    "email",
    "raw_score",
    "late_submission_penalty",
    "score",
    "max_score",
    "status",
    "message",
]


class StatusCsvExportPlugin(ExportPlugin):
    """nbgrader's CSV export plus ``status`` and ``message`` columns (see :mod:`grading.report`).

    Scores are left empty for submissions that are ``failed`` or ``stale``: they are not
    grades. Set as ``c.ExportApp.plugin_class``, so ``nbgrader export`` uses it too.
    """

    def export(self, gradebook: Gradebook) -> None:
        dest = self.to or "grades.csv"
        coursedir = find_coursedir(self)
        self.log.info("Exporting grades to %s", dest)
        with open(dest, "w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            for assignment in gradebook.assignments:
                if self.assignment and assignment.name not in self.assignment:
                    continue
                for student in gradebook.students:
                    if self.student and student.id not in self.student:
                        continue
                    writer.writerow(self.row(coursedir, gradebook, assignment, student))

    @staticmethod
    def row(coursedir, gradebook: Gradebook, assignment, student) -> dict:
        status = submission_status(coursedir, gradebook, assignment.name, student.id)
        row = {
            "assignment": assignment.name,
            "duedate": assignment.duedate or "",
            "student_id": student.id,
            "last_name": student.last_name or "",
            "first_name": student.first_name or "",
            "email": student.email or "",
            "max_score": assignment.max_score,
            **status,
            "timestamp": "",
            "raw_score": "",
            "late_submission_penalty": "",
            "score": "",
        }
        if status["status"] == "missing":
            row.update(raw_score=0.0, late_submission_penalty=0.0, score=0.0)
        elif status["status"] in {"graded", "flagged"}:
            submission = gradebook.find_submission(assignment.name, student.id)
            penalty = submission.late_submission_penalty or 0.0
            row.update(
                timestamp=submission.timestamp or "",
                raw_score=submission.score,
                late_submission_penalty=penalty,
                score=max(0.0, submission.score - penalty),
            )
        return row
