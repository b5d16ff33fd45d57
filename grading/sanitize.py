"""Make a submitted notebook gradable: repair its JSON, restore its graded structure.

Students' notebooks arrive with duplicated cells (copy and paste), deleted or edited
locked cells, changed points, cells moved around, another kernel, or a file cut short
by an upload. :func:`restore_structure` rebuilds a submission around its release
version: every locked cell (setup and tests) comes back verbatim, in the release
order, with the release's metadata; each answer cell keeps the student's source;
the student's own extra cells stay where they were (after the graded cell they
followed); and no student code runs before the notebook's first locked code cell
(the setup cell that captures the test helpers). :class:`RestoreStructure` applies it
as the first step of ``nbgrader autograde``'s sanitizing pass.
"""

from __future__ import annotations

import copy
import json
import os
import warnings

import nbformat
from nbformat.v4.nbbase import random_cell_id
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor

from .paths import find_coursedir, release_notebook_path
from .report import record_stock_failure
from .safefiles import special_files

# Prefix of the notes RestoreStructure logs (python -m grading collects them into its reports).
LOG_PREFIX = "grading: sanitize: "


class UnreadableNotebook(ValueError):
    """A submitted file that is not a notebook, even after repair."""


# Types of the nbgrader metadata fields a submitted cell may carry (anything else is refused).
NBGRADER_FIELDS = {
    "grade_id": (str,),
    "points": (int, float),
    "solution": (bool,),
    "grade": (bool,),
    "locked": (bool,),
    "task": (bool,),
    "schema_version": (int,),
    "checksum": (str,),
    "cell_type": (str,),
}


def structure_problems(nb: nbformat.NotebookNode) -> list[str]:
    """What makes ``nb`` impossible to grade safely: nbformat's schema errors, and nbgrader
    metadata that is not a mapping of the expected field types (a student's editor or a
    hostile submission can write anything there)."""
    problems = []
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as error:
        problems.append(f"not a valid notebook ({error.message})")
        return problems
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader")
        if meta is None:
            continue
        if not isinstance(meta, dict):
            problems.append(f"cell {index}: metadata.nbgrader is a {type(meta).__name__}, not a mapping")
            continue
        for key, value in meta.items():
            kinds = NBGRADER_FIELDS.get(key)
            if kinds is None:
                problems.append(f"cell {index}: unknown metadata.nbgrader field {key!r}")
            elif not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                problems.append(f"cell {index}: metadata.nbgrader.{key} is a {type(value).__name__}")
    return problems


