"""``python -m grading COMMAND``: the instructor's workflow, one command per step.

    release ASSIGNMENT [--duedate ISO]     exercises/ from solutions/, assignment in the gradebook
    collect ASSIGNMENT ZIP_OR_DIRECTORY    students' files into submitted/, links and hostile ones refused
    preflight ASSIGNMENT                   grade solutions, blank and tampered copies; must be right
    autograde ASSIGNMENT [--student ID]..  preflight, then grade every submission in the sandbox,
        [--workers N] [--scheduler S]      N at a time (default one per CPU), on Dask with --scheduler
    feedback ASSIGNMENT [--student ID]..   HTML feedback in feedback/: what failed, without hidden tests
    export [--to grades.csv]               grades with each submission's status and message
    validate NOTEBOOK...                   run a notebook's tests, report each test cell (trusted, no sandbox)

Run in the course directory (or pass --course DIR). Exit status: 0 when everything
worked, 1 when a step or a submission failed (the output says which), 2 when grading
cannot start (no course here, no sandbox).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from .collect import summary
from .parallel import autograde_in_parallel
from .sandbox import ALLOW_UNSANDBOXED_ENV, SandboxUnavailable
from .workflow import Course, StepFailed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m grading",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--course", default=".", help="course directory (default: the current one)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show nbgrader's log")
    commands = parser.add_subparsers(dest="command", required=True)
    release = commands.add_parser("release", help="generate exercises/ from solutions/")
    release.add_argument("assignment")
    release.add_argument("--duedate", help="due date, e.g. '2025-03-01 23:59:00 UTC'")
    collect = commands.add_parser("collect", help="collect an LMS zip or a directory of notebooks")
    collect.add_argument("assignment")
    collect.add_argument("source")
    for name in ("preflight", "autograde"):
        command = commands.add_parser(name, help=f"{name} an assignment")
        command.add_argument("assignment")
        command.add_argument(
            "--unsandboxed", action="store_true", help="grade without the sandbox (trusted notebooks only)"
        )
    commands.choices["autograde"].add_argument("--student", action="append", help="only this student (repeatable)")
    commands.choices["autograde"].add_argument("--skip-preflight", action="store_true")
    commands.choices["autograde"].add_argument(
        "--workers",
        type=_positive,
        default=os.cpu_count() or 1,
        help="submissions graded at once (default: one per CPU, %(default)s here; 1: one by one)",
    )
    commands.choices["autograde"].add_argument(
        "--scheduler",
        metavar="local|ADDRESS",
        help="grade on Dask: a LocalCluster of --workers processes, or the scheduler at ADDRESS",
    )
    feedback = commands.add_parser("feedback", help="generate feedback without hidden tests")
    feedback.add_argument("assignment")
    feedback.add_argument("--student", action="append")
    export = commands.add_parser("export", help="export grades to CSV")
    export.add_argument("--to", help="CSV file (default: COURSE/grades.csv)")
    export.add_argument("--assignment", action="append")
    validate = commands.add_parser("validate", help="run a notebook's tests; exit 1 if any fails")
    validate.add_argument("notebooks", nargs="+")
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _print_report(report: dict) -> None:
    """One line per graded submission: student, status, automatic score (and the points left
    to grade by hand), time, and every message of its report."""
    score = "-"
    if report.get("score") is not None:
        score = f"{report['score']:g}/{report['max_score']:g}"
        if report.get("manual_points"):
            score += f" (+{report['manual_points']:g} graded by hand)"
    messages = [report["failure"]] if report.get("failure") else []
    messages += report["problems"] + report["review"] + report["notes"]
    print(
        f"{report['student']:<24} {report['status']:<8} {score:>9} {report['seconds']:>6.1f} s  {'; '.join(messages)}",
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    if getattr(args, "unsandboxed", False):
        os.environ[ALLOW_UNSANDBOXED_ENV] = "1"
    course = Course(args.course)
    if args.command == "release":
        for path in course.release(args.assignment, args.duedate):
            print(f"released {os.path.relpath(path, course.root)}")
        return 0
    if args.command == "collect":
        result = course.collect(args.assignment, args.source)
        print("\n".join([*result.lines, summary(result)]))
        return 0 if result.ok else 1
    if args.command in {"preflight", "autograde"}:
        sandboxed = course.check_sandbox()
        print("sandbox: " + ("bubblewrap" if sandboxed else "NONE (allowed explicitly)"), flush=True)
        if args.command == "preflight" or not args.skip_preflight:
            result = course.preflight(args.assignment)
            print("\n".join(f"preflight: {line}" for line in result.lines), flush=True)
            if not result.ok:
                print(
                    "preflight FAILED: the solutions would not get full marks as graded here; nothing was graded",
                    file=sys.stderr,
                )
                return 1
            if args.command == "preflight":
                return 0
        if args.workers == 1 and not args.scheduler:
            reports = course.autograde(args.assignment, args.student, on_report=_print_report)
        else:
            reports = autograde_in_parallel(
                course,
                args.assignment,
                args.student,
                on_report=_print_report,
                workers=args.workers,
                scheduler=args.scheduler,
            )
        failed = [r["student"] for r in reports if r["status"] == "failed"]
        flagged = [r["student"] for r in reports if r["status"] == "flagged"]
        print(
            f"autograded {len(reports)}: {len(reports) - len(failed) - len(flagged)} graded, "
            f"{len(flagged)} flagged for review, {len(failed)} FAILED (not graded)"
        )
        return 1 if failed else 0
    if args.command == "feedback":
        results = course.feedback(args.assignment, args.student)
        for result in results:
            for path in result.written:
                print(f"feedback {os.path.relpath(path, course.root)}")
            for note in result.notes:
                print(f"  {result.student}: {note}")
            if result.failure:
                print(f"feedback for {result.student} FAILED: {result.failure}", file=sys.stderr)
        return 1 if any(result.failure for result in results) else 0
    if args.command == "export":
        print(f"exported {course.export(args.to, args.assignment)}")
        return 0
    failures = 0
    for path in args.notebooks:
        validation = course.validate(path)
        print("\n".join(validation.lines()), flush=True)
        failures += not validation.passed
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL, format="[%(levelname)s] %(message)s")
    if not args.verbose:
        logging.getLogger("traitlets").addHandler(logging.NullHandler())
        logging.getLogger("traitlets").propagate = False
        logging.getLogger("distributed").propagate = False  # Dask's own handler shows its warnings
        warnings.filterwarnings("ignore", module="nbgrader")  # SQLAlchemy session notices from nbgrader
    try:
        return run(args)
    except SandboxUnavailable as error:
        print(str(error), file=sys.stderr)
        return 2
    except StepFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1 if "nbgrader_config.py" not in str(error) else 2


if __name__ == "__main__":
    sys.exit(main())
