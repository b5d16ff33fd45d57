"""Repairing submitted notebooks and restoring their graded structure (no kernels)."""

from __future__ import annotations

import copy
import json

import nbformat
import pytest
from catalog import SOURCE, grade_id, index_of

from grading.sanitize import UnreadableNotebook, read_submission, restore_structure


@pytest.fixture
def release():
    return nbformat.read(SOURCE, 4)


def ids(nb):
    return [grade_id(c) for c in nb.cells]


def graded_ids(nb):
    return [g for g in ids(nb) if g]


def test_an_intact_notebook_is_left_as_it_is(release):
    restored, notes = restore_structure(copy.deepcopy(release), release)
    assert notes == []
    assert [c.source for c in restored.cells] == [c.source for c in release.cells]


def test_duplicated_answer_grades_the_last_copy_and_runs_the_others(release):
    nb = copy.deepcopy(release)
    first = copy.deepcopy(nb.cells[index_of(nb, "normalize")])
    first.source = "def normalize(v):\n    return v  # first try"
    nb.cells.insert(index_of(nb, "normalize"), first)
    restored, notes = restore_structure(nb, release)
    assert graded_ids(restored) == graded_ids(release)
    at = index_of(restored, "normalize")
    assert restored.cells[at - 1].source.endswith("# first try") and grade_id(restored.cells[at - 1]) is None
    assert restored.cells[at].source == release.cells[index_of(release, "normalize")].source
    assert notes == ["cell 'normalize' appears more than once: the last copy is graded"]


def test_copies_of_locked_cells_are_dropped(release):
    nb = copy.deepcopy(release)
    copy_of_test = copy.deepcopy(nb.cells[index_of(nb, "test_project")])
    copy_of_test.source = "pass"
    nb.cells.insert(0, copy_of_test)
    restored, _ = restore_structure(nb, release)
    assert [c.source for c in restored.cells] == [c.source for c in release.cells]


def test_deleted_cells_come_back_in_place(release):
    nb = copy.deepcopy(release)
    nb.cells = [c for c in nb.cells if grade_id(c) not in {"setup", "test_project", "explain"}]
    restored, notes = restore_structure(nb, release)
    assert graded_ids(restored) == graded_ids(release)
    assert (
        restored.cells[index_of(restored, "test_project")].source
        == release.cells[index_of(release, "test_project")].source
    )
    assert "cell 'setup' was missing: restored from the release" in notes


def test_edited_locked_cells_and_points_are_restored(release):
    nb = copy.deepcopy(release)
    test = nb.cells[index_of(nb, "test_accuracy")]
    test.source, test.metadata.nbgrader["points"] = "pass", 100
    test.metadata.nbgrader["locked"] = False
    answer = nb.cells[index_of(nb, "accuracy")]
    answer.metadata.nbgrader["points"] = 5
    restored, notes = restore_structure(nb, release)
    assert restored.cells[index_of(restored, "test_accuracy")] == release.cells[index_of(release, "test_accuracy")]
    assert "points" not in restored.cells[index_of(restored, "accuracy")].metadata.nbgrader
    assert {
        "locked cell 'test_accuracy' was edited: restored from the release",
        "points of cell 'test_accuracy' were changed: restored from the release",
        "points of cell 'accuracy' were changed: restored from the release",
    } <= set(notes)


def test_answers_keep_the_students_source_and_the_release_metadata(release):
    nb = copy.deepcopy(release)
    answer = nb.cells[index_of(nb, "project")]
    answer.source = "def project(x, x0, eps):\n    return x"
    answer.cell_type = "markdown"
    del answer["outputs"], answer["execution_count"]
    restored, notes = restore_structure(nb, release)
    cell = restored.cells[index_of(restored, "project")]
    assert cell.source == "def project(x, x0, eps):\n    return x" and cell.cell_type == "code"
    assert cell.metadata == release.cells[index_of(release, "project")].metadata
    assert "answer cell 'project' was turned into markdown: set back to code" in notes


def test_no_student_code_runs_before_the_setup_cell(release):
    nb = copy.deepcopy(release)
    nb.cells.insert(0, nbformat.v4.new_code_cell("import numpy; numpy.absolute = abs"))
    restored, notes = restore_structure(nb, release)
    assert grade_id(restored.cells[1]) == "setup"  # after the title
    assert restored.cells[2].source.startswith("import numpy; numpy.absolute")
    assert "1 code cell(s) above the first locked cell moved below it" in notes


def test_reordered_cells_go_back_with_the_cells_that_followed_them(release):
    nb = copy.deepcopy(release)
    scratch = nbformat.v4.new_code_cell("print('my scratch work on accuracy')")
    accuracy = index_of(nb, "accuracy")
    nb.cells.insert(accuracy + 1, scratch)
    moved = nb.cells.pop(accuracy)
    nb.cells.insert(index_of(nb, "setup") + 1, moved)  # the answer moved to the top...
    nb.cells.remove(scratch)
    nb.cells.insert(index_of(nb, "setup") + 2, scratch)  # ...with its scratch cell
    restored, _ = restore_structure(nb, release)
    assert graded_ids(restored) == graded_ids(release)
    assert restored.cells[index_of(restored, "accuracy") + 1].source == scratch.source


def test_unknown_ids_kernel_and_cell_ids(release):
    nb = copy.deepcopy(release)
    stray = nbformat.v4.new_code_cell(
        "x = 1", metadata={"nbgrader": {"grade_id": "mine", "grade": True, "points": 50, "solution": False}}
    )
    nb.cells.append(stray)
    nb.cells.append(copy.deepcopy(nb.cells[-1]))  # same cell id twice
    nb.metadata.kernelspec = {"name": "ir", "display_name": "R"}
    restored, notes = restore_structure(nb, release)
    assert "cell 'mine' is not in the release: graded as an ordinary cell" in notes
    assert "kernel 'ir' replaced by 'python3'" in notes
    assert restored.metadata.kernelspec.name == "python3"
    assert "nbgrader" not in restored.cells[-1].metadata
    assert len({c.id for c in restored.cells}) == len(restored.cells)
    nbformat.validate(restored)


def test_read_submission_repairs_what_it_can(tmp_path, release):
    text = nbformat.writes(release)
    path = tmp_path / "nb.ipynb"
    path.write_text(text)
    assert read_submission(str(path))[1] == []
    path.write_text(text + "\n<<<<<<< HEAD\n")
    nb, notes = read_submission(str(path))
    assert nb.cells[1].source == release.cells[1].source and "text after the notebook's end" in notes[0]
    path.write_text(text.replace("Grading demo", "Grading\tdemo\x01"))
    assert "control characters" in read_submission(str(path))[1][0]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"cells": [', "is not valid JSON and cannot be repaired"),
        ("[1, 2]", "is JSON but not a notebook"),
        (
            json.dumps({"cells": [{"cell_type": "code"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
            "is not a valid notebook",
        ),
    ],
)
def test_read_submission_refuses_what_it_cannot_repair(tmp_path, content, message):
    path = tmp_path / "nb.ipynb"
    path.write_text(content)
    with pytest.raises(UnreadableNotebook, match=message):
        read_submission(str(path))
