"""Grading in parallel gives exactly the grades of grading one by one, and leaves no stale grades.

The same submissions (a few cases of the hostile catalog) are graded in three copies of one
released course: one by one (``--workers 1``), by a local process pool of 2 and by a Dask
LocalCluster of 2. The oracle is the serial run: every grade in the gradebook (automatic and
manual fields, per cell), every report, every autograded file and the repaired submission
must be the same, and so must the exit status.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from catalog import ASSIGNMENT, CASES, SOURCE, Context, write_catalog
from course_tools import ROOT, grading, read_csv, released_course, requires_sandbox
from nbgrader.api import Gradebook

from grading.checks import WITNESS_MIME
from grading.sandbox import SandboxKernelManager

pytestmark = pytest.mark.slow
STUDENTS = (
    "perfect",
    "partly_right",
    "wrong",
    "kernel_crash",
    "reads_solutions",
    "repaired_json",
    "malformed_json",
    "metadata_not_a_mapping",
    "link_to_solutions",
    "forwards_to_the_checker",
)
SELECTED = [case for case in CASES if case.student in STUDENTS]
NOTEBOOK = f"{ASSIGNMENT}.ipynb"


def clone(released: Path, name: str) -> Path:
    """A copy of the released course (its own configuration and gradebook), with the submissions."""
    course = released.with_name(f"{released.name}-{name}")
    shutil.copytree(released, course, symlinks=True)
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text().replace(repr(str(released)), repr(str(course))))
    ctx = Context(
        release=nbformat.read(course / "exercises" / ASSIGNMENT / NOTEBOOK, 4),
        solution=nbformat.read(SOURCE, 4),
        course=course,
        port=9,
    )
    write_catalog(ctx, course / "submitted", SELECTED)
    return course


def notebook_state(nb) -> dict:
    """A submitted notebook's late penalty, and each cell's grade (automatic and manual) and comments."""
    return {
        "late_submission_penalty": nb.late_submission_penalty,
        "grades": {g.name: (g.auto_score, g.manual_score, g.extra_credit, g.needs_manual_grade) for g in nb.grades},
        "comments": {c.name: (c.auto_comment, c.manual_comment) for c in nb.comments},
    }


def gradebook_state(course: Path) -> dict[str, dict]:
    """Everything the gradebook holds about each submission of the assignment."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return {
            s.student.id: {
                "timestamp": s.timestamp,
                "score": s.score,
                "code_score": s.code_score,
                "max_score": s.max_score,
                "notebooks": {nb.name: notebook_state(nb) for nb in s.notebooks},
            }
            for s in gb.assignment_submissions(ASSIGNMENT)
        }


def report(course: Path, student: str) -> dict:
    """A student's report, without what differs between runs (when, how long, file times), with the
    course's path written as COURSE."""
    text = (course / "grading_reports" / ASSIGNMENT / f"{student}.json").read_text()
    data = json.loads(text.replace(json.dumps(str(course))[1:-1], "COURSE"))
    data["autograded"] = sorted(notebook for notebook, mtime in data["autograded"].items() if mtime is not None)
    return {key: value for key, value in data.items() if key not in {"seconds", "graded_at"}}


