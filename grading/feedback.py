"""Feedback for students that tells what failed, without the hidden tests.

nbgrader's feedback shows the autograded notebook, hidden tests included (nbgrader
issues #917, #1363). :class:`HideHiddenTests`, a step of ``GenerateFeedback``, removes
the hidden part of each test cell and rebuilds that cell's outputs from what the checks
reported: each passing visible check's witness (``✓ label``), a failed visible check's label
and message (``pixels stay in [0, 1]: 3 of 784 values outside ...``) with the test line that
raised, and for a hidden check a neutral line (``✓ a hidden check passed``, ``a hidden test
failed``), naming the hidden check by its label only where the instructor allows it
(``HideHiddenTests.show_hidden_labels``) and the label is spelled out in the hidden code. A
witness says which line of the cell called its check (without that line, its label must be
one the visible part spells out); a traceback's first frame says which line raised; whatever
cannot be placed counts as hidden. Any other output of the cell is left out (it could print
hidden inputs).

Then every output of the notebook is checked for what only the hidden tests contain
(:class:`HiddenText`: their lines, and their string literals such as labels, that occur
nowhere visible, the student's own cells included): an output that shows some is replaced
by a note, and the feedback goes on. :func:`leaked_lines` double-checks a rendered file.
"""

from __future__ import annotations

import ast
import html
import re
from dataclasses import dataclass, field

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Unicode

from .checks import WITNESS_MIME
from .sanitize import LOG_PREFIX

BEGIN, END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
HIDDEN_NOTE = "# (hidden tests are not shown)"
HIDDEN_FAILED = "a hidden test failed (details of hidden tests are not shown)"
LEAK_NOTE = "[output removed from the feedback: it showed part of the hidden tests]\n"
# Errors the grader itself adds to a cell: their messages name no test input.
GRADER_ERRORS = {"GradingError", "CellTimeoutError", "DeadKernelError"}
# Shorter lines and strings of hidden tests are not looked for (they occur anywhere by chance).
MIN_LEAK_CHARS = 8
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# IPython's name for the frame of a cell: "Cell In[5], line 3" (8.x-9.x), "Input In [5], in <cell line: 3>".
CELL_FRAME = re.compile(r"(?:Cell|Input) In ?\[(\d+)\], (?:line (\d+)|in <cell line: (\d+)>)")


def strip_hidden(source: str, begin: str = BEGIN, end: str = END) -> tuple[str, list[str]]:
    """``source`` without its hidden-test blocks (markers included), and the removed lines."""
    kept, hidden, inside = [], [], False
    for line in source.splitlines():
        if begin in line:
            inside = True
            kept.append(HIDDEN_NOTE)
        elif end in line:
            inside = False
        elif inside:
            hidden.append(line)
        else:
            kept.append(line)
    return "\n".join(kept), hidden


def hidden_line_numbers(source: str, begin: str = BEGIN, end: str = END) -> set[int]:
    """Line numbers (from 1) of ``source``'s hidden blocks, their markers included."""
    numbers, inside = set(), False
    for number, line in enumerate(source.splitlines(), start=1):
        if begin in line:
            inside = True
        if inside:
            numbers.add(number)
        if end in line:
            inside = False
    return numbers


def _parse(source: str) -> ast.Module | None:
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def check_labels(source: str) -> list[tuple[int, int, str]]:
    """``(first line, last line, label)`` of each call in ``source`` with a literal ``label=``."""
    tree = _parse(source)
    if tree is None:
        return []
    return [
        (node.lineno, node.end_lineno or node.lineno, keyword.value.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg == "label" and isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str)
    ]


