"""Grade the catalog: apply each entry to its solution notebook and run nbgrader's validator.

An entry's notebook is the solution (``solutions/NN_topic/NN_topic.ipynb``) with the entry's
edits applied to one answer cell and every other cell as it is, hidden tests included. It is
executed and graded by nbgrader's validator with the course's configuration (outside the
sandbox: the code is ours), on the CPU with the notebooks' default parameters. A test cell
*fails* when it loses points; a mutant is *killed* when at least one test cell fails, an
alternative *keeps full marks* when none does.

Cells after the last graded test cell are not executed: nothing they do can change a grade.
A mutant is first graded through its own test cell (the first after its answer cell), and
through the last test cell only if it survives that: a test cell that fails in a prefix of the
notebook fails in the whole notebook, since the cells before it are the same.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import nbformat

from .catalog import WHOLE, Entry

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
# The notebooks' parameters (environment variables): graded runs use the defaults.
PARAMETERS = (
    "PRACTICUM_DATASET",
    "PRACTICUM_CIFAR_ROOT",
    "PRACTICUM_N_IMAGES",
    "PRACTICUM_STEPS",
    "PRACTICUM_EPOCHS",
    "PRACTICUM_N_TRAIN",
    "PRACTICUM_N_ROBUSTIFIED",
    "PRACTICUM_INVERSION_STEPS",
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
VALUES = re.compile(r" \(first at index|; expected |, got |: expected ")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*?:")


class StaleEntry(ValueError):
    """A catalog entry no longer applies to the current solution."""


@dataclass
class Outcome:
    """The grading of one entry: ``failed`` maps each test cell that lost points to the last line
    of its error; ``error`` is set when grading itself broke (no verdict)."""

    entry: Entry
    seconds: float
    failed: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def killed(self) -> bool:
        return self.error is None and bool(self.failed)

    @property
    def full_marks(self) -> bool:
        return self.error is None and not self.failed


def solution_path(notebook: str) -> Path:
    return ROOT / "solutions" / notebook / f"{notebook}.ipynb"


def grade_id(cell) -> str | None:
    return (cell.metadata.get("nbgrader") or {}).get("grade_id")


def is_test_cell(cell) -> bool:
    """A graded code cell that is not an answer: an autograded test."""
    meta = cell.metadata.get("nbgrader") or {}
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def edit_solution(source: str, edits: tuple[tuple[str, str], ...], where: str) -> str:
    """``source`` (an answer cell) with ``edits`` applied to its solution regions: each ``old``
    must occur exactly once in them, ``WHOLE`` needs a cell with a single region."""
    pieces = re.split(f"({re.escape(BEGIN)}|{re.escape(END)})", source)
    # pieces: text, BEGIN, body, END, text, ...; the solution bodies sit at 2, 6, 10, ...
    bodies = list(range(2, len(pieces), 4))
    if not bodies or pieces[1::4] != [BEGIN] * len(bodies) or pieces[3::4] != [END] * len(bodies):
        raise StaleEntry(f"{where}: the cell's {BEGIN} ... {END} markers do not pair up")
    for old, new in edits:
        if old == WHOLE:
            if len(bodies) != 1:
                raise StaleEntry(f"{where}: the whole solution of a cell with {len(bodies)} solution regions")
            before = pieces[0]
            indent = before[len(before.rstrip(" ")) :]  # the markers' indentation
            pieces[2] = "\n" + textwrap.indent(new, indent, lambda line: line.strip() != "") + "\n" + indent
            continue
        found = [index for index in bodies if old in pieces[index]]
        count = sum(pieces[index].count(old) for index in bodies)
        if count != 1:
            raise StaleEntry(f"{where}: {old!r} occurs {count} times in the solution (expected once)")
        pieces[found[0]] = pieces[found[0]].replace(old, new)
    return "".join(pieces)


def apply(entry: Entry, nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of the solution notebook ``nb`` with ``entry``'s edits made to its answer cell."""
    nb = copy.deepcopy(nb)
    cells = [cell for cell in nb.cells if grade_id(cell) == entry.cell and cell.cell_type == "code"]
    if len(cells) != 1 or not (cells[0].metadata.nbgrader.get("solution")):
        raise StaleEntry(f"{entry.name}: {entry.notebook} has no answer cell {entry.cell!r}")
    cells[0].source = edit_solution(cells[0].source, entry.edits, f"{entry.name} ({entry.notebook}/{entry.cell})")
    return nb


def entry_source(entry: Entry) -> str:
    """The source of ``entry``'s answer cell with its edits made."""
    nb = apply(entry, nbformat.read(solution_path(entry.notebook), as_version=4))
    return next(cell.source for cell in nb.cells if grade_id(cell) == entry.cell and cell.cell_type == "code")


def through(nb: nbformat.NotebookNode, last_test: str | None = None) -> nbformat.NotebookNode:
    """``nb`` up to its test cell ``last_test`` (default: its last test cell), later cells dropped."""
    tests = [
        index
        for index, cell in enumerate(nb.cells)
        if is_test_cell(cell) and (last_test is None or grade_id(cell) == last_test)
    ]
    if not tests:
        raise StaleEntry(f"no test cell {last_test!r}")
    nb = copy.deepcopy(nb)
    nb.cells = nb.cells[: tests[-1] + 1]
    return nb