def files(course: Path, part: str) -> dict[str, str]:
    """Digest of each file under ``course/part``, with the course's path written as COURSE and
    notebooks without their cells' execution times and their witnesses' signatures (each kernel
    signs with a key of its own)."""
    digests = {}
    for path in sorted((course / part).rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".ipynb":
            try:
                nb = json.loads(data)
            except ValueError:  # an unreadable submission, as it was submitted
                nb = None
            if nb is not None:
                for cell in nb["cells"]:
                    cell.get("metadata", {}).pop("execution", None)
                    for output in cell.get("outputs", []):
                        output.get("data", {}).get(WITNESS_MIME, {}).pop("mac", None)
                data = json.dumps(nb, sort_keys=True).encode()
        data = data.replace(str(course).encode(), b"COURSE")
        digests[str(path.relative_to(course / part))] = hashlib.sha256(data).hexdigest()
    return digests


def outcome(course: Path, *options: str) -> dict:
    """Autograde the course with ``options``; everything the run left, comparable across runs."""
    result = grading(course, "autograde", ASSIGNMENT, "--skip-preflight", *options)
    return {
        "returncode": result.returncode,
        "summary": result.stdout.strip().splitlines()[-1],
        "gradebook": gradebook_state(course),
        "reports": {student: report(course, student) for student in STUDENTS},
        "autograded": files(course, "autograded"),
        "submitted": files(course, "submitted"),
        "output": result.stdout + result.stderr,
    }


@pytest.fixture(scope="module")
def released():
    requires_sandbox()
    course = released_course()
    yield course
    for path in course.parent.glob(f"{course.name}*"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def one_by_one(released):
    return outcome(clone(released, "serial"), "--workers", "1")


@pytest.fixture(scope="module")
def pooled(released):
    course = clone(released, "pool")
    return course, outcome(course, "--workers", "2")


def assert_same_grading(parallel: dict, serial: dict) -> None:
    for part in ("returncode", "summary", "gradebook", "reports", "autograded", "submitted"):
        assert parallel[part] == serial[part], f"{part} differs\n{parallel['output']}"


def test_serial_run_grades_the_cases_as_the_catalog_says(one_by_one):
    """The oracle itself is right: statuses and scores as the catalog states them."""
    for case in SELECTED:
        assert one_by_one["reports"][case.student]["status"] == case.status, case.student
        if case.code_score is not None:
            assert one_by_one["gradebook"][case.student]["code_score"] == case.code_score, case.student
    assert one_by_one["returncode"] == 1  # kernel_crash, malformed_json... were not graded
    counts = {status: sum(case.status == status for case in SELECTED) for status in ("graded", "flagged", "failed")}
    assert one_by_one["summary"] == (
        f"autograded {len(SELECTED)}: {counts['graded']} graded, {counts['flagged']} flagged for review, "
        f"{counts['failed']} FAILED (not graded)"
    )


def test_process_pool_grades_exactly_as_one_by_one(pooled, one_by_one):
    course, parallel = pooled
    assert_same_grading(parallel, one_by_one)
    # the sandbox held in the workers: the real course's private files were out of reach
    graded = nbformat.read(course / "autograded" / "reads_solutions" / ASSIGNMENT / NOTEBOOK, 4)
    printed = "".join(o.get("text", "") for c in graded.cells if c.cell_type == "code" for o in c.outputs)
    for target in ("solutions", "gradebook", "other student"):
        assert f"{target} not readable: " in printed, printed


def test_dask_local_cluster_grades_exactly_as_one_by_one(released, one_by_one):
    parallel = outcome(clone(released, "dask"), "--scheduler", "local", "--workers", "2")
    assert_same_grading(parallel, one_by_one)


@pytest.fixture
def dask_scheduler():
    """A Dask scheduler and two one-thread workers started as an instructor starts them on other
    machines (``dask scheduler``, ``dask worker ADDRESS --nthreads 1``), here on this one; the
    scheduler's address."""
    from distributed import Client

    dask = str(Path(sys.executable).with_name("dask"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    processes = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        processes.append(
            subprocess.Popen(
                [dask, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=60)


def test_a_dask_scheduler_at_an_address_grades_exactly_as_one_by_one(released, one_by_one, dask_scheduler):
    parallel = outcome(clone(released, "remote"), "--scheduler", dask_scheduler)
    assert_same_grading(parallel, one_by_one)


def test_kernels_talk_over_private_ipc_sockets_not_tcp_ports():
    """What keeps concurrent kernels from clashing: no TCP port is chosen, each kernel's sockets
    are in a directory of its own."""
    managers = [SandboxKernelManager(kernel_name="python3") for _ in range(2)]
    try:
        assert [km.transport for km in managers] == ["ipc", "ipc"]
        directories = {str(Path(km.ip).parent) for km in managers}
        assert len(directories) == 2
        assert all(Path(d).stat().st_mode & 0o777 == 0o700 for d in directories)
    finally:
        for km in managers:
            shutil.rmtree(Path(km.ip).parent.parent, ignore_errors=True)


def test_regrading_in_parallel_leaves_no_stale_grades(pooled, one_by_one):
    """Two students swap notebooks, one of them with a grader's manual score; regrading them
    gives each the grades of the notebook it now has (a failed run leaves no old grade behind),
    keeps the manual score, and touches no one else."""
    course, before = pooled
    submitted = course / "submitted"
    crash, good = (submitted / s / ASSIGNMENT / NOTEBOOK for s in ("kernel_crash", "perfect"))
    crash_text, good_text = crash.read_text(), good.read_text()
    crash.write_text(good_text)
    good.write_text(crash_text)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        gb.find_grade("test_project", ASSIGNMENT, ASSIGNMENT, "kernel_crash").manual_score = 1.5
        gb.db.commit()
    regraded = ["perfect", "kernel_crash"]
    after = outcome(course, "--workers", "2", *[arg for s in regraded for arg in ("--student", s)])

    def without_student(data: dict) -> dict:
        return {key: value for key, value in data.items() if key != "student"}

    assert after["gradebook"]["perfect"] == one_by_one["gradebook"]["kernel_crash"]
    assert without_student(after["reports"]["perfect"]) == without_student(one_by_one["reports"]["kernel_crash"])
    assert not (course / "autograded" / "perfect" / ASSIGNMENT).exists()  # the failed regrade left no notebook
    now_perfect = after["gradebook"]["kernel_crash"]
    serial_perfect = one_by_one["gradebook"]["perfect"]
    cells = now_perfect["notebooks"][ASSIGNMENT]["grades"]
    serial_cells = serial_perfect["notebooks"][ASSIGNMENT]["grades"]
    assert cells.pop("test_project") == (serial_cells.pop("test_project")[0], 1.5, None, True)
    assert cells == serial_cells
    assert now_perfect["code_score"] == serial_perfect["code_score"] - 3 + 1.5  # the grader's score counts
    for student in set(STUDENTS) - set(regraded):
        assert after["gradebook"].get(student) == before["gradebook"].get(student), student
        assert after["reports"][student] == before["reports"][student], student
    untouched = {path: digest for path, digest in before["autograded"].items() if path.split("/")[0] not in regraded}
    assert {path: after["autograded"][path] for path in untouched} == untouched
    assert after["returncode"] == 1
    assert after["summary"] == "autograded 2: 1 graded, 0 flagged for review, 1 FAILED (not graded)"


class _DeadWorker:
    """The future of a grading worker that died (killed, out of memory) before it answered."""

    def result(self):
        raise RuntimeError("worker process was killed")


def test_a_dead_worker_fails_its_submission_and_leaves_no_old_grade(released, monkeypatch):
    """A worker that dies is reported as a failure of its submission, never as its old grade or
    a silent 0: the earlier automatic grades and graded notebook are gone, other students keep
    theirs, and the export lists the submission as failed."""
    from grading import parallel
    from grading.workflow import Course

    course = clone(released, "dead")
    assert grading(course, "autograde", ASSIGNMENT, "--skip-preflight", "--workers", "1").returncode == 1
    before = gradebook_state(course)
    assert before["perfect"]["code_score"] == 6

    def dead_pool(jobs, gradebook, workers):
        for job in jobs:
            yield job, _DeadWorker()

    monkeypatch.setattr(parallel, "in_process_pool", dead_pool)
    [result] = parallel.autograde_in_parallel(Course(str(course)), ASSIGNMENT, ["perfect"], workers=2)
    assert result["status"] == "failed"
    assert "grading worker failed: RuntimeError: worker process was killed" in result["failure"]
    after = gradebook_state(course)
    assert after["perfect"]["code_score"] == 0
    assert all(grade[0] is None for grade in after["perfect"]["notebooks"][ASSIGNMENT]["grades"].values())
    assert not (course / "autograded" / "perfect" / ASSIGNMENT).exists()
    assert {s: after[s] for s in after if s != "perfect"} == {s: before[s] for s in before if s != "perfect"}
    assert grading(course, "export", "--to", str(course / "grades.csv")).returncode == 0
    exported = read_csv(course / "grades.csv")
    assert exported["perfect"]["status"] == "failed", exported["perfect"]
