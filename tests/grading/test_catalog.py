"""The catalog of fake submissions, graded in one `python -m grading autograde` run.

Each case's status, autograded score and message come from its report and the
gradebook; the run's exit status says some submissions could not be graded; hostile
submissions change nothing outside their own grade; feedback and export follow.
"""

from __future__ import annotations

import re
import subprocess

import nbformat
import pytest
from catalog import (
    ASSIGNMENT,
    CASES,
    FAIL_CLOSED_CASES,
    MAX_CODE_SCORE,
    MAX_SCORE,
    SECRET_MARKERS,
    SOURCE,
    matches,
    messages,
)
from course_tools import digest, graded_course, grading, kernel_output, nbgrader, read_csv  # noqa: F401 (a fixture)
from nbconvert import HTMLExporter
from nbgrader.api import Gradebook

from grading.feedback import leaked_lines, strip_hidden

pytestmark = pytest.mark.slow


def gradebook(course):
    return Gradebook(f"sqlite:///{course / 'gradebook.db'}")


@pytest.mark.parametrize("case", CASES, ids=[c.student for c in CASES])
def test_case_is_graded_as_expected(graded_course, case):
    report = graded_course.reports[case.student]
    assert report["status"] == case.status, messages(report)
    assert matches(case.message, report), f"no message matches {case.message!r}: {messages(report)}"
    if case.code_score is None:
        assert report["score"] is None
        assert report["failure"]
    else:
        with gradebook(graded_course.course) as gb:
            submission = gb.find_submission(ASSIGNMENT, case.student)
            assert submission.code_score == case.code_score, messages(report)
            assert submission.max_code_score == MAX_CODE_SCORE
            assert submission.max_score == MAX_SCORE  # tampered points never count


def test_run_reports_failures_in_its_exit_status(graded_course):
    result = graded_course.result
    failed = sum(case.status == "failed" for case in CASES)
    assert result.returncode == 1, result.stderr
    assert "preflight: grading_demo: solution 6.0/6.0, blank 0/6.0, tampered 6.0/6.0" in result.stdout
    assert f"{failed} FAILED (not graded)" in result.stdout
    for case in CASES:
        assert re.search(rf"^{case.student}\s+{case.status}\s", result.stdout, re.M), case.student


