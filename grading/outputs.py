"""Post-execution steps of autograde: require the checks' witnesses, bound output sizes."""

from __future__ import annotations

import ast

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer, List, Unicode

from .checks import WITNESS_MIME


def required_checks(source: str, checker_names: list[str]) -> int:
    """Top-level statements of a test cell that call the checker (each must report once)."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return 0
    return sum(
        1
        for node in tree.body
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and isinstance(node.value.func.value, ast.Name)
        and node.value.func.value.id in checker_names
    )


class RequireCheckWitnesses(NbGraderPreprocessor):
    """Give 0 to a test cell whose top-level checks did not all report a witness.

    A test cell without an error normally earns its points, even if its code never ran
    (student code can make the kernel skip or rewrite later cells). Each passing
    :class:`grading.checks.Checks` call publishes a witness, so a cell whose top-level
    ``check.*`` calls did not all report gets an error output instead of the points.
    """

    checker_names = List(Unicode(), ["check"], help="Names the test cells call the checker by.").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        meta = cell.metadata.get("nbgrader") or {}
        if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            return cell, resources
        required = required_checks(cell.source, self.checker_names)
        if required == 0 or any(o.output_type == "error" for o in cell.outputs):
            return cell, resources
        reported = sum(1 for o in cell.outputs if o.output_type == "display_data" and WITNESS_MIME in o.data)
        if reported < required:
            message = f"the test cell reported {reported} of its {required} checks: its code did not run as written"
            self.log.warning("grading: cell '%s': %s", meta.get("grade_id"), message)
            cell.outputs.append(
                new_output("error", ename="GradingError", evalue=message, traceback=[f"GradingError: {message}"])
            )
        return cell, resources


class TruncateOutputs(NbGraderPreprocessor):
    """Bound each code cell's text output (``max_chars``) and drop oversized rich outputs
    (``max_data_bytes``), so one chatty submission cannot bloat the gradebook or feedback."""

    max_chars = Integer(100_000, help="Characters of text output kept per cell.").tag(config=True)
    max_data_bytes = Integer(2_000_000, help="Largest rich output (image, HTML) kept.").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        budget = self.max_chars
        outputs = []
        for output in cell.outputs:
            if output.output_type == "stream":
                if budget <= 0:
                    continue
                if len(output.text) > budget:
                    output.text = output.text[:budget] + "\n... output truncated by the grader ...\n"
                budget -= len(output.text)
            elif output.output_type in {"display_data", "execute_result"}:
                for mime, value in list(output.data.items()):
                    size = len(value) if isinstance(value, str) else len(str(value))
                    if size > self.max_data_bytes and mime != "text/plain":
                        del output.data[mime]
                        output.data.setdefault("text/plain", f"[{mime} output of {size} bytes removed by the grader]")
                    elif mime == "text/plain" and size > self.max_chars:
                        output.data[mime] = value[: self.max_chars] + "\n... output truncated by the grader ..."
            outputs.append(output)
        cell.outputs = outputs
        return cell, resources
