"""Feedback for students without the hidden tests.

nbgrader's feedback shows the autograded notebook, hidden tests included (nbgrader
issues #917, #1363). :class:`HideHiddenTests`, added to ``GenerateFeedback``'s
preprocessors, removes the hidden part of each test cell and replaces that cell's
outputs by a one-line verdict (a traceback or a check's message would show hidden
inputs and expected values). :func:`leaked_lines` double-checks a rendered file.
"""

from __future__ import annotations

import html
import re

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

BEGIN, END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
HIDDEN_NOTE = "# (hidden tests are not shown)"


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


class HideHiddenTests(NbGraderPreprocessor):
    """Remove hidden tests, and the outputs that could reveal them, from feedback."""

    begin_marker = Unicode(BEGIN).tag(config=True)
    end_marker = Unicode(END).tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or self.begin_marker not in cell.source:
            return cell, resources
        cell.source, _ = strip_hidden(cell.source, self.begin_marker, self.end_marker)
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if errors:
            verdict = f"{errors[0].ename}: a test failed (details of hidden tests are not shown)"
            cell.outputs = [new_output("error", ename=errors[0].ename, evalue="details not shown", traceback=[verdict])]
        else:
            cell.outputs = [new_output("stream", name="stdout", text="All tests of this cell passed.\n")]
        return cell, resources


def leaked_lines(rendered_html: str, hidden: list[str]) -> list[str]:
    """The hidden-test lines that appear in ``rendered_html`` (tags and spacing ignored)."""
    text = re.sub(r"\s+", "", html.unescape(re.sub(r"<[^>]+>", "", rendered_html)))
    return [
        line
        for line in hidden
        if line.strip() and not line.strip().startswith("#") and re.sub(r"\s+", "", line) in text
    ]
