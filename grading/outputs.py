"""Post-execution steps of autograde: require the checks' witnesses, bound output sizes,
make outputs safe to render."""

from __future__ import annotations

import ast

import nbformat
from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer, List, Unicode

from .checks import SIGNED_FIELDS, WITNESS_MIME
from .safe_html import IMAGE_TYPES, clean_html, is_base64, render_markdown, safe_attachments, safe_markdown
from .sanitize import LOG_PREFIX

WIDGET_MIME_PREFIX = "application/vnd.jupyter.widget"
WITNESS_FIELDS = {*SIGNED_FIELDS, "mac"}  # a witness's fields (never rendered: JSON)
# What an image output's metadata may keep (the templates escape it; anything else goes).
IMAGE_METADATA = {"width": (int, float), "height": (int, float), "unconfined": (bool,), "alt": (str,)}


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


def _text_size(value) -> int:
    """Characters of a string, or of each string in a list or mapping (an output's payload)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_size(v) for v in value.values())
    if isinstance(value, list):
        return sum(_text_size(v) for v in value)
    return len(str(value))


def output_size(output) -> int:
    """Characters an output takes in the notebook (its data, text or traceback)."""
    return _text_size({k: v for k, v in output.items() if k in ("data", "text", "traceback", "evalue")})


def record_note(nb: nbformat.NotebookNode, note: str) -> None:
    """Keep a grading note in the autograded notebook's metadata (``metadata.grading.notes``)."""
    nb.metadata.setdefault("grading", nbformat.from_dict({})).setdefault("notes", []).append(note)


class SanitizeOutputs(NbGraderPreprocessor):
    """Make what a submission displays safe to render (formgrader, feedback): an allow-list.

    Kept: text streams, errors, and display outputs of these types only: ``text/plain``,
    PNG/JPEG/GIF images (valid base64), ``text/latex`` (rendered escaped), ``text/html``
    cleaned by :func:`grading.safe_html.clean_html`, ``text/markdown`` turned into cleaned
    HTML, and the checks' witnesses. Everything else (JavaScript, widget views, SVG, PDF,
    unknown types) is removed, and so is output metadata other than an image's size and alt
    text (``isolated`` would put the HTML in an iframe). Markdown cells whose raw HTML or links
    are unsafe become cleaned HTML (:func:`grading.safe_html.safe_markdown`), attachments other
    than images go, raw cells lose their output format, and the notebook its widget state.
    Grades never depend on it: it runs after they are saved, and error outputs stay.
    """

    def preprocess(self, nb, resources):
        removed: dict[str, int] = {}
        nb.metadata.pop("widgets", None)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = [kept for output in cell.outputs if (kept := sanitize_output(output, removed))]
            elif cell.cell_type == "markdown":
                attachments = safe_attachments(cell.get("attachments"))
                source, unsafe = safe_markdown(cell.source, attachments)
                if unsafe:
                    kind = "markdown cell(s) with raw HTML or unsafe links"
                    removed[kind] = removed.get(kind, 0) + 1
                    cell.source = source
                    cell.pop("attachments", None)
                elif "attachments" in cell:
                    cell.attachments = attachments
            else:
                cell.metadata.pop("raw_mimetype", None)
                cell.metadata.pop("format", None)
                cell.pop("attachments", None)
        suspicious = {kind: n for kind, n in removed.items() if not kind.startswith(WIDGET_MIME_PREFIX)}
        if suspicious:
            note = "cleaned for display: " + ", ".join(f"{n} {kind}" for kind, n in sorted(suspicious.items()))
            self.log.warning("%s%s", LOG_PREFIX, note)
            record_note(nb, note)
        return nb, resources


