"""Autograde many submissions at once: a local process pool, or a Dask distributed cluster.

:func:`autograde_in_parallel` gives exactly the grades and reports of
:meth:`grading.workflow.Course.autograde` (one by one). Each submission is graded by a
worker in a scratch directory of its own: a copy of the submission, its own autograded
directory and, with the default SQLite gradebook, a copy of the gradebook taken when the
run starts. Workers never write to the course; the parent process writes each result
into it (repaired notebook, autograded files, the automatic grades: see
:mod:`grading.gradebook`) and its report, one at a time, as results arrive. So no two
processes ever write the SQLite file (nbgrader's sessions would otherwise meet
"database is locked"), and a worker that fails or dies leaves nothing half-written: its
submission is reported failed and its earlier grades are reset, never left stale. With a
database server as nbgrader's ``db_url`` (PostgreSQL), workers write their grades to it
directly; the files still go through the parent.

Every worker checks the sandbox before grading, and kernels see neither the course's
private paths nor any worker's scratch directory. Kernels talk to their worker over
ZeroMQ IPC sockets in a private directory per kernel (:class:`grading.sandbox.
SandboxKernelManager`), never over TCP: stock jupyter_client picks a "free" port by
binding port 0 and closing it, a window in which a kernel started by another process
can take the same port; a socket path nobody else can see cannot be taken.

Workers on other machines (``scheduler`` = a Dask scheduler's address) need the course's
environment and the course directory at the same path (read access is enough), bubblewrap,
and ``grading`` importable; results travel back by value.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import shutil
import sqlite3
import tempfile
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from traitlets.config import Config

from .gradebook import automatic_results, write_automatic_results
from .paths import private_paths
from .sandbox import SandboxUnavailable
from .sanitize import submission_refusals
from .workflow import Attempt, Course, scratch_config

# Environment variables that size the numerical libraries' thread pools in kernels.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Job:
    """One submission for a worker to grade.

    ``submission`` is its directory in the course; the worker grades in a new directory
    under ``scratch_base`` with ``config`` (the course's); kernels must not see ``hidden``."""

    root: str
    config: Config
    assignment: str
    student: str
    submission: str
    scratch_base: str
    hidden: tuple[str, ...]
    submitted_top: str = ""  # the course's submitted directory (links below it are refused)


@dataclass
class Graded:
    """What a worker sends back: the attempt, the submission's notebooks rewritten by the JSON
    repair (file name -> bytes), the files of its autograded directory (relative path ->
    bytes; None when there is none) and, from its scratch gradebook, the automatic results
    (see :mod:`grading.gradebook`; None when there is no submission, or no scratch gradebook)."""

    attempt: Attempt
    repaired: dict[str, bytes]
    autograded: dict[str, bytes] | None
    results: dict | None


def regular_files(directory: str) -> dict[str, bytes] | None:
    """Contents of the regular files under ``directory`` by relative path (links are not
    followed, nor kept); None if there is no such directory."""
    if not os.path.isdir(directory):
        return None
    files = {}
    for folder, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    files[os.path.relpath(path, directory)] = f.read()
    return files


def grade_copy(job: Job, gradebook: bytes | None) -> Graded:
    """Grade ``job``'s submission in a scratch directory (run by a worker): with the SQLite
    ``gradebook`` snapshot there, or, when it is None, on the course's own database server."""
    # As in ``python -m grading``: nbgrader's SQLAlchemy session notices are noise in a worker too.
    warnings.filterwarnings("ignore", module="nbgrader")
    os.makedirs(job.scratch_base, mode=0o711, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="job-", dir=job.scratch_base) as scratch:
        os.chmod(scratch, 0o711)  # a sandbox's unprivileged user must reach its submission inside
        if gradebook is not None:
            with open(os.path.join(scratch, "gradebook.db"), "wb") as f:
                f.write(gradebook)
        course = Course(
            job.root, scratch_config(job.config, scratch, gradebook=gradebook is not None, hidden=list(job.hidden))
        )
        course.check_sandbox()
        coursedir = course.coursedir
        refusals = submission_refusals(job.submission, job.submitted_top or None)
        if refusals:  # never copied: a copy would follow the link or block on the FIFO
            failure = f"refused, not graded: {'; '.join(refusals[:5])} (links and special files are never read)"
            return Graded(Attempt(job.student, succeeded=False, failure=failure), {}, None, None)
        submission = coursedir.format_path(coursedir.submitted_directory, job.student, job.assignment)
        shutil.copytree(job.submission, submission, symlinks=True)
        attempt = course.grade(job.assignment, job.student)
        results = None
        if gradebook is not None:
            with course.api.gradebook as gb:
                results = automatic_results(gb, job.assignment, job.student)
        repaired = {}
        for name in attempt.originals:
            with open(os.path.join(submission, name), "rb") as f:
                repaired[name] = f.read()
        autograded = regular_files(coursedir.format_path(coursedir.autograded_directory, job.student, job.assignment))
        return Graded(attempt, repaired, autograded, results)


def store(course: Course, assignment: str, graded: Graded, *, with_results: bool) -> dict:
    """Write a worker's result into the course as grading there would have left it, and its
    report (:meth:`Course.record`); the report. ``with_results``: write the automatic results
    into the gradebook too (the worker graded on a copy of it, or did not finish)."""
    coursedir, student = course.coursedir, graded.attempt.student
    submission = coursedir.format_path(coursedir.submitted_directory, student, assignment)
    for name, data in graded.repaired.items():
        with open(os.path.join(submission, name), "wb") as f:
            f.write(data)
    autograded = coursedir.format_path(coursedir.autograded_directory, student, assignment)
    shutil.rmtree(autograded, ignore_errors=True)
    for path, data in (graded.autograded or {}).items():
        target = os.path.join(autograded, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
    if with_results:
        with course.api.gradebook as gb:
            write_automatic_results(gb, assignment, student, graded.results)
    return course.record(assignment, graded.attempt)


def gradebook_snapshot(db_url: str) -> bytes:
    """A consistent copy of the SQLite gradebook at ``db_url`` (SQLite's online backup), as bytes."""
    with tempfile.TemporaryDirectory(prefix="grading-snapshot-") as tmp:
        copy_path = os.path.join(tmp, "gradebook.db")
        source = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        target = sqlite3.connect(copy_path)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        with open(copy_path, "rb") as f:
            return f.read()


def _share_cores(threads: int) -> None:
    """Pool worker start-up: kernels' numerical libraries use ``threads`` threads each (unless
    the instructor set them), so that N workers do not run N times the cores' threads."""
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))


