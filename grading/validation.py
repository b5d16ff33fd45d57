"""What ``python -m grading validate`` tells about a notebook whose tests were run.

For each autograded test cell: passed or failed, its points, and the failing check's
label and message (or the error that stopped the cell); then the automatic score and
the points graded by hand. Validation is for trusted notebooks (an instructor's, or a
student's own): it shows everything, hidden tests included where the notebook has them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import nbformat
from nbgrader import utils

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MESSAGE_CHARS = 400


@dataclass
class TestCellResult:
    grade_id: str
    points: float
    score: float
    message: str = ""  # why it failed; empty when it passed

    @property
    def passed(self) -> bool:
        return self.score >= self.points


@dataclass
class Validation:
    """The verdict on one executed notebook."""

    path: str
    cells: list[TestCellResult] = field(default_factory=list)
    manual_points: float = 0.0
    unanswered: list[str] = field(default_factory=list)  # answers graded by hand, left as released
    changed: list[str] = field(default_factory=list)  # locked cells edited, or cells of another type

    @property
    def score(self) -> float:
        return sum(cell.score for cell in self.cells)

    @property
    def max_score(self) -> float:
        return sum(cell.points for cell in self.cells)

    @property
    def passed(self) -> bool:
        return not self.changed and not self.unanswered and all(cell.passed for cell in self.cells)

    def lines(self) -> list[str]:
        """The report, one line per test cell, then the score."""
        failed = [cell for cell in self.cells if not cell.passed]
        problems = [f"FAILED {len(failed)} of {len(self.cells)} test cells"] if failed else []
        problems += [f"{len(self.unanswered)} answer(s) not written"] if self.unanswered else []
        problems += [f"{len(self.changed)} cell(s) changed"] if self.changed else []
        lines = [f"{self.path}: {'; '.join(problems) or 'passed'}"]
        lines += [f"  changed: {what}" for what in self.changed]
        lines += [f"  not answered: {what} (graded by hand)" for what in self.unanswered]
        width = max((len(cell.grade_id) for cell in self.cells), default=0)
        for cell in self.cells:
            verdict = "passed" if cell.passed else "FAILED"
            line = f"  {cell.grade_id:<{width}}  {verdict}  {cell.score:g}/{cell.points:g}"
            lines.append(line + (f"  {cell.message}" if cell.message else ""))
        manual = f"; {self.manual_points:g} point(s) graded by hand" if self.manual_points else ""
        lines.append(f"  automatic score {self.score:g}/{self.max_score:g}{manual}")
        return lines


def one_line(text: str, limit: int = MESSAGE_CHARS) -> str:
    text = " ".join(ANSI.sub("", text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_message(cell: nbformat.NotebookNode) -> str:
    """Why a test cell lost points: its error (a check's is ``label: message``) or its stderr."""
    for output in cell.outputs:
        if output.output_type == "error":
            ename, evalue = output.get("ename", "Error"), output.get("evalue", "")
            return one_line(f"{ename}: {evalue}" if evalue else ename)
        if output.output_type == "stream" and output.name == "stderr":
            return "wrote to stderr: " + one_line(output.text)
    return "partial credit"


def changed_cells(nb: nbformat.NotebookNode) -> list[str]:
    """Graded or locked cells whose type changed, and locked cells whose checksum changed."""
    changed = []
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader") or {}
        name = f"cell {index}" + (f" ('{meta['grade_id']}')" if meta.get("grade_id") else "")
        if meta.get("cell_type") and meta["cell_type"] != cell.cell_type:
            changed.append(f"{name} is {cell.cell_type}, was {meta['cell_type']}")
        elif utils.is_locked(cell) and "checksum" in meta and meta["checksum"] != utils.compute_checksum(cell):
            changed.append(f"{name} is locked and was edited")
    return changed


def validation_of(nb: nbformat.NotebookNode, path: str, changed: list[str] = ()) -> Validation:
    """The verdict on ``nb`` (executed, with its test cells' outputs)."""
    result = Validation(path, changed=list(changed))
    for cell in nb.cells:
        if not utils.is_grade(cell):
            continue
        meta = cell.metadata.nbgrader
        points = float(meta.get("points", 0))
        if utils.is_solution(cell) or cell.cell_type != "code":
            result.manual_points += points
            if utils.determine_grade(cell)[0] == 0:  # unchanged since the release: no answer
                result.unanswered.append(meta.get("grade_id", "?"))
            continue
        score, _ = utils.determine_grade(cell)
        score = float(score or 0)
        message = "" if score >= points else failure_message(cell)
        result.cells.append(TestCellResult(meta.get("grade_id", "?"), points, score, message))
    return result