def sanitize_output(output, removed: dict[str, int]):
    """``output`` made safe to render (see :class:`SanitizeOutputs`), or None to drop it;
    counts what it removed in ``removed`` (by MIME or output type)."""
    kind = output.get("output_type")
    if kind == "stream":
        return new_output(
            "stream", name="stderr" if output.get("name") == "stderr" else "stdout", text=str(output.text)
        )
    if kind == "error":
        return new_output(
            "error",
            ename=str(output.get("ename", "")),
            evalue=str(output.get("evalue", "")),
            traceback=[str(line) for line in output.get("traceback", [])],
        )
    if kind not in ("display_data", "execute_result"):
        removed[f"{kind} output"] = removed.get(f"{kind} output", 0) + 1
        return None
    data, metadata = {}, {}
    for mime, value in output.get("data", {}).items():
        if mime in ("text/plain", "text/latex") and isinstance(value, str):
            data[mime] = value  # both rendered escaped
        elif mime in IMAGE_TYPES and is_base64(value):
            data[mime] = value
            meta = output.get("metadata", {}).get(mime)
            if isinstance(meta, dict):
                kept = {k: v for k, v in meta.items() if isinstance(v, IMAGE_METADATA.get(k, ()))}
                if kept:
                    metadata[mime] = kept
        elif mime == "text/html" and isinstance(value, str):
            data[mime] = clean_html(value)
        elif mime == WITNESS_MIME and isinstance(value, dict):
            data[mime] = {k: v for k, v in value.items() if k in WITNESS_FIELDS and isinstance(v, (str, int))}
        elif mime != "text/markdown" or not isinstance(value, str):
            removed[mime] = removed.get(mime, 0) + 1
    markdown = output.get("data", {}).get("text/markdown")
    if isinstance(markdown, str) and "text/html" not in data:
        data["text/html"] = clean_html(render_markdown(markdown)[0])
    if not data:
        data["text/plain"] = "[output removed by the grader: it is of a type that could run code in a browser]"
    fields = {"data": data, "metadata": metadata}
    if kind == "execute_result":
        fields["execution_count"] = output.get("execution_count")
    return new_output(kind, **fields)


class OutputBudget(NbGraderPreprocessor):
    """Bound the total output of a notebook (``max_notebook_chars``), in cell order.

    Once the budget is spent, later outputs are removed and each cell that lost some says
    so; errors always stay (cut to ``max_error_chars``), and so do the checks' small
    witnesses, so feedback still tells what passed. A cut is logged as a note (in the
    submission's report and export) and kept in ``metadata.grading.notes``.
    """

    max_notebook_chars = Integer(
        10_000_000, help="Characters of output kept per notebook (base64 images count as their text)."
    ).tag(config=True)
    max_error_chars = Integer(20_000, help="Characters kept of each error's message and traceback.").tag(config=True)

    def preprocess(self, nb, resources):
        spent, cut, cells_cut = 0, 0, 0
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            kept, dropped = [], 0
            for output in cell.outputs:
                if output.output_type == "error":
                    kept.append(self._bounded_error(output))
                    continue
                size = output_size(output)
                witness = output.output_type == "display_data" and WITNESS_MIME in output.get("data", {})
                if spent + size <= self.max_notebook_chars or (witness and size < 1000):
                    spent += size
                    kept.append(output)
                else:
                    dropped += 1
            if dropped:
                cut += dropped
                cells_cut += 1
                kept.append(
                    new_output(
                        "stream",
                        name="stdout",
                        text=f"[{dropped} output(s) removed by the grader: the notebook's outputs passed "
                        f"{self.max_notebook_chars:,} characters]\n",
                    )
                )
            cell.outputs = kept
        if cut:
            note = (
                f"outputs cut: the notebook's outputs passed {self.max_notebook_chars:,} characters; "
                f"{cut} output(s) in {cells_cut} cell(s) were removed"
            )
            self.log.warning("%s%s", LOG_PREFIX, note)
            record_note(nb, note)
        return nb, resources

    def _bounded_error(self, output):
        limit = self.max_error_chars
        output.evalue = output.evalue[:limit]
        lines, total = [], 0
        for line in output.traceback:
            if total >= limit:
                lines.append("... traceback truncated by the grader ...")
                break
            lines.append(line[: limit - total])
            total += len(lines[-1])
        output.traceback = lines
        return output