def in_process_pool(jobs: list[Job], gradebook: bytes | None, workers: int) -> Iterator[tuple[Job, object]]:
    """Each job with its future (``.result()`` is the :class:`Graded`), as they finish, graded by
    ``workers`` local processes (forked from a fresh fork server: none inherits this process's
    state, its database connections in particular)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # imported once, in the fork server, not in every worker
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_share_cores, initargs=(threads,))
    try:
        futures = {pool.submit(grade_copy, job, gradebook): job for job in jobs}
        for future in as_completed(futures):
            yield futures[future], future
    finally:
        pool.shutdown(cancel_futures=True)


def on_dask(jobs: list[Job], gradebook: bytes | None, workers: int, scheduler: str) -> Iterator[tuple[Job, object]]:
    """Each job with its future, as they finish, graded on a Dask cluster: a LocalCluster of
    ``workers`` one-thread processes when ``scheduler`` is "local", else the scheduler at that
    address (its workers, however many). The gradebook snapshot is sent to each worker once."""
    from distributed import Client, LocalCluster  # only for Dask runs
    from distributed import as_completed as dask_completed

    cluster = (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        if scheduler == "local"
        else None
    )
    try:
        with Client(cluster or scheduler) as client:
            snapshot = client.scatter(gradebook, broadcast=True) if gradebook is not None else None
            futures = client.map(grade_copy, jobs, gradebook=snapshot, pure=False)
            job_of = dict(zip((future.key for future in futures), jobs))
            for future in dask_completed(futures):
                yield job_of[future.key], future
    finally:
        if cluster is not None:
            cluster.close()


def autograde_in_parallel(
    course: Course,
    assignment: str,
    students: list[str] | None = None,
    on_report: Callable[[dict], None] | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
) -> list[dict]:
    """Autograde each submission (all submitted ones by default), ``workers`` at a time (default:
    one per CPU) in a local process pool, or on Dask when ``scheduler`` is "local" (a
    LocalCluster of ``workers``) or a scheduler's address; the reports, in the students' order.

    ``on_report(report)`` is called as each submission is done. Raises
    :class:`SandboxUnavailable` (from this process or any worker) when grading must stop."""
    sandboxed = course.check_sandbox()
    students = list(dict.fromkeys(students or course.submitted_students(assignment)))
    if not students:
        return []
    workers = min(workers or os.cpu_count() or 1, len(students))
    coursedir = course.coursedir
    on_sqlite = coursedir.db_url.startswith("sqlite:")
    config = copy.deepcopy(course.config)
    if not sandboxed:  # the instructor allowed it here: workers elsewhere must not decide otherwise
        config.SandboxedExecute.allow_unsandboxed = True
    scratch_base = tempfile.mkdtemp(prefix="grading-scratch-")
    os.chmod(scratch_base, 0o711)
    hidden = (*private_paths(coursedir, config.get("Exchange", {}).get("root")), scratch_base)
    jobs = [
        Job(
            course.root,
            config,
            assignment,
            student,
            coursedir.format_path(coursedir.submitted_directory, student, assignment),
            scratch_base,
            hidden,
            os.path.join(coursedir.root, coursedir.submitted_directory),
        )
        for student in students
    ]
    if on_sqlite:
        with course.api.gradebook:  # creates the gradebook if there is none yet
            pass
    gradebook = gradebook_snapshot(coursedir.db_url) if on_sqlite else None
    finished = on_dask(jobs, gradebook, workers, scheduler) if scheduler else in_process_pool(jobs, gradebook, workers)
    reports = {}
    try:
        for job, future in finished:
            try:
                graded, crashed = future.result(), False
            except SandboxUnavailable:
                raise
            except Exception as error:  # the worker failed (a bug, or it was killed): not graded
                graded = Graded(
                    Attempt(
                        job.student, succeeded=False, failure=f"grading worker failed: {type(error).__name__}: {error}"
                    ),
                    repaired={},
                    autograded=None,
                    results=None,
                )
                crashed = True
            reports[job.student] = store(course, assignment, graded, with_results=on_sqlite or crashed)
            if on_report:
                on_report(reports[job.student])
    finally:
        finished.close()
        shutil.rmtree(scratch_base, ignore_errors=True)
    return [reports[student] for student in students]
