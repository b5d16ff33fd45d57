"""The instructor's workflow, one method per step, on nbgrader's Python API.

release -> collect -> preflight -> autograde -> feedback -> export; ``python -m grading``
exposes each step as a command (see :mod:`grading.__main__`).
"""

from __future__ import annotations

import copy
import glob
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import IgnorePattern
from nbgrader.utils import chdir, setenv
from nbgrader.validator import Validator
from traitlets.config import Config, LazyConfigValue, PyFileConfigLoader

from .audit import REVIEW_PREFIX
from .collect import CollectError, CollectResult, SafeExtractor, SubmissionCollector, collect_batch
from .export import StatusCsvExportPlugin
from .feedback import FeedbackResult, HiddenText, HideHiddenTests, leaked_lines
from .gradebook import reset_automatic_results
from .outputs import RequireCheckWitnesses
from .paths import release_notebook_path, report_path
from .report import grade_submission, read_report
from .safefiles import TreeWriter, make_folders, open_plain_file
from .sandbox import SandboxedExecute, SandboxUnavailable, grading_package_root
from .sanitize import LOG_PREFIX, UnreadableNotebook, read_submission, submission_refusals
from .validation import Validation, changed_cells, validation_of

PREFLIGHT_STUDENTS = ("preflight-solution", "preflight-blank", "preflight-tampered")
TAMPER_NOTES = ("was edited", "points of cell")


class StepFailed(RuntimeError):
    """A workflow step could not be completed; the message says why."""


def load_config(root: str) -> Config:
    """The course's nbgrader configuration (its ``nbgrader_config.py``)."""
    if not os.path.exists(os.path.join(root, "nbgrader_config.py")):
        raise StepFailed(f"{root} has no nbgrader_config.py: run from the course directory or pass --course")
    config = PyFileConfigLoader("nbgrader_config.py", path=root).load_config()
    if "root" not in config.CourseDirectory:
        config.CourseDirectory.root = root
    return config


def cell_points(nb: nbformat.NotebookNode) -> dict[str, float]:
    """Points of each autograded test cell (grade, not an answer) of a source or release notebook."""
    points = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader") or {}
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            points[meta["grade_id"]] = float(meta["points"])
    return points


def _tampered(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``solution`` with every locked cell emptied, its points inflated and the last test cell deleted."""
    nb = copy.deepcopy(solution)
    tests = [c for c in nb.cells if (c.metadata.get("nbgrader") or {}).get("locked")]
    for cell in tests:
        if cell.cell_type == "code":
            cell.source = "pass"
        if "points" in cell.metadata.nbgrader:
            cell.metadata.nbgrader["points"] = 10 * float(cell.metadata.nbgrader["points"])
    graded_tests = [c for c in tests if c.metadata.nbgrader.get("grade")]
    if graded_tests:
        nb.cells.remove(graded_tests[-1])
    return nb


def _failure_from_log(result: dict) -> str:
    """The most useful line of a failed nbgrader run."""
    log = result.get("log", "") + "\n" + (result.get("error") or "")
    found = re.search(r"\w+: grading: (.*)", log)
    if found:
        return found.group(1).strip()
    errors = [
        line
        for line in log.splitlines()
        if line.strip()
        and "There was an error processing" not in line
        and "Please see" not in line
        and not line.startswith(("[INFO]", "[WARNING]", "[DEBUG]"))
    ]
    return errors[-1].strip() if errors else "autograde failed (no message)"


def _cell_scores(gb: Gradebook, assignment: str, notebook: str, student: str) -> dict[str, float]:
    """Score of each graded cell of one notebook of a submission; empty if it was not graded."""
    try:
        return {g.name: g.score for g in gb.find_submission_notebook(notebook, assignment, student).grades}
    except MissingEntry:
        return {}


def preflight_verdict(
    notebook: str, points: dict[str, float], scores: dict[str, dict[str, float]]
) -> tuple[list[str], str]:
    """What is wrong with the preflight copies' ``scores`` (student -> cell -> score) given the
    test cells' ``points``; and a one-line summary."""
    problems = []
    for cell, maximum in points.items():
        got = {student: scores[student].get(cell) for student in PREFLIGHT_STUDENTS}
        if got["preflight-solution"] != maximum:
            problems.append(f"{notebook}/{cell}: the solution scores {got['preflight-solution']} of {maximum}")
        if got["preflight-blank"] != 0:
            problems.append(
                f"{notebook}/{cell}: the blank exercise scores {got['preflight-blank']} "
                f"(a test that passes on the stub)"
            )
        if got["preflight-tampered"] != maximum:
            problems.append(
                f"{notebook}/{cell}: a tampered solution scores {got['preflight-tampered']} of "
                f"{maximum} (tests or points were not restored)"
            )
    total = sum(points.values())
    summary = ", ".join(
        f"{student.removeprefix('preflight-')} {sum(scores[student].get(cell) or 0 for cell in points)}/{total}"
        for student in PREFLIGHT_STUDENTS
    )
    return problems, f"{notebook}: {summary}"


def scratch_config(config: Config, scratch: str, *, gradebook: bool = True, hidden: list[str] = ()) -> Config:
    """``config`` grading into the directory ``scratch``: its submitted, autograded and feedback
    directories there and, with ``gradebook``, the gradebook ``scratch/gradebook.db`` (the caller
    puts it there); the kernels are kept from seeing ``hidden`` too."""
    config = copy.deepcopy(config)
    for step in ("submitted", "autograded", "feedback"):
        setattr(config.CourseDirectory, f"{step}_directory", os.path.join(scratch, step))
    if gradebook:
        config.CourseDirectory.db_url = f"sqlite:///{os.path.join(scratch, 'gradebook.db')}"
    if hidden:
        already = config.SandboxedExecute.get("hidden_paths", [])
        if isinstance(already, LazyConfigValue):
            already = already.get_value([])
        config.SandboxedExecute.hidden_paths = [*already, *hidden]
    return config


@dataclass
class PreflightResult:
    ok: bool
    lines: list[str] = field(default_factory=list)


@dataclass
class Attempt:
    """One autograde run of one submission, whose report is not written yet (:meth:`Course.record`).

    ``notes`` are informational, ``problems`` and ``review`` flag the submission, ``failure``
    says why it was not graded; ``seconds`` is how long grading took; ``originals`` holds the
    bytes of each notebook (by file name) as submitted, before its JSON was repaired."""

    student: str
    succeeded: bool
    failure: str | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)
    seconds: float = 0.0
    originals: dict[str, bytes] = field(default_factory=dict)


