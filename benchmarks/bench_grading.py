"""Autograding throughput: submissions graded per minute, one by one and in parallel, measured
in the same run.

    .venv/bin/python benchmarks/bench_grading.py                 # the tiny test assignment, 8 submissions
    .venv/bin/python benchmarks/bench_grading.py --dask          # a Dask LocalCluster too
    .venv/bin/python benchmarks/bench_grading.py --notebook 01_gradient_saliency --copies 4

Each mode grades the same submissions with ``python -m grading autograde --skip-preflight``
in its own copy of one released course, timed by the wall clock (the command's start-up
included, as an instructor waits for it). The tiny assignment's submissions are correct,
wrong, partly right and alternative answers from the test catalog; a course notebook is
graded on copies of its exercise with the solution's answers filled in. The grades and
statuses must be the same in every mode, or the benchmark stops. Kernels run with
``OMP_NUM_THREADS=1`` unless it is set. The load average printed with each table says how
busy the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests" / "grading"
sys.path.insert(0, str(TESTS))
import catalog  # noqa: E402
from catalog import ASSIGNMENT as TINY  # noqa: E402
from catalog import CASES, SOURCE, Context  # noqa: E402

TINY_CASES = ("perfect", "blank", "wrong", "partly_right", "alternative_a", "alternative_b", "deleted_test", "warnings")
CONFIG = """import sys
sys.path.insert(0, {root!r})
from grading.config import configure

c = get_config()
configure(c, {course!r})
"""


def grading(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PRACTICUM_DEVICE": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "grading", "--course", str(course), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def released_course(assignment: str, source: Path) -> Path:
    """A new course under /var/tmp whose only assignment is ``source`` (a solutions folder), released."""
    course = Path(tempfile.mkdtemp(prefix="bench-grading-", dir="/var/tmp" if os.access("/var/tmp", os.W_OK) else None))
    course.chmod(0o755)
    shutil.copytree(source, course / "solutions" / assignment)
    (course / "nbgrader_config.py").write_text(CONFIG.format(root=str(ROOT), course=str(course)))
    result = grading(course, "release", assignment)
    if result.returncode != 0:
        raise SystemExit(f"release of {assignment} failed:\n{result.stdout}{result.stderr}")
    return course


def copy_course(course: Path, name: str) -> Path:
    """A copy of ``course`` (released, nothing submitted) configured for its new place."""
    target = course.with_name(f"{course.name}-{name}")
    shutil.copytree(course, target, symlinks=True)
    config = target / "nbgrader_config.py"
    config.write_text(config.read_text().replace(repr(str(course)), repr(str(target))))
    return target


def tiny_submissions(course: Path, count: int) -> dict[str, nbformat.NotebookNode]:
    """``count`` submissions of the test assignment, cycling through a few kinds of answers."""
    ctx = Context(
        release=nbformat.read(course / "exercises" / TINY / f"{TINY}.ipynb", 4),
        solution=nbformat.read(SOURCE, 4),
        course=course,
        port=9,
    )
    cases = [case for case in CASES if case.student in TINY_CASES]
    return {f"{cases[i % len(cases)].student}_{i}": cases[i % len(cases)].build(ctx) for i in range(count)}


def solution_copies(course: Path, assignment: str, count: int) -> dict[str, nbformat.NotebookNode]:
    """``count`` copies of the released notebook with the solution's answers in its answer cells."""
    solution = nbformat.read(course / "solutions" / assignment / f"{assignment}.ipynb", 4)
    release = nbformat.read(course / "exercises" / assignment / f"{assignment}.ipynb", 4)
    answered = catalog.answered(
        Context(release=release, solution=solution, course=course, port=9), catalog.solution_answers(solution)
    )
    return {f"student_{i}": answered for i in range(count)}


def submit(course: Path, assignment: str, submissions: dict[str, nbformat.NotebookNode]) -> None:
    for student, nb in submissions.items():
        target = course / "submitted" / student / assignment
        target.mkdir(parents=True)
        nbformat.write(nb, target / f"{assignment}.ipynb")
        (target / "timestamp.txt").write_text("2030-01-01 00:00:00 UTC")


def grade(course: Path, assignment: str, options: list[str]) -> tuple[float, dict[str, tuple]]:
    """Wall-clock seconds of one autograde run, and each student's (status, code score)."""
    start = time.perf_counter()
    result = grading(course, "autograde", assignment, "--skip-preflight", *options)
    seconds = time.perf_counter() - start
    if result.returncode not in (0, 1):
        raise SystemExit(f"autograde {' '.join(options)} exited with {result.returncode}:\n{result.stderr}")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s.student.id: s.code_score for s in gb.assignment_submissions(assignment)}
    statuses = {
        path.stem: json.loads(path.read_text())["status"]
        for path in (course / "grading_reports" / assignment).glob("*.json")
    }
    return seconds, {student: (statuses.get(student), scores.get(student)) for student in statuses}


def benchmark(
    title: str, assignment: str, source: Path, make_submissions, count: int, modes: list[tuple[str, list[str]]]
) -> None:
    course = released_course(assignment, source)
    try:
        results = {}
        for index, (name, options) in enumerate(modes):
            copy = copy_course(course, f"mode{index}")
            submit(copy, assignment, make_submissions(copy, count))
            results[name] = grade(copy, assignment, options)
        grades = {name: result[1] for name, result in results.items()}
        reference = grades[modes[0][0]]
        for name, got in grades.items():
            if got != reference:
                raise SystemExit(f"{name} graded differently from {modes[0][0]}:\n{got}\n{reference}")
        serial = results[modes[0][0]][0]
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\n{title}: {count} submissions, {os.cpu_count()} CPU cores (load average now {load})")
        print(f"{'mode':<28} {'seconds':>8} {'submissions/min':>16} {'vs one by one':>14}")
        for name, (seconds, _) in results.items():
            print(f"{name:<28} {seconds:8.1f} {60 * count / seconds:16.1f} {serial / seconds:13.2f}×")
        print(f"grades and statuses identical in all modes: {dict(sorted(reference.items()))}")
    finally:
        for path in course.parent.glob(f"{course.name}*"):
            shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=8, help="submissions of the tiny assignment")
    parser.add_argument("--workers", type=int, default=2, help="parallel workers (default 2)")
    parser.add_argument("--dask", action="store_true", help="also grade on a Dask LocalCluster of --workers")
    parser.add_argument("--notebook", help="also grade a course notebook, e.g. 01_gradient_saliency")
    parser.add_argument("--copies", type=int, default=4, help="copies of the notebook's solution (default 4)")
    args = parser.parse_args()
    modes = [
        ("one by one (--workers 1)", ["--workers", "1"]),
        (f"process pool (--workers {args.workers})", ["--workers", str(args.workers)]),
    ]
    if args.dask:
        modes.append((f"Dask LocalCluster ({args.workers})", ["--scheduler", "local", "--workers", str(args.workers)]))
    benchmark(f"test assignment {TINY}", TINY, SOURCE.parent, tiny_submissions, args.submissions, modes)
    if args.notebook:
        benchmark(
            f"notebook {args.notebook} (solution copies)",
            args.notebook,
            ROOT / "solutions" / args.notebook,
            lambda course, count: solution_copies(course, args.notebook, count),
            args.copies,
            modes,
        )


if __name__ == "__main__":
    main()