def test_nothing_outside_the_allow_list_reached_a_kernel(graded_course):
    """No kernel printed a host secret (an ssh key outside the course, the grades export, a Unix
    socket's answer), wrote outside its own copy, or filled memory past its bounds."""
    course = graded_course.course
    for notebook in (course / "autograded").rglob("*.ipynb"):
        text = kernel_output(notebook)
        assert not [marker for marker in SECRET_MARKERS if marker in text], notebook
    assert graded_course.socket_hits == []
    escaped = kernel_output(course / "autograded" / "escapes_to_host" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    assert "READ:" not in escaped and "WRITTEN" not in escaped, escaped
    assert escaped.count("refused:") == 11 and escaped.count("not written:") == 3, escaped
    assert not (course / "escape.txt").exists()
    filled = kernel_output(course / "autograded" / "fills_memory" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    assert "FILLED" not in filled and filled.count("stopped: 28") == 3, filled  # ENOSPC in each


def test_refused_submissions_are_never_copied_or_run(graded_course):
    refused = [case.student for case in FAIL_CLOSED_CASES if case.files and case.status == "failed"]
    for student in refused:
        assert not (graded_course.course / "autograded" / student).exists(), student
        assert "refused, not graded" in graded_course.reports[student]["failure"], student


def test_catalog_runs_in_a_few_minutes(graded_course):
    assert graded_course.seconds < 300


def test_other_students_are_never_affected(graded_course):
    course = graded_course.course
    with gradebook(course) as gb:
        perfect = gb.find_submission(ASSIGNMENT, "perfect")
        assert perfect.code_score == MAX_CODE_SCORE
        for submission in gb.assignment_submissions(ASSIGNMENT):
            for notebook in submission.notebooks:
                assert all(grade.manual_score is None for grade in notebook.grades), submission.student.id
    assert not list(course.rglob("pwned.txt"))
    assert (course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").stat().st_size > 0


def test_submissions_are_only_changed_by_the_json_repair(graded_course):
    after = digest(graded_course.course / "submitted")
    changed = {path.split("/")[0] for path in after if after[path] != graded_course.submitted_before.get(path)}
    assert changed == {"repaired_json"}
    backup = graded_course.course / "grading_reports" / ASSIGNMENT / "repaired_json" / f"{ASSIGNMENT}.ipynb.original"
    assert backup.read_text().rstrip().endswith("<<<<<<< HEAD")


def test_no_network_reached_the_grader(graded_course):
    assert graded_course.server_hits == []


def test_no_kernel_process_survives(graded_course):
    """Kernels (and the fork bomb's children, which share their command line) are all gone: no
    kernel process is left outside a live test run (kernels of tests running at the same time in
    another pytest worker have that worker among their ancestors; a survivor of the catalog's
    finished grading run has lost its grading command and hangs from init)."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    processes = {}
    for line in table.splitlines():
        pid, ppid, args = (line.split(None, 2) + [""])[:3]
        processes[int(pid)] = (int(ppid), args)

    def in_a_test_run(pid: int) -> bool:
        seen = set()
        while pid in processes and pid not in seen:
            seen.add(pid)
            pid, args = processes[pid]
            if pid in processes and "pytest" in processes[pid][1]:
                return True
        return False

    survivors = [args for pid, (_, args) in processes.items() if "grading-kernel-" in args and not in_a_test_run(pid)]
    assert survivors == []


def test_huge_output_is_truncated(graded_course):
    notebook = graded_course.course / "autograded" / "huge_output" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert notebook.stat().st_size < 300_000


def hidden_lines() -> list[str]:
    return [line for cell in nbformat.read(SOURCE, 4).cells for line in strip_hidden(cell.source)[1]]


def test_feedback_never_shows_hidden_tests(graded_course):
    course = graded_course.course
    students = ["perfect", "wrong", "infinite_loop"]
    result = grading(course, "feedback", ASSIGNMENT, *[arg for s in students for arg in ("--student", s)])
    assert result.returncode == 0, result.stderr
    for student in students:
        html = (course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        assert leaked_lines(html, hidden_lines()) == []
        assert "hidden tests are not shown" in html
    wrong = (course / "feedback" / "wrong" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "a hidden test failed (details of hidden tests are not shown)" in wrong
    # the leak check works: stock rendering of the autograded notebook shows the hidden tests
    stock, _ = HTMLExporter().from_filename(str(course / "autograded" / "wrong" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
    assert leaked_lines(stock, hidden_lines())


def test_export_never_shows_an_ungraded_submission_as_zero(graded_course, tmp_path):
    course = graded_course.course
    result = grading(course, "export", "--to", str(tmp_path / "grades.csv"))
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / "grades.csv")
    assert set(rows) == {case.student for case in CASES}
    for case in CASES:
        row = rows[case.student]
        assert row["status"] == case.status, case.student
        if case.status == "failed":
            assert row["score"] == "" and row["raw_score"] == "" and row["message"], case.student
        else:
            assert float(row["max_score"]) == 8.0 and row["score"] != "", case.student
    assert rows["perfect"]["score"] == "6.0" and rows["perfect"]["message"] == "needs manual grading"
    assert "late by 1 day, 0:00:00" in rows["late"]["message"]
    assert "timed out" in rows["infinite_loop"]["message"]
    assert "unreadable notebook" in rows["malformed_json"]["message"]
    # stock `nbgrader export` uses the same plugin (configured in nbgrader_config.py)
    stock = nbgrader(course, "export", "--to", str(tmp_path / "stock.csv"))
    assert stock.returncode == 0, stock.stderr
    assert read_csv(tmp_path / "stock.csv") == rows
