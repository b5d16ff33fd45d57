"""The gradebook on PostgreSQL (nbgrader's ``db_url``), as graders working at the same time share it.

A throwaway PostgreSQL server (Debian's ``postgresql``, which ``python3 tasks.py test``
installs) listens on a Unix socket only. The test assignment is released into it, a few
catalog cases are submitted and graded by two workers, which write their grades to the
server directly; the preflight runs first, in a scratch SQLite gradebook of its own. The
grades and statuses must be the catalog's, nothing may fall back to a SQLite file, and the
export must list every submission with its status.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import nbformat
import pytest
from catalog import ASSIGNMENT, CASES, SOURCE, Context, write_catalog
from course_tools import grading, read_csv, released_course, requires_sandbox
from nbgrader.api import Gradebook

pytestmark = pytest.mark.slow
POSTGRES_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))  # Debian's layout, one folder per version
STUDENTS = ("perfect", "partly_right", "wrong", "kernel_crash")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """The URL of a database on a new PostgreSQL server (Unix socket, trust authentication),
    stopped and removed afterwards. As root the server runs as the ``postgres`` user."""
    if not POSTGRES_BIN:
        if os.environ.get("GRADING_REQUIRE_SANDBOX") == "1":
            pytest.fail("PostgreSQL is not installed (Debian: postgresql)")
        pytest.skip("PostgreSQL is not installed (Debian: postgresql; `python3 tasks.py test` installs it as root)")
    binaries = Path(POSTGRES_BIN[-1])
    base = Path(tempfile.mkdtemp(prefix="grading-postgres-"))
    base.chmod(0o755)
    as_user = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port, data = free_port(), base / "data"

    def run(*command: str) -> None:
        result = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr

    run(str(binaries / "initdb"), "-D", str(data), "-U", "grader", "--auth=trust", "-E", "UTF8")
    run(
        str(binaries / "pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(base / "server.log"),
        "-o",
        f"-k {base} -p {port} -c listen_addresses=''",
        "start",
    )
    try:
        run(str(binaries / "createdb"), "-h", str(base), "-p", str(port), "-U", "grader", "gradebook")
        yield f"postgresql+psycopg://grader@/gradebook?host={base}&port={port}"
    finally:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_two_workers_grade_into_a_postgresql_gradebook(postgres_url):
    requires_sandbox()
    course = released_course(f"c.CourseDirectory.db_url = {postgres_url!r}")
    try:
        ctx = Context(
            release=nbformat.read(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4),
            solution=nbformat.read(SOURCE, 4),
            course=course,
            port=9,
        )
        cases = [case for case in CASES if case.student in STUDENTS]
        write_catalog(ctx, course / "submitted", cases)
        result = grading(course, "autograde", ASSIGNMENT, "--workers", "2")
        assert "preflight: grading_demo: solution 6.0/6.0, blank 0/6.0, tampered 6.0/6.0" in result.stdout, (
            result.stdout + result.stderr
        )
        assert result.returncode == 1, result.stdout + result.stderr  # kernel_crash was not graded
        assert "Warning" not in result.stderr, result.stderr
        assert (
            result.stdout.strip().splitlines()[-1]
            == "autograded 4: 3 graded, 0 flagged for review, 1 FAILED (not graded)"
        )
        with Gradebook(postgres_url) as gb:
            scores = {s.student.id: s.code_score for s in gb.assignment_submissions(ASSIGNMENT)}
        assert not list(course.glob("*.db")), "a SQLite gradebook appeared in the course"
        exported = (
            read_csv(course / "grades.csv")
            if grading(course, "export", "--to", str(course / "grades.csv")).returncode == 0
            else {}
        )
        for case in cases:
            assert exported[case.student]["status"] == case.status, case.student
            if case.code_score is not None:
                assert scores[case.student] == case.code_score, case.student
    finally:
        shutil.rmtree(course, ignore_errors=True)