def set_kernel_environment() -> None:
    """Kernels started from this (worker) process: CPU, one thread, the notebooks' default
    parameters."""
    for key in PARAMETERS:
        os.environ.pop(key, None)
    os.environ["PRACTICUM_DEVICE"] = "cpu"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def with_cell(notebook: str, cell_id: str, source: str) -> nbformat.NotebookNode:
    """The solution of ``notebook`` with answer cell ``cell_id``'s source replaced by ``source``."""
    nb = nbformat.read(solution_path(notebook), as_version=4)
    cells = [cell for cell in nb.cells if grade_id(cell) == cell_id and cell.cell_type == "code"]
    if len(cells) != 1 or not cells[0].metadata.nbgrader.get("solution"):
        raise StaleEntry(f"{notebook} has no answer cell {cell_id!r}")
    cells[0].source = source
    return nb


def validate(
    nb: nbformat.NotebookNode, notebook: str, last_test: str | None = None
) -> tuple[dict[str, str], str | None]:
    """Grade ``nb`` (a notebook of ``notebook``), executed through its test cell ``last_test``
    (default: its last test cell), with nbgrader's validator: ({test cell that lost points: the
    last line of its error}, None), or ({}, why grading itself broke)."""
    from grading.workflow import Course  # imported here: nbgrader is slow to import

    nb = through(nb, last_test)
    tests = {cell.source.strip(): grade_id(cell) for cell in nb.cells if is_test_cell(cell)}
    with tempfile.TemporaryDirectory(prefix="mutation-") as work:
        path = Path(work) / f"{notebook}.ipynb"
        nbformat.write(nb, path)
        validator = Course(str(ROOT)).validator()
        validator.ignore_checksums = True
        try:
            results = validator.validate(str(path))
        except Exception as error:  # noqa: BLE001 (a kernel that died or hung: no verdict)
            return {}, f"{type(error).__name__}: {error}"[:300]
    unexpected = sorted(set(results) - {"failed"})
    if unexpected:
        return {}, f"the validator reports {unexpected}"
    failed = {
        tests[item["source"]]: last_line(item.get("raw_error", ""))
        for item in results.get("failed", [])
        if item["source"] in tests
    }
    return failed, None


def grade(entry: Entry, last_test: str | None = None) -> Outcome:
    """Apply ``entry`` to its solution and grade the result with nbgrader's validator, executing
    the notebook through its test cell ``last_test`` (default: through its last test cell)."""
    started = time.perf_counter()
    failed, error = validate(
        apply(entry, nbformat.read(solution_path(entry.notebook), as_version=4)), entry.notebook, last_test
    )
    return Outcome(entry, time.perf_counter() - started, failed=failed, error=error)


def last_line(error: str) -> str:
    """The exception line of a traceback (a failed check names itself there), without the
    values it shows, shortened."""
    lines = [ANSI.sub("", line).strip() for line in error.splitlines()]
    raised = [line for line in lines if EXCEPTION_LINE.match(line)]
    line = (raised or [line for line in lines if line] or ["(no message)"])[-1]
    line = VALUES.split(line.removeprefix("AssertionError: "), 1)[0]
    return line if len(line) <= 120 else line[:119] + "\u2026"


def own_test(entry: Entry) -> str:
    """The first test cell after ``entry``'s answer cell: the one written for it."""
    nb = nbformat.read(solution_path(entry.notebook), as_version=4)
    answer = next(index for index, cell in enumerate(nb.cells) if grade_id(cell) == entry.cell)
    return next(grade_id(cell) for cell in nb.cells[answer:] if is_test_cell(cell))


def score_mutant(entry: Entry) -> Outcome:
    """Grade a mutant through its own test cell and, only if that one passes, through the last
    test cell: ``failed`` lists the test cells that lose points in the shortest run that kills it."""
    first = grade(entry, own_test(entry))
    if first.error is not None or first.failed:
        return first
    rest = grade(entry)
    rest.seconds += first.seconds
    return rest


def grade_all(mutants: list[Entry], alternatives: list[Entry], workers: int = 2, on_outcome=None) -> list[Outcome]:
    """Score ``mutants`` (:func:`score_mutant`) and grade ``alternatives`` through their last test
    cell, ``workers`` at a time; the outcomes, mutants first, each in the given order.
    ``on_outcome(outcome)`` is called as each one finishes."""
    jobs = [(grade, entry) for entry in alternatives] + [(score_mutant, entry) for entry in mutants]  # long ones first
    outcomes: dict[str, Outcome] = {}
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=set_kernel_environment
    ) as pool:
        futures = [pool.submit(function, entry) for function, entry in jobs]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes[outcome.entry.name] = outcome
            if on_outcome:
                on_outcome(outcome)
    return [outcomes[entry.name] for entry in [*mutants, *alternatives]]
