"""Witnesses that student code cannot forge: each passing check signs where it was called from.

Every passing :class:`grading.checks.Checks` call publishes a witness (a small display
output). Without more, student code could publish look-alike witnesses itself (``display``
is all it takes), or replace the checker by one whose "checks" always pass. So, when
autograding, each kernel gets a secret key (a file that :mod:`grading.checks` reads and
deletes when the locked setup cell imports it, before any student code runs), and each
witness carries an HMAC of what was checked and **where the check was called from**: the
check's name and label, and the digest of the cell whose code made the call and the line
it was called on. :class:`VerifyWitnesses`, the autograde step right after execution,
keeps a test cell's points only if every top-level check statement of that cell left a
witness that is signed with the kernel's key and was called from that very statement of
that very cell. A forged witness has no valid signature; a fake checker that forwards to
the real one calls it from its own code, not from the test cell's line.

What it cannot stop: code in the same process that finds the key in memory or rewrites
the interpreter's record of the test cell's source; both need the introspection that the
audit (:mod:`grading.audit`) flags.
"""

from __future__ import annotations

import ast
import hmac

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import List, Unicode

from .checks import WITNESS_MIME, cell_digest, signature


def top_level_checks(source: str, checker_names: list[str]) -> list[tuple[str, int, int]]:
    """(method, first line, last line) of each top-level statement of a test cell that calls
    the checker, e.g. ``check.close(...)``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [
        (node.value.func.attr, node.lineno, node.end_lineno or node.lineno)
        for node in tree.body
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and isinstance(node.value.func.value, ast.Name)
        and node.value.func.value.id in checker_names
    ]


def unverified_checks(source: str, witnesses: list[dict], key: bytes, checker_names: list[str]) -> list[str]:
    """The top-level checks of the test cell ``source`` that left no witness signed with ``key``
    and called from their own statement of this cell; described for the instructor."""
    digest = cell_digest(source)
    valid = [
        w
        for w in witnesses
        if isinstance(w, dict)
        and isinstance(w.get("mac"), str)
        and hmac.compare_digest(w["mac"], signature(key, w))
        and w.get("cell") == digest
    ]
    missing = []
    for method, first, last in top_level_checks(source, checker_names):
        if not any(
            w.get("check") == method and isinstance(w.get("line"), int) and first <= w["line"] <= last for w in valid
        ):
            missing.append(f"{method} (line {first})")
    return missing


class VerifyWitnesses(NbGraderPreprocessor):
    """Autograde step after execution: a test cell keeps its points only if each of its
    top-level checks left a genuine witness (see the module's docstring); otherwise it gets an
    error output (0 points) and the submission is flagged. Kernels that ran without a key
    (``resources["grading"]["witness_key"]`` is missing) are left to
    :class:`grading.outputs.RequireCheckWitnesses`, which counts witnesses."""

    checker_names = List(Unicode(), ["check"], help="Names the test cells call the checker by.").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        key = resources.get("grading", {}).get("witness_key")
        meta = cell.metadata.get("nbgrader") or {}
        if not key or cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            return cell, resources
        if any(o.output_type == "error" for o in cell.outputs):
            return cell, resources
        witnesses = [
            o.data[WITNESS_MIME]
            for o in cell.outputs
            if o.output_type == "display_data" and WITNESS_MIME in o.get("data", {})
        ]
        missing = unverified_checks(cell.source, witnesses, key.encode(), self.checker_names)
        if missing:
            message = (
                f"{len(missing)} check(s) left no genuine witness ({', '.join(missing[:3])}): the test "
                f"cell's checks did not run as written"
            )
            self.log.warning("grading: cell '%s': %s", meta.get("grade_id"), message)
            cell.outputs.append(
                new_output("error", ename="GradingError", evalue=message, traceback=[f"GradingError: {message}"])
            )
        return cell, resources