class Course:
    """A course directory and its nbgrader configuration (``nbgrader_config.py``)."""

    def __init__(self, root: str = ".", config: Config | None = None):
        # nbgrader runs its environment's `alembic` command: the environment's scripts must be on PATH.
        scripts = os.path.dirname(sys.executable)
        if scripts not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = os.pathsep.join(filter(None, [scripts, os.environ.get("PATH")]))
        # Kernels started outside the sandbox (validate) import grading.checks too.
        if grading_package_root() not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
            os.environ["PYTHONPATH"] = os.pathsep.join(
                filter(None, [grading_package_root(), os.environ.get("PYTHONPATH")])
            )
        self.root = os.path.abspath(root)
        self.config = config if config is not None else load_config(self.root)
        self.api = NbGraderAPI(config=self.config)
        self.coursedir: CourseDirectory = self.api.coursedir

    def _directory(self, step: str, student: str, assignment: str) -> str:
        return self.coursedir.format_path(step, student, assignment)

    def notebook_names(self, assignment: str) -> list[str]:
        source = self._directory(self.coursedir.source_directory, ".", assignment)
        return sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(source, "*.ipynb")))

    def submitted_students(self, assignment: str) -> list[str]:
        pattern = self._directory(self.coursedir.submitted_directory, "*", assignment)
        return sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(pattern) if os.path.isdir(p))

    # -- release -------------------------------------------------------------------------------
    def release(self, assignment: str, duedate: str | None = None) -> list[str]:
        """Generate the exercises (student version) from the solutions and record the assignment
        (with its due date) in the gradebook; the paths of the released notebooks."""
        result = self.api.generate_assignment(assignment, force=True, create=True)
        if not result["success"]:
            raise StepFailed(f"release of {assignment} failed: {_failure_from_log(result)}")
        if duedate:
            with self.api.gradebook as gb:
                gb.update_or_create_assignment(assignment, duedate=duedate)
        paths = [release_notebook_path(self.coursedir, assignment, nb) for nb in self.notebook_names(assignment)]
        for path in paths:
            with open(path) as f:
                text = f.read()
            if "BEGIN SOLUTION" in text or "BEGIN HIDDEN TESTS" in text:
                raise StepFailed(f"{path} still contains solutions or hidden tests")
        return paths

    # -- collect -------------------------------------------------------------------------------
    def collect(self, assignment: str, source: str) -> CollectResult:
        """Collect a batch of submissions (an LMS zip or tar, or a directory: a folder per student,
        STUDENT_NOTEBOOK.ipynb files, Moodle's folders, students' own archives) into ``submitted/``,
        trusting nothing in it (:mod:`grading.collect`, the code stock ``nbgrader zip_collect``
        runs here too). A zip or tar is first copied into ``downloaded/ASSIGNMENT/archive/``; a
        directory is read where it is, never following a link; both are unpacked into
        ``downloaded/ASSIGNMENT/extracted/``. Earlier collects of the students found are replaced."""
        if not os.path.exists(source):
            raise StepFailed(f"{source} does not exist")
        downloaded = os.path.join(self.root, "downloaded", assignment)
        archive, staging = os.path.join(downloaded, "archive"), os.path.join(downloaded, "extracted")
        for folder in (archive, staging):
            shutil.rmtree(folder, ignore_errors=True)
            make_folders(folder)
        source = os.path.realpath(source)  # the instructor's own path; nothing inside it is followed
        if os.path.isdir(source):
            sources = [source]
        else:
            with TreeWriter(archive) as writer, open_plain_file(source)[0] as batch:
                writer.write(os.path.basename(source), batch)
            sources = [os.path.join(archive, os.path.basename(source))]
        coursedir = CourseDirectory(config=self.config, assignment_id=assignment)
        try:
            return collect_batch(
                coursedir,
                assignment,
                sources,
                staging,
                SafeExtractor(config=self.config),
                SubmissionCollector(config=self.config),
                force=True,
                log=logging.getLogger("grading.collect"),
            )
        except CollectError as error:
            raise StepFailed(str(error)) from None

    # -- preflight -----------------------------------------------------------------------------
    def preflight(self, assignment: str) -> PreflightResult:
        """Grade the solutions (full marks expected), the blank exercise (no test may pass) and a
        tampered solution (tests emptied, points inflated, a test cell deleted: full marks and the
        original maximum expected) exactly as students will be graded, in a scratch gradebook
        (SQLite, whatever the course's ``db_url``) where the assignment is generated afresh from
        its source, as ``release`` records it. Where the solution loses points, it is also validated
        outside the sandbox, to tell broken code (fails there too) from a grading environment that breaks it."""
        names = self.notebook_names(assignment)
        if not names:
            return PreflightResult(False, [f"no notebooks in the source directory of {assignment}"])
        if not all(os.path.exists(release_notebook_path(self.coursedir, assignment, nb)) for nb in names):
            return PreflightResult(
                False, [f"{assignment} is not released: run `python -m grading release {assignment}` first"]
            )
        source_dir = self._directory(self.coursedir.source_directory, ".", assignment)
        solutions = {nb: nbformat.read(os.path.join(source_dir, nb + ".ipynb"), 4) for nb in names}
        releases = {nb: nbformat.read(release_notebook_path(self.coursedir, assignment, nb), 4) for nb in names}
        copies = {
            "preflight-solution": solutions,
            "preflight-blank": releases,
            "preflight-tampered": {nb: _tampered(solution) for nb, solution in solutions.items()},
        }
        problems, summaries, short = [], [], []
        with tempfile.TemporaryDirectory(prefix="grading-preflight-") as scratch:
            os.chmod(scratch, 0o711)  # a sandbox's unprivileged user must reach its submission inside
            config = scratch_config(self.config, scratch)
            config.CourseDirectory.release_directory = os.path.join(scratch, "release")  # never exercises/
            api = NbGraderAPI(config=config)
            generated = api.generate_assignment(assignment, force=True, create=True)
            if not generated["success"]:
                return PreflightResult(
                    False, [f"generating {assignment} for the preflight failed: {_failure_from_log(generated)}"]
                )
            for student, notebooks in copies.items():
                target = api.coursedir.format_path(api.coursedir.submitted_directory, student, assignment)
                os.makedirs(target)
                for nb, notebook in notebooks.items():
                    nbformat.write(notebook, os.path.join(target, nb + ".ipynb"))
                result = api.autograde(assignment, student, force=True, create=True)
                if not result["success"]:
                    problems.append(f"{student}: autograde failed: {_failure_from_log(result)}")
            with Gradebook(config.CourseDirectory.db_url, self.coursedir.course_id) as gb:
                for nb in names:
                    scores = {student: _cell_scores(gb, assignment, nb, student) for student in copies}
                    wrong, summary = preflight_verdict(nb, cell_points(solutions[nb]), scores)
                    problems += wrong
                    summaries.append(summary)
                    if any(line.startswith(f"{nb}/") and "the solution scores" in line for line in wrong):
                        short.append(nb)
        if short:
            validator = self.validator()
            validator.ignore_checksums = True
        for nb in short:
            failed = validator.validate(os.path.join(source_dir, nb + ".ipynb")).get("failed", [])
            problems.append(
                f"{nb}: outside the sandbox the solution "
                + (
                    f"fails {len(failed)} test cell(s) too: the code or the course's environment is broken"
                    if failed
                    else "passes: the grading environment (sandbox, limits, missing packages) breaks it"
                )
            )
        return PreflightResult(not problems, problems + summaries)

    # -- autograde -----------------------------------------------------------------------------
    def check_sandbox(self) -> bool:
        """True if kernels will be sandboxed; raises SandboxUnavailable if grading must stop."""
        return SandboxedExecute(config=self.config).use_sandbox()

    def autograde(self, assignment: str, students: list[str] | None = None, on_report=None) -> list[dict]:
        """Autograde each submission (all submitted ones by default), one by one; the reports, in
        order. (:func:`grading.parallel.autograde_in_parallel` gives the same, several at a time.)

        ``on_report(report)`` is called after each submission (progress output)."""
        self.check_sandbox()
        reports = []
        for student in dict.fromkeys(students or self.submitted_students(assignment)):
            reports.append(self.autograde_one(assignment, student))
            if on_report:
                on_report(reports[-1])
        return reports

    def autograde_one(self, assignment: str, student: str) -> dict:
        """Repair, audit and autograde one submission, and store its report. Whatever goes wrong
        with this submission fails it (with the reason), never the run."""
        try:
            attempt = self.grade(assignment, student)
        except SandboxUnavailable:
            raise
        except Exception as error:
            attempt = Attempt(student, succeeded=False, failure=f"grading error: {type(error).__name__}: {error}")
        return self.record(assignment, attempt)

    def forget_grading(self, assignment: str, student: str) -> None:
        """Remove what an earlier autograde left of a submission: its autograded notebooks and
        the automatic scores, comments and late penalties in the gradebook (grader's are kept)."""
        shutil.rmtree(self._directory(self.coursedir.autograded_directory, student, assignment), ignore_errors=True)
        with self.api.gradebook as gb:
            reset_automatic_results(gb, assignment, student)

    def grade(self, assignment: str, student: str) -> Attempt:
        """Repair, audit and autograde one submission (into the gradebook and the autograded
        directory); its report is left to :meth:`record`. An earlier grading of the submission is
        forgotten first, so that a run that fails leaves no grade behind."""
        start = time.monotonic()
        self.forget_grading(assignment, student)
        directory = self._directory(self.coursedir.submitted_directory, student, assignment)
        attempt = Attempt(student, succeeded=False)
        refusals = submission_refusals(directory, os.path.join(self.coursedir.root, self.coursedir.submitted_directory))
        if refusals:
            attempt.failure = f"refused, not graded: {'; '.join(refusals[:5])} (links and special files are never read)"
            attempt.seconds = round(time.monotonic() - start, 1)
            return attempt
        for path in sorted(glob.glob(os.path.join(directory, "*.ipynb"))):
            try:
                nb, repairs = read_submission(path)
            except UnreadableNotebook as error:
                attempt.failure = f"unreadable notebook: {error}"
                attempt.seconds = round(time.monotonic() - start, 1)
                return attempt
            if repairs:
                with open(path, "rb") as f:
                    attempt.originals[os.path.basename(path)] = f.read()
                nbformat.write(nb, path)
                attempt.notes += repairs
        result = self.api.autograde(assignment, student, force=True, create=True)
        for line in result.get("log", "").splitlines():
            if LOG_PREFIX in line:
                note = line.split(LOG_PREFIX, 1)[1]
                (attempt.problems if any(t in note for t in TAMPER_NOTES) else attempt.notes).append(note)
            elif REVIEW_PREFIX in line:
                attempt.review.append(line.split(REVIEW_PREFIX, 1)[1])
        attempt.succeeded = result["success"]
        attempt.failure = None if result["success"] else _failure_from_log(result)
        attempt.seconds = round(time.monotonic() - start, 1)
        return attempt

    def record(self, assignment: str, attempt: Attempt) -> dict:
        """Store the report of ``attempt`` (and the originals of repaired notebooks next to it),
        from what the gradebook and the autograded directory now hold; the report."""
        backups = os.path.join(
            os.path.dirname(report_path(self.coursedir, assignment, attempt.student)), attempt.student
        )
        for name, original in attempt.originals.items():
            os.makedirs(backups, exist_ok=True)
            with open(os.path.join(backups, name + ".original"), "wb") as f:
                f.write(original)
        if not attempt.succeeded:
            with self.api.gradebook as gb:  # so that the export lists the student, as failed
                gb.update_or_create_student(attempt.student)
        return grade_submission(
            self.coursedir,
            assignment,
            attempt.student,
            succeeded=attempt.succeeded,
            failure=attempt.failure,
            notes=attempt.notes,
            problems=attempt.problems,
            review=attempt.review,
            seconds=attempt.seconds,
        )

    # -- feedback ------------------------------------------------------------------------------
    def feedback(self, assignment: str, students: list[str] | None = None) -> list[FeedbackResult]:
        """HTML feedback for each graded submission (all but the failed ones by default), without
        hidden tests; a result per student. An output that showed hidden tests is removed from
        that student's feedback (a note says so); a rendered file that still shows some is
        removed, and that student's feedback fails; either way the next student is served."""
        if students is None:
            students = [
                s
                for s in self.submitted_students(assignment)
                if (read_report(self.coursedir, assignment, s) or {}).get("status") != "failed"
            ]
        return [self.feedback_one(assignment, student) for student in dict.fromkeys(students)]

    def feedback_one(self, assignment: str, student: str) -> FeedbackResult:
        """Generate one student's feedback (see :meth:`feedback`)."""
        result = FeedbackResult(student)
        try:
            run = self.api.generate_feedback(assignment, student, force=True)
        except Exception as error:  # one student's notebook must not stop the others
            run = {"success": False, "log": "", "error": f"{type(error).__name__}: {error}"}
        prefix = LOG_PREFIX + "feedback: "
        result.notes = [line.split(prefix, 1)[1] for line in run.get("log", "").splitlines() if prefix in line]
        if not run["success"]:
            result.failure = _failure_from_log(run)
            return result
        labels_shown = HideHiddenTests(config=self.config).show_hidden_labels
        graded = self._directory(self.coursedir.autograded_directory, student, assignment)
        for path in sorted(
            glob.glob(os.path.join(self._directory(self.coursedir.feedback_directory, student, assignment), "*.html"))
        ):
            notebook = os.path.join(graded, os.path.splitext(os.path.basename(path))[0] + ".ipynb")
            secret = HiddenText.of(nbformat.read(notebook, as_version=4), labels_shown=labels_shown)
            with open(path) as f:
                leaks = leaked_lines(f.read(), secret.lines + secret.strings)
            if leaks:
                os.remove(path)
                result.failure = (
                    f"{os.path.relpath(path, self.root)} showed hidden tests ({leaks[0]!r}); it was removed"
                )
            else:
                result.written.append(path)
        return result

    # -- export --------------------------------------------------------------------------------
    def export(self, to: str | None = None, assignments: list[str] | None = None) -> str:
        """Write the grades CSV (with each submission's status and message); its path."""
        plugin = StatusCsvExportPlugin(parent=self.api, config=self.config)
        plugin.to = to or os.path.join(self.root, "grades.csv")
        plugin.assignment = list(assignments or [])
        with self.api.gradebook as gb:
            plugin.export(gb)
        return plugin.to

    # -- validate ------------------------------------------------------------------------------
    def validate(self, path: str) -> Validation:
        """Run a notebook's tests with nbgrader's validator and the witness check that autograde
        adds (not sandboxed: for trusted notebooks); the verdict per test cell, with the failing
        check's label and message, the automatic score and the points graded by hand."""
        validator = self.validator()
        nb = nbformat.read(path, as_version=4)
        changed = changed_cells(nb)
        resources = {}
        with (
            chdir(os.path.dirname(os.path.abspath(path))),
            setenv(NBGRADER_VALIDATING="1", NBGRADER_EXECUTION="validate"),
        ):
            for step in [*validator.preprocessors, RequireCheckWitnesses]:
                nb, resources = step(parent=validator).preprocess(nb, resources)
        return validation_of(nb, path, changed)

    def validator(self) -> Validator:
        """nbgrader's validator, forgiving stderr noise as autograde does. Its kernels talk over
        IPC sockets, as the grader's do (no TCP port, so no warning about unencrypted traffic)."""
        config = copy.deepcopy(self.config)
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = os.path.join(tempfile.gettempdir(), f"grading-validate-{uuid.uuid4().hex[:12]}")
        validator = Validator(config=config)
        validator.preprocessors = [*validator.preprocessors, IgnorePattern]
        return validator