def read_submission(path: str) -> tuple[nbformat.NotebookNode, list[str]]:
    """Read the notebook at ``path``, repairing its JSON if it can; the notebook and notes.

    Repairs: raw control characters inside strings, and anything after the notebook's
    closing brace (a second copy appended, a merge leftover). Raises
    :class:`UnreadableNotebook` for anything else (for example, a truncated file).
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    notes = []
    try:
        data = json.loads(text)
    except ValueError as error:
        data = None
        first_error = error
        for name, attempt in (
            ("control characters in strings", lambda: json.loads(text, strict=False)),
            ("text after the notebook's end", lambda: json.JSONDecoder(strict=False).raw_decode(text.lstrip())[0]),
        ):
            try:
                data = attempt()
            except ValueError:
                continue
            notes.append(f"{os.path.basename(path)}: malformed JSON repaired ({name}; was: {first_error})")
            break
        if data is None:
            raise UnreadableNotebook(
                f"{os.path.basename(path)} is not valid JSON and cannot be repaired: {first_error}"
            ) from first_error
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise UnreadableNotebook(f"{os.path.basename(path)} is JSON but not a notebook (no list of cells)")
    try:
        with warnings.catch_warnings():  # duplicate cell ids: restore_structure renumbers them
            warnings.simplefilter("ignore")
            nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as error:  # nbformat raises several types for broken structures
        raise UnreadableNotebook(f"{os.path.basename(path)} is not a valid notebook: {error}") from error
    problems = structure_problems(nb)
    if problems:
        raise UnreadableNotebook(f"{os.path.basename(path)}: {'; '.join(problems[:3])}")
    return nb, notes


def submission_refusals(directory: str, top: str | None = None) -> list[str]:
    """Why the submission folder ``directory`` is refused, if it is: it holds (or is, or sits
    under, up to ``top``) a link, a device or another special file. Such a submission is never
    graded: copying it would follow the link (to the solutions, the gradebook, another
    student's files) or open the device."""
    if not os.path.lexists(directory):
        return []
    return [f"it holds {what}" for what in special_files(directory, up_to=top)]


def _grade_id(cell) -> str | None:
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")


def _is_locked(cell) -> bool:
    meta = cell.metadata.get("nbgrader") or {}
    return bool(meta.get("locked")) and not meta.get("solution")


def _plain(cell) -> nbformat.NotebookNode:
    """``cell`` as an ordinary (ungraded) cell."""
    cell = copy.deepcopy(cell)
    cell.metadata.pop("nbgrader", None)
    return cell


def restore_structure(
    submission: nbformat.NotebookNode, release: nbformat.NotebookNode
) -> tuple[nbformat.NotebookNode, list[str]]:
    """The submission rebuilt around ``release``'s graded cells; and what was changed.

    Both notebooks are nbformat 4. Graded cells are those with an nbgrader ``grade_id``
    in the release (answers, tests, locked cells, tasks). For each of them the last
    copy in the submission is the graded one; earlier copies of an answer run as
    ordinary cells, copies of locked cells are dropped, and missing cells come back from
    the release (an answer cell then with its blank stub).
    """
    reference = {_grade_id(c): c for c in release.cells if _grade_id(c)}
    order = list(reference)
    notes: list[str] = []
    last = {gid: i for i, c in enumerate(submission.cells) if (gid := _grade_id(c)) in reference}

    graded, followers, anchor, reported = {}, {None: []}, None, set()
    for i, cell in enumerate(submission.cells):
        gid = _grade_id(cell)
        if gid in reference and last[gid] == i:
            graded[gid], anchor = cell, gid
            followers[gid] = []
            continue
        if gid in reference:
            if gid not in reported:
                notes.append(f"cell '{gid}' appears more than once: the last copy is graded")
                reported.add(gid)
            if _is_locked(reference[gid]):
                continue
        elif gid is not None:
            notes.append(f"cell '{gid}' is not in the release: graded as an ordinary cell")
        followers[anchor].append(_plain(cell))

    cells = []
    for gid in order:
        ref = reference[gid]
        cell = graded.get(gid)
        if cell is None:
            notes.append(f"cell '{gid}' was missing: restored from the release")
            cell = copy.deepcopy(ref)
        elif _is_locked(ref):
            if cell.source != ref.source or cell.cell_type != ref.cell_type:
                notes.append(f"locked cell '{gid}' was edited: restored from the release")
            if (cell.metadata.get("nbgrader") or {}).get("points") != ref.metadata.nbgrader.get("points"):
                notes.append(f"points of cell '{gid}' were changed: restored from the release")
            cell = copy.deepcopy(ref)
        else:
            if cell.cell_type != ref.cell_type:
                notes.append(f"answer cell '{gid}' was turned into {cell.cell_type}: set back to {ref.cell_type}")
            if (cell.metadata.get("nbgrader") or {}).get("points") != ref.metadata.nbgrader.get("points"):
                notes.append(f"points of cell '{gid}' were changed: restored from the release")
            answer = copy.deepcopy(ref)
            answer.source = cell.source
            cell = answer
        cells.append(cell)
        cells.extend(followers.get(gid, []))

    head = followers[None]
    head_code = [c for c in head if c.cell_type == "code"]
    first_locked_code = next((i for i, c in enumerate(cells) if c.cell_type == "code" and _is_locked(c)), None)
    if head_code and first_locked_code is not None:
        notes.append(f"{len(head_code)} code cell(s) above the first locked cell moved below it")
        cells[first_locked_code + 1 : first_locked_code + 1] = head_code
        head = [c for c in head if c.cell_type != "code"]
    cells = head + cells

    kernel = (submission.metadata.get("kernelspec") or {}).get("name")
    if kernel != release.metadata.get("kernelspec", {}).get("name"):
        notes.append(f"kernel '{kernel}' replaced by '{release.metadata.kernelspec.name}'")
    result = nbformat.v4.new_notebook(metadata=copy.deepcopy(release.metadata))
    result.nbformat, result.nbformat_minor = release.nbformat, release.nbformat_minor
    seen = set()
    for cell in cells:
        if result.nbformat_minor >= 5 and (not cell.get("id") or cell.get("id") in seen):
            cell["id"] = random_cell_id()
        seen.add(cell.get("id"))
    result.cells = cells
    return result, notes


class RestoreStructure(NbGraderPreprocessor):
    """First sanitizing step of autograde: :func:`restore_structure` against the release notebook."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        coursedir = find_coursedir(self)
        submitted = coursedir.format_path(coursedir.submitted_directory, info["student"], info["assignment"])
        refused = submission_refusals(submitted, os.path.join(coursedir.root, coursedir.submitted_directory))
        problems = refused + structure_problems(nb)
        if problems:
            message = f"the submission cannot be graded: {'; '.join(problems[:3])}"
            record_stock_failure(info["assignment"], info["student"], message)
            raise UnreadableNotebook(f"grading: {message}")
        path = release_notebook_path(coursedir, info["assignment"], info["notebook"])
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"grading: release notebook {path} is missing; run `python -m grading release "
                f"{info['assignment']}` before grading"
            )
        release = nbformat.read(path, as_version=4)
        nb, notes = restore_structure(nb, release)
        for note in notes:
            self.log.warning("%s%s", LOG_PREFIX, note)
        self.use_graded_sources(nb, coursedir, info["assignment"], info["notebook"])
        return nb, resources

    @staticmethod
    def use_graded_sources(nb, coursedir, assignment: str, notebook: str) -> None:
        """Give each restored locked cell the source the gradebook holds (the release's, with
        its hidden tests), as nbgrader's ``OverwriteCells`` would: it then finds every checksum
        as recorded, instead of warning about each test cell with hidden tests."""
        with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
            for cell in nb.cells:
                grade_id = _grade_id(cell)
                if grade_id and _is_locked(cell):
                    try:
                        cell.source = gb.find_source_cell(grade_id, notebook, assignment).source
                    except MissingEntry:
                        pass


def guard_submission_copies() -> None:
    """Make nbgrader's autograde refuse a submission folder that holds a link or a special file
    before it copies the folder's files (it would follow a link, and block on a FIFO); nbgrader
    then fails that submission alone, with the reason, and grades the others.

    nbgrader offers no hook that runs before that copy and can fail a submission (its
    ``pre_convert_hook`` swallows errors), so :func:`grading.config.configure` wraps
    ``Autograde.init_assignment`` in the processes that load the course's configuration."""
    from nbgrader.converters import Autograde

    original = Autograde.init_assignment
    if getattr(original, "refuses_special_files", False):
        return

    def init_assignment(self, assignment_id: str, student_id: str) -> None:
        folder = self.coursedir.format_path(self.coursedir.submitted_directory, student_id, assignment_id)
        refusals = submission_refusals(folder, os.path.join(self.coursedir.root, self.coursedir.submitted_directory))
        if refusals:
            message = f"the submission cannot be graded: {'; '.join(refusals[:5])}"
            record_stock_failure(assignment_id, student_id, message)
            raise UnreadableNotebook(f"grading: {message}")
        original(self, assignment_id, student_id)

    init_assignment.refuses_special_files = True
    Autograde.init_assignment = init_assignment
