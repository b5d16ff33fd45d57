"""The instructor's commands end to end: collect, preflight, validate, stock nbgrader, no sandbox."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest
from catalog import ASSIGNMENT, CASES, SOURCE, Context, write_catalog
from course_tools import grading, make_course, nbgrader, read_csv, released_course, requires_sandbox
from nbgrader.api import Gradebook

pytestmark = pytest.mark.slow
SMALL = [case for case in CASES if case.student in {"perfect", "reads_solutions"}]


def submit(course: Path, cases=SMALL) -> None:
    ctx = Context(
        release=nbformat.read(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4),
        solution=nbformat.read(SOURCE, 4),
        course=course,
        port=9,
    )
    write_catalog(ctx, course / "submitted", cases)


def code_score(course: Path, student: str) -> float:
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return gb.find_submission(ASSIGNMENT, student).code_score


@pytest.fixture(scope="module")
def small_course():
    requires_sandbox()
    course = released_course()
    yield course
    shutil.rmtree(course, ignore_errors=True)


def test_stock_nbgrader_autograde_is_sandboxed(small_course):
    submit(small_course)
    result = nbgrader(small_course, "autograde", ASSIGNMENT, "--force")
    assert result.returncode == 0, result.stdout + result.stderr
    assert code_score(small_course, "perfect") == 6
    assert code_score(small_course, "reads_solutions") == 0  # the solutions were out of its reach
    graded = nbformat.read(small_course / "autograded" / "reads_solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4)
    printed = "".join(o.get("text", "") for c in graded.cells if c.cell_type == "code" for o in c.outputs)
    assert "solutions not readable: FileNotFoundError" in printed
    assert "other student not readable: FileNotFoundError" in printed


def test_collect_a_directory_and_an_lms_zip(small_course, tmp_path):
    release = small_course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    batch = tmp_path / "batch"
    (batch / "alice").mkdir(parents=True)
    shutil.copy(release, batch / "alice" / f"{ASSIGNMENT}.ipynb")
    (batch / "alice" / "timestamp.txt").write_text("2030-01-02 10:00:00 UTC")
    shutil.copy(release, batch / f"bob_{ASSIGNMENT}.ipynb")
    result = grading(small_course, "collect", ASSIGNMENT, str(batch))
    assert result.returncode == 0, result.stderr
    assert "collected 2 submission(s): alice, bob" in result.stdout
    submitted = small_course / "submitted"
    assert (submitted / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_bytes() == release.read_bytes()
    assert (submitted / "alice" / ASSIGNMENT / "timestamp.txt").read_text().startswith("2030-01-02 10:00:00")
    assert (submitted / "bob" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").exists()
    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(release, f"download/carol/{ASSIGNMENT}.ipynb")
        z.writestr("download/carol/notes.txt", "not a notebook")
    result = grading(small_course, "collect", ASSIGNMENT, str(archive))
    assert result.returncode == 0, result.stderr
    assert "collected 1 submission(s): carol" in result.stdout
    assert (submitted / "carol" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").exists()


def test_grading_refuses_to_run_without_the_sandbox():
    requires_sandbox()
    course = released_course('c.SandboxedExecute.bwrap = "/nonexistent/bwrap"')
    try:
        submit(course)
        result = grading(course, "autograde", ASSIGNMENT)
        assert result.returncode == 2
        assert "refusing to run student code without the sandbox" in result.stderr
        assert "GRADING_ALLOW_UNSANDBOXED=1" in result.stderr
        stock = nbgrader(course, "autograde", ASSIGNMENT)
        assert stock.returncode != 0
        assert "refusing to run student code without the sandbox" in stock.stdout + stock.stderr
        assert not list((course / "autograded").rglob("*.ipynb"))
        exported = grading(course, "export", "--to", str(course / "grades.csv"))
        assert {row["status"] for row in read_csv(course / "grades.csv").values()} == {"failed"}, exported.stderr
        # allowed explicitly, it grades, and nothing stops a submission from reading the solutions
        allowed = grading(
            course, "autograde", ASSIGNMENT, "--skip-preflight", env={**os.environ, "GRADING_ALLOW_UNSANDBOXED": "1"}
        )
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
        assert "sandbox: NONE (allowed explicitly)" in allowed.stdout
        assert code_score(course, "reads_solutions") == 6
    finally:
        shutil.rmtree(course, ignore_errors=True)


CLIP = "return np.clip(np.clip(x, x0 - eps, x0 + eps), 0.0, 1.0)"


@pytest.mark.parametrize(
    "edit, diagnosis",
    [
        (
            lambda course: "return np.clip(x, x0 - eps, x0 + eps)",
            "fails 1 test cell(s) too: the code or the course's environment is broken",
        ),
        (
            lambda course: (
                f"open({str(course / 'solutions' / ASSIGNMENT / f'{ASSIGNMENT}.ipynb')!r}).close()  # private\n"
                f"    {CLIP}"
            ),
            "passes: the grading environment (sandbox, limits, missing packages) breaks it",
        ),
    ],
    ids=["broken code", "broken environment"],
)
def test_preflight_refuses_solutions_that_would_not_get_full_marks(edit, diagnosis):
    requires_sandbox()
    course = make_course()
    try:
        source = course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        nb = nbformat.read(source, 4)
        assert sum(CLIP in cell.source for cell in nb.cells) == 1
        for cell in nb.cells:
            cell.source = cell.source.replace(CLIP, edit(course))
        nbformat.write(nb, source)
        assert grading(course, "release", ASSIGNMENT).returncode == 0
        submit(course)
        result = grading(course, "autograde", ASSIGNMENT)
        assert result.returncode == 1
        assert "preflight FAILED" in result.stderr
        assert "grading_demo/test_project: the solution scores 0.0 of 3.0" in result.stdout
        assert f"{ASSIGNMENT}: outside the sandbox the solution {diagnosis}" in result.stdout
        assert not (course / "autograded").exists()
    finally:
        shutil.rmtree(course, ignore_errors=True)


def test_validate_exits_1_when_a_test_fails(small_course):
    solution = small_course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    blank = small_course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    passed = grading(small_course, "validate", str(solution))
    assert passed.returncode == 0 and "passed" in passed.stdout, passed.stdout + passed.stderr
    failed = grading(small_course, "validate", str(blank))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAILED 3 of 3 test cells; 1 answer(s) not written" in failed.stdout
    assert "  NotImplementedError" in failed.stdout