def string_literals(source: str) -> set[tuple[int, str]]:
    """``(line, text)`` of each string literal in ``source``."""
    tree = _parse(source)
    if tree is None:
        return set()
    return {(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def failing_line(traceback: list[str], execution_count: int | None) -> int | None:
    """The line of the cell (run as ``execution_count``) where its error was raised, from
    IPython's traceback (the cell's own frame comes first); None if it does not say."""
    for entry in traceback:
        found = CELL_FRAME.search(ANSI.sub("", entry))
        if found:
            if execution_count is not None and int(found.group(1)) != execution_count:
                return None
            return int(found.group(2) or found.group(3))
    return None


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def output_text(output) -> str:
    """Everything an output shows as text (HTML without its tags, entities decoded; no ANSI)."""
    parts = [output.get("text", ""), output.get("ename", ""), output.get("evalue", "")]
    parts += output.get("traceback", [])
    for mime, value in output.get("data", {}).items():
        if isinstance(value, str) and not mime.startswith("image/"):
            parts.append(value)
            if "html" in mime:
                parts.append(html.unescape(re.sub(r"<[^>]*>", "", value)))
        elif isinstance(value, dict):
            parts += [str(v) for v in value.values()]
    return ANSI.sub("", "\n".join(str(p) for p in parts))


def _is_test_cell(cell) -> bool:
    meta = cell.metadata.get("nbgrader") or {}
    return cell.cell_type == "code" and bool(meta.get("locked")) and not meta.get("solution")


@dataclass
class HiddenText:
    """What only the hidden tests of a notebook contain: their lines and string literals that
    occur nowhere visible (any cell's visible part, the student's own cells included), each
    with whitespace removed; labels are left out when they may be shown."""

    lines: list[str]
    strings: list[str]

    @classmethod
    def of(cls, nb, begin: str = BEGIN, end: str = END, *, labels_shown: bool = False) -> HiddenText:
        lines, strings, visible = set(), set(), []
        for cell in nb.cells:
            if not (_is_test_cell(cell) and begin in cell.source):
                visible.append(cell.source)
                continue
            shown, removed = strip_hidden(cell.source, begin, end)
            visible.append(shown)
            lines |= {_squeeze(line) for line in removed if not line.strip().startswith("#")}
            hidden = hidden_line_numbers(cell.source, begin, end)
            strings |= {_squeeze(text) for number, text in string_literals(cell.source) if number in hidden}
            if labels_shown:
                strings -= {_squeeze(label) for first, _, label in check_labels(cell.source) if first in hidden}
        seen = _squeeze("\n".join(visible))
        return cls(
            lines=sorted(s for s in lines if len(s) >= MIN_LEAK_CHARS and s not in seen),
            strings=sorted(s for s in strings if len(s) >= MIN_LEAK_CHARS and s not in seen),
        )

    def found_in(self, text: str) -> list[str]:
        squeezed = _squeeze(text)
        return [item for item in self.lines + self.strings if item in squeezed]


@dataclass
class FeedbackResult:
    """One student's feedback: the files written, notes on outputs it left out, why it failed."""

    student: str
    written: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failure: str | None = None


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback steps: test cells without their hidden part, outputs rebuilt from what the
    checks reported, and no output that shows hidden tests (see the module's docstring)."""

    begin_marker = Unicode(BEGIN).tag(config=True)
    end_marker = Unicode(END).tag(config=True)
    show_hidden_labels = Bool(
        False,
        help="Name hidden checks by their labels in feedback ('hidden check \"...\" failed'); their "
        "inputs and expected values are never shown.",
    ).tag(config=True)

    def preprocess(self, nb, resources):
        secret = HiddenText.of(nb, self.begin_marker, self.end_marker, labels_shown=self.show_hidden_labels)
        for cell in nb.cells:
            if cell.cell_type == "code" and self.begin_marker in cell.source:
                self.rebuild_test_cell(cell)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            outputs = []
            for output in cell.outputs:
                leaks = secret.found_in(output_text(output))
                if leaks:
                    grade_id = (cell.metadata.get("nbgrader") or {}).get("grade_id")
                    where = f"cell {index}" + (f" ('{grade_id}')" if grade_id else "")
                    self.log.warning(
                        "%sfeedback: an output of %s showed hidden tests (%r): removed", LOG_PREFIX, where, leaks[0]
                    )
                    output = new_output("stream", name="stdout", text=LEAK_NOTE)
                outputs.append(output)
            cell.outputs = outputs
        return nb, resources

    def rebuild_test_cell(self, cell) -> None:
        source = cell.source
        hidden_lines = hidden_line_numbers(source, self.begin_marker, self.end_marker)
        calls = check_labels(source)
        visible_labels = {label for first, _, label in calls if first not in hidden_lines}
        hidden_labels = {label for first, _, label in calls if first in hidden_lines} - visible_labels
        outputs, hidden_passed, left_out, failed = [], 0, 0, False

        def flush_hidden():
            nonlocal hidden_passed
            if hidden_passed:
                what = "a hidden check" if hidden_passed == 1 else f"{hidden_passed} hidden checks"
                outputs.append(_line(f"\u2713 {what} passed"))
                hidden_passed = 0

        for output in cell.outputs:
            data = output.get("data", {}) if output.output_type == "display_data" else {}
            witness = data.get(WITNESS_MIME)
            if isinstance(witness, dict):
                label, line = str(witness.get("label", "")), witness.get("line")
                visible = line not in hidden_lines if isinstance(line, int) else label in visible_labels
                if visible:
                    flush_hidden()
                    outputs.append(_line(f"\u2713 {label}"))
                elif self.show_hidden_labels and label in hidden_labels:
                    flush_hidden()
                    outputs.append(_line(f"\u2713 {label} (hidden check)"))
                else:
                    hidden_passed += 1
            elif output.output_type == "error" and not failed:
                flush_hidden()
                failed = True
                outputs.append(self.verdict(output, source, hidden_lines, calls, cell.get("execution_count")))
            else:
                left_out += 1
        flush_hidden()
        if not failed:
            outputs.append(new_output("stream", name="stdout", text="All tests of this cell passed.\n"))
        if left_out:
            outputs.append(
                _line(f"({left_out} other output(s) of this cell are not shown: they could reveal hidden tests)")
            )
        cell.source = strip_hidden(source, self.begin_marker, self.end_marker)[0]
        cell.outputs = outputs

    def verdict(self, error, source: str, hidden_lines: set[int], calls, execution_count):
        """The error output feedback shows for a failed test cell."""
        ename, evalue = str(error.get("ename", "Error")), str(error.get("evalue", ""))
        lines = source.splitlines()
        line = failing_line(error.get("traceback", []), execution_count)
        if ename in GRADER_ERRORS:
            shown = [f"{ename}: {evalue}"]
        elif line is not None and 1 <= line <= len(lines) and line not in hidden_lines:
            shown = [
                f"{ename}: {evalue}" if evalue else ename,
                f"raised by this line of the tests: {lines[line - 1].strip()}",
            ]
        else:
            labels = {label for first, last, label in calls if line is not None and first <= line <= last}
            labels &= {label for first, _, label in calls if first in hidden_lines}
            if self.show_hidden_labels and len(labels) == 1:
                shown = [f"{ename}: hidden check '{labels.pop()}' failed (details of hidden tests are not shown)"]
            else:
                shown = [f"{ename}: {HIDDEN_FAILED}"]
            evalue = "details not shown"
        return new_output("error", ename=ename, evalue=evalue, traceback=shown)


def _line(text: str):
    return new_output("display_data", data={"text/plain": text})


def leaked_lines(rendered_html: str, hidden: list[str]) -> list[str]:
    """The ``hidden`` lines or strings that appear in ``rendered_html`` (tags and spacing ignored)."""
    text = _squeeze(html.unescape(re.sub(r"<[^>]+>", "", rendered_html)))
    return [line for line in hidden if line.strip() and not line.strip().startswith("#") and _squeeze(line) in text]
