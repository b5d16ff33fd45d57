"""The instructor's whole workflow on every real notebook: release, collect, autograde, feedback, export.

One scratch course holds all six assignments, released from the solutions. For each, three
students hand in through an LMS zip (``download/STUDENT/NOTEBOOK.ipynb``): ``perfect`` (the
released notebook with every answer cell written as the solution writes it), ``blank`` (the
released notebook as it is) and ``partly_wrong`` (perfect but for one plausible mistake,
``MISTAKES``). The course's commands then run as an instructor runs them: ``collect``,
``autograde`` with a process pool of two, ``feedback``, ``validate`` on the partly wrong
notebook, and one ``export`` at the end (autograde's preflight is left out: the perfect and blank
students grade what it grades, and ``test_workflow.py`` shows it refusing broken solutions).
The oracles, none of them read from the grader's own code:

- the export: ``perfect`` has every automatic point, ``blank`` none, ``partly_wrong`` some but
  not all; every status is ``graded``;
- the feedback exists for every student; every check that failed in a test cell's *visible*
  part shows its label and message there; no line that only the hidden tests hold (a line of a
  ``BEGIN HIDDEN TESTS`` region found nowhere in the released notebook) appears in any feedback;
- ``validate`` on the partly wrong notebook names each failed test cell with its points and the
  failing check's label, then the automatic score, which matches the autograder's.

Notebooks run on the CPU, one thread each, at small experiment sizes (``SMALL``: the notebooks'
own parameters; the graded tests do not depend on them). Grading runs one assignment at a time
with two workers.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from course_tools import ROOT, course_base, grading, requires_sandbox

pytestmark = pytest.mark.slow
NAMES = sorted(path.stem for path in ROOT.glob("solutions/*/*.ipynb"))
STUDENTS = ("perfect", "blank", "partly_wrong")
# Experiment sizes (the notebooks' parameters) that keep every graded test meaningful.
SMALL = {
    "01_gradient_saliency": {"PRACTICUM_N_IMAGES": "32"},
    "02_smoothgrad": {"PRACTICUM_N_IMAGES": "16"},
    "03_pgd_attacks": {"PRACTICUM_N_IMAGES": "32", "PRACTICUM_STEPS": "3"},
    "04_nonrobust_features": {"PRACTICUM_N_IMAGES": "200", "PRACTICUM_STEPS": "3", "PRACTICUM_EPOCHS": "1"},
    "05_robust_models": {
        "PRACTICUM_N_IMAGES": "32",
        "PRACTICUM_STEPS": "3",
        "PRACTICUM_EPOCHS": "1",
        "PRACTICUM_N_TRAIN": "500",
    },
    "06_feature_visualization": {"PRACTICUM_N_IMAGES": "200", "PRACTICUM_STEPS": "20"},
}
# One plausible mistake per notebook: (answer cell, text of its solution, what the student wrote).
MISTAKES = {
    "01_gradient_saliency": (
        "input_gradient",
        "model(x).gather(1, target.view(-1, 1))",
        "model(x).softmax(dim=1).gather(1, target.view(-1, 1))",
    ),
    "02_smoothgrad": ("smoothgrad", "grads.view(n, *x.shape).mean(dim=0)", "grads.view(n, *x.shape).sum(dim=0)"),
    "03_pgd_attacks": (
        "pgd",
        "x_adv = (x + project(x_adv - x, eps, norm)).clamp(0, 1)",
        "x_adv = x + project(x_adv - x, eps, norm)",
    ),
    "04_nonrobust_features": ("targets", "return (y + 1) % num_classes", "return y + 1"),
    "05_robust_models": ("linear_worst_margin", "worst = margins - eps * dual", "worst = margins + eps * dual"),
    "06_feature_visualization": ("top_activating", "activation.topk(k)", "activation.topk(k, largest=False)"),
}
CONFIG = """import sys
sys.path.insert(0, {root!r})
from grading.config import configure

c = get_config()
configure(c, {course!r})
"""
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
LABEL = re.compile(r"""label\s*=\s*(["'])(.+?)\1""")


@dataclass
class Run:
    """What the commands printed for one assignment."""

    commands: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)

    def output(self, command: str) -> str:
        result = self.commands[command]
        return f"$ {command} (exit {result.returncode})\n{result.stdout}\n{result.stderr}"


def grade_id(cell) -> str | None:
    return (cell.metadata.get("nbgrader") or {}).get("grade_id")


