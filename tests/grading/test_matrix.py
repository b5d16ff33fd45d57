"""The fail-closed cases graded every other way an instructor might grade them.

`test_catalog.py` grades the whole catalog with the course's command, in parallel, as root,
in a course under /var/tmp. Here a subset that covers every class of the fail-closed cases
(host secrets, module files, a rebound or forwarding checker, links, FIFOs, a linked folder,
malformed metadata, a crashing kernel) plus plain right and wrong answers is graded:

- with stock ``nbgrader autograde`` (one by one), in a course under ``/tmp`` (the kernel's
  private ``/tmp`` must not hide it), as root;
- with the course's command one by one, then with stock nbgrader, as an ordinary user, in
  a course in that user's home directory (mode 0700, the user's ssh key beside it);
- with the course's command in parallel, as an ordinary user, in a course under ``/tmp``.

Every run must give each case the catalog's status and score, write a report for each, and
let no kernel reach a host secret.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import nbformat
import pytest
from catalog import ASSIGNMENT, CASES, SECRET_MARKERS, SOURCE, Context, write_catalog
from course_tools import (
    NBGRADER,
    ORDINARY_USER,
    ROOT,
    host_secrets,
    kernel_output,
    ordinary_user_python,
    read_csv,
    released_course,
    requires_sandbox,
)

pytestmark = pytest.mark.slow
SUBSET = (
    "perfect",
    "wrong",
    "kernel_crash",
    "escapes_to_host",
    "shadows_numpy",
    "writes_module",
    "rebinds_checker_loop",
    "forwards_to_the_checker",
    "link_to_solutions",
    "fifo",
    "student_folder_link",
    "metadata_not_a_mapping",
)
SELECTED = [case for case in CASES if case.student in SUBSET]


def prepare(course: Path, home: Path | None = None):
    """Write the subset into ``course``; a context manager that serves the host's secrets."""
    secrets = host_secrets(course, home)
    served = secrets.__enter__()
    ctx = Context(
        release=nbformat.read(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4),
        solution=nbformat.read(SOURCE, 4),
        course=course,
        port=9,
        secret=served.secret,
        socket_path=served.socket_path,
    )
    write_catalog(ctx, course / "submitted", SELECTED)
    return secrets, served


def run(command: list[str], course: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=course, env=env, capture_output=True, text=True, timeout=900)
    print(result.stdout[-3000:], result.stderr[-3000:])
    return result


def check_run(course: Path, hits: list[str], exported: dict[str, dict]) -> None:
    """Each case's status and score as the catalog says, a report for each, no secret reached."""
    for case in SELECTED:
        row = exported[case.student]
        report = json.loads((course / "grading_reports" / ASSIGNMENT / f"{case.student}.json").read_text())
        assert row["status"] == case.status == report["status"], (case.student, row, report)
        if case.code_score is None:
            assert row["score"] == "" and row["message"], case.student
        else:
            assert float(row["raw_score"]) == case.code_score, (case.student, row)
    for notebook in (course / "autograded").rglob("*.ipynb"):
        text = kernel_output(notebook)
        assert not [marker for marker in SECRET_MARKERS if marker in text], notebook
    assert hits == []


def user_env(home: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "PATH": f"{Path(NBGRADER).parent}:{os.environ['PATH']}"}


def test_stock_nbgrader_grades_a_course_under_tmp(tmp_path):
    requires_sandbox()
    course = released_course(base="/tmp")
    secrets, served = prepare(course)
    try:
        result = run([NBGRADER, "autograde", ASSIGNMENT, "--force"], course)
        assert "Traceback" not in result.stdout, result.stdout
        assert run([NBGRADER, "export", "--to", str(tmp_path / "grades.csv")], course).returncode == 0
        check_run(course, served.hits, read_csv(tmp_path / "grades.csv"))
    finally:
        secrets.__exit__(None, None, None)
        shutil.rmtree(course, ignore_errors=True)


@pytest.fixture
def user_home():
    """A home directory (0700) of the ordinary user, with the course in it."""
    python = ordinary_user_python()
    home = Path(tempfile.mkdtemp(prefix="grading-user-home-", dir="/var/tmp"))
    yield python, home
    shutil.rmtree(home, ignore_errors=True)


def give_to_user(path: Path) -> None:
    subprocess.run(["chown", "-R", f"{ORDINARY_USER}:{ORDINARY_USER}", str(path)], check=True)


def test_an_ordinary_user_grades_a_course_in_their_home_one_by_one_and_with_stock_nbgrader(user_home, tmp_path):
    requires_sandbox()
    python, home = user_home
    course = released_course(base=str(home))
    secrets, served = prepare(course, home)
    home.chmod(0o700)
    give_to_user(home)
    runuser = python[:-1]  # ["runuser", "-u", USER, "--"]
    env = user_env(home)
    try:
        result = run(
            [
                *python,
                "-m",
                "grading",
                "--course",
                str(course),
                "autograde",
                ASSIGNMENT,
                "--skip-preflight",
                "--workers",
                "1",
            ],
            course,
            env,
        )
        assert result.returncode == 1 and "FAILED (not graded)" in result.stdout, result.stderr
        csv = home / "grades.csv"
        assert (
            run([*python, "-m", "grading", "--course", str(course), "export", "--to", str(csv)], course, env).returncode
            == 0
        )
        check_run(course, served.hits, read_csv(csv))
        result = run([*runuser, NBGRADER, "autograde", ASSIGNMENT, "--force"], course, env)
        assert run([*runuser, NBGRADER, "export", "--to", str(csv)], course, env).returncode == 0
        check_run(course, served.hits, read_csv(csv))
    finally:
        secrets.__exit__(None, None, None)


def test_an_ordinary_user_grades_in_parallel_a_course_under_tmp(user_home):
    requires_sandbox()
    python, home = user_home
    course = released_course(base="/tmp")
    secrets, served = prepare(course)
    give_to_user(course)
    give_to_user(home)
    env = user_env(home)
    try:
        result = run(
            [
                *python,
                "-m",
                "grading",
                "--course",
                str(course),
                "autograde",
                ASSIGNMENT,
                "--skip-preflight",
                "--workers",
                "2",
            ],
            course,
            env,
        )
        assert "FAILED (not graded)" in result.stdout, result.stderr
        csv = home / "grades.csv"
        assert (
            run([*python, "-m", "grading", "--course", str(course), "export", "--to", str(csv)], course, env).returncode
            == 0
        )
        check_run(course, served.hits, read_csv(csv))
    finally:
        secrets.__exit__(None, None, None)
        shutil.rmtree(course, ignore_errors=True)


def test_the_course_directory_itself_is_never_mounted(tmp_path):
    """Even the course's public code is mounted by its parts: no mount holds a private folder."""
    from grading.sandbox import Layout, sandbox_mounts

    private = [str(ROOT / "solutions"), str(ROOT), str(ROOT / "gradebook.db")]
    mounts, _ = sandbox_mounts(
        str(Path(NBGRADER).with_name("python")),
        {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)},
        Layout(private=tuple(private)),
    )
    for mount in mounts:
        assert not any(p == mount["src"] or p.startswith(mount["src"].rstrip("/") + "/") for p in private), mount
    assert {str(ROOT / "helpers"), str(ROOT / "grading"), str(ROOT / "data" / "models")} <= {m["dest"] for m in mounts}