def is_test_cell(cell) -> bool:
    meta = cell.metadata.get("nbgrader") or {}
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def answered(release: nbformat.NotebookNode, solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The released notebook with each answer cell's source as the solution writes it."""
    answers = {
        grade_id(cell): cell.source for cell in solution.cells if (cell.metadata.get("nbgrader") or {}).get("solution")
    }
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    for cell in nb.cells:
        if grade_id(cell) in answers and (cell.metadata.get("nbgrader") or {}).get("solution"):
            cell.source = answers[grade_id(cell)]
    return nb


def with_mistake(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    cell_id, right, wrong = MISTAKES[name]
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    (cell,) = [cell for cell in nb.cells if grade_id(cell) == cell_id and cell.cell_type == "code"]
    head, marker, answer = cell.source.partition("### BEGIN SOLUTION")
    assert answer.count(right) == 1, f"{name}: the mistake no longer applies to {cell_id}"
    cell.source = head + marker + answer.replace(right, wrong)
    return nb


def lms_zip(course: Path, name: str, directory: Path) -> Path:
    """The three students' notebooks, as an LMS hands them out: download/STUDENT/NOTEBOOK.ipynb."""
    release = nbformat.read(course / "exercises" / name / f"{name}.ipynb", 4)
    perfect = answered(release, nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb", 4))
    notebooks = {"perfect": perfect, "blank": release, "partly_wrong": with_mistake(perfect, name)}
    archive = directory / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for student, nb in notebooks.items():
            z.writestr(f"download/{student}/{name}.ipynb", nbformat.writes(nb))
    return archive


def text_of(page: str) -> str:
    """An HTML page's text, whitespace squeezed (syntax highlighting splits lines into spans)."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())


def hidden_only_lines(course: Path, name: str) -> list[str]:
    """Lines of the solution's hidden tests that occur nowhere in the released notebook."""
    solution = (ROOT / "solutions" / name / f"{name}.ipynb").read_text()
    source = "".join(cell.source + "\n" for cell in nbformat.reads(solution, 4).cells)
    release = nbformat.read(course / "exercises" / name / f"{name}.ipynb", 4)
    visible = {line.strip() for cell in release.cells for line in cell.source.splitlines()}
    hidden = {line.strip() for block in HIDDEN.findall(source) for line in block.splitlines()}
    return sorted(line for line in hidden - visible if len(line) >= 12 and not line.startswith("#"))


def failed_checks(course: Path, name: str, student: str) -> list[tuple[str, str, bool]]:
    """(label, message, visible) of each check that failed in a test cell of the graded notebook,
    its label one written literally in the solution's test cell; visible when the label stands in
    the released version of that cell."""
    graded = nbformat.read(course / "autograded" / student / name / f"{name}.ipynb", 4)
    release = nbformat.read(course / "exercises" / name / f"{name}.ipynb", 4)
    solution = nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb", 4)

    def labels(nb) -> dict[str, set[str]]:
        return {grade_id(c): {m[1] for m in LABEL.findall(c.source)} for c in nb.cells if is_test_cell(c)}

    shown, written = labels(release), labels(solution)
    failed = []
    for cell in graded.cells:
        if not is_test_cell(cell):
            continue
        for output in cell.outputs:
            if output.output_type != "error" or output.ename != "AssertionError":
                continue
            known = [label for label in written.get(grade_id(cell), ()) if output.evalue.startswith(f"{label}: ")]
            if known:
                label = max(known, key=len)
                message = output.evalue[len(label) + 2 :]
                failed.append((label, message, label in shown.get(grade_id(cell), ())))
    return failed


def command(course: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m grading`` in ``course`` for notebook ``name``: on the CPU, one thread, its small sizes."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PRACTICUM_")}
    env.update(PRACTICUM_DEVICE="cpu", OMP_NUM_THREADS="1", **SMALL[name])
    return grading(course, *args, env=env, timeout=1500)


@pytest.fixture(scope="module")
def course_runs():
    """Every assignment through the workflow; the export at the end."""
    requires_sandbox()
    course = Path(tempfile.mkdtemp(prefix="grading-workflow-", dir=course_base()))
    course.chmod(0o755)
    uploads = course.parent / f"{course.name}-uploads"
    uploads.mkdir()
    try:
        shutil.copytree(ROOT / "solutions", course / "solutions")
        (course / "nbgrader_config.py").write_text(CONFIG.format(root=str(ROOT), course=str(course)))
        runs = {name: Run() for name in NAMES}
        for name in NAMES:
            run = runs[name].commands
            run["release"] = command(course, name, "release", name)
            if run["release"].returncode != 0:
                continue
            run["collect"] = command(course, name, "collect", name, str(lms_zip(course, name, uploads)))
            if run["collect"].returncode == 0:
                submitted = course / "submitted" / "partly_wrong" / name / f"{name}.ipynb"
                with ThreadPoolExecutor(1) as background:  # on the core that the pool leaves idle at its end
                    validated = background.submit(command, course, name, "validate", str(submitted))
                    run["autograde"] = command(course, name, "autograde", name, "--skip-preflight", "--workers", "2")
                    run["feedback"] = command(course, name, "feedback", name)
                    run["validate"] = validated.result()
        export = grading(course, "export", "--to", str(course / "grades.csv"))
        assert export.returncode == 0, export.stdout + export.stderr
        with open(course / "grades.csv") as f:
            grades = {(row["assignment"], row["student_id"]): row for row in csv.DictReader(f)}
        yield course, runs, grades
    finally:
        shutil.rmtree(course, ignore_errors=True)
        shutil.rmtree(uploads, ignore_errors=True)


def points(name: str, manual: bool = False) -> float:
    """The points of the notebook's test cells, or (``manual``) of its answers graded by hand."""
    nb = nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb", 4)
    return sum(
        float(cell.metadata.nbgrader["points"])
        for cell in nb.cells
        if (cell.metadata.get("nbgrader") or {}).get("grade")
        and (is_test_cell(cell) if not manual else cell.metadata.nbgrader.get("solution"))
    )


@pytest.mark.parametrize("name", NAMES)
def test_collect_and_autograde(name, course_runs):
    course, runs, grades = course_runs
    run = runs[name]
    for step in ("release", "collect", "autograde"):
        assert step in run.commands and run.commands[step].returncode == 0, (
            run.output(step) if step in run.commands else ""
        )
    assert "collected 3 submission(s): blank, partly_wrong, perfect" in run.commands["collect"].stdout, run.output(
        "collect"
    )
    total = points(name)
    rows = {student: grades[(name, student)] for student in STUDENTS}
    assert {student: row["status"] for student, row in rows.items()} == dict.fromkeys(STUDENTS, "graded"), rows
    scores = {student: float(row["raw_score"]) for student, row in rows.items()}
    assert scores["perfect"] == total, rows["perfect"]  # every automatic point (written answers: graded by hand)
    assert scores["blank"] == 0, rows["blank"]
    assert 0 < scores["partly_wrong"] < total, scores


@pytest.mark.parametrize("name", NAMES)
def test_feedback_shows_failed_visible_checks_and_no_hidden_line(name, course_runs):
    course, runs, _ = course_runs
    run = runs[name]
    assert run.commands["feedback"].returncode == 0, run.output("feedback")
    pages = {}
    for student in STUDENTS:
        page = course / "feedback" / student / name / f"{name}.html"
        assert page.exists(), f"no feedback for {student}\n{run.output('feedback')}"
        pages[student] = text_of(page.read_text())
    failed = failed_checks(course, name, "partly_wrong")
    visible = [(label, message) for label, message, shown in failed if shown]
    assert visible, f"{name}: the mistake must fail a visible check (failed: {failed})"
    for label, message in visible:
        assert f"{label}: {' '.join(message.split())[:60]}" in pages["partly_wrong"], (label, message)
    for label, _, shown in failed:
        if not shown:
            assert label not in pages["partly_wrong"], f"a hidden check's label is shown: {label!r}"
    secret = hidden_only_lines(course, name)
    assert secret, f"{name} has no line that only its hidden tests hold"
    for student, text in pages.items():
        leaked = [line for line in secret if " ".join(line.split()) in text]
        assert not leaked, f"{student}'s feedback shows hidden tests: {leaked[:3]}"


@pytest.mark.parametrize("name", NAMES)
def test_validate_reports_each_failed_cell_and_the_score(name, course_runs):
    """A student validating the partly wrong notebook (which holds only the visible tests) is told
    which test cells failed, with their points and the failing visible check, and the score."""
    course, runs, grades = course_runs
    result = runs[name].commands["validate"]
    assert result.returncode == 1, runs[name].output("validate")
    lines = result.stdout.splitlines()
    failed_cells = [line for line in lines if re.match(r"^  \S+\s+FAILED  \d", line)]
    assert failed_cells, result.stdout
    for label, _, visible in failed_checks(course, name, "partly_wrong"):
        if visible:
            assert any(f"{label}: " in line for line in failed_cells), f"{label!r} not named:\n{result.stdout}"
    score = re.search(r"^  automatic score ([\d.]+)/([\d.]+)", result.stdout, re.M)
    assert score, result.stdout
    assert float(score[2]) == points(name), result.stdout
    by_hand = points(name, manual=True)
    assert (f"; {by_hand:g} point(s) graded by hand" in result.stdout) == (by_hand > 0), result.stdout
    # the hidden tests can only take points away
    assert float(grades[(name, "partly_wrong")]["raw_score"]) <= float(score[1]) < points(name), result.stdout
