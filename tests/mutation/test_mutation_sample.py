"""The mutation catalog in CI: every entry still applies, RESULTS.md is complete, and a fast
sample is graded for real (the full run: ``.venv/bin/python -m tests.mutation``)."""

from __future__ import annotations

import ast
import re
from collections import Counter

import nbformat
import pytest

from .catalog import ALTERNATIVES, ENTRIES, MUTANTS
from .results import RESULTS, listed_names
from .score import ROOT, apply, grade_all, grade_id, own_test, solution_path

NOTEBOOKS = sorted(path.stem for path in ROOT.glob("solutions/*/*.ipynb"))
# Killed by their own test cell, in the notebooks that reach it fastest; one alternative in 03.
SAMPLE_MUTANTS = (
    "saliency-of-predicted-class",
    "noise-not-scaled-to-range",
    "pgd-no-projection",
    "visualize-minimizes",
)
SAMPLE_ALTERNATIVE = "project-renorm"
BY_NAME = {entry.name: entry for entry in ENTRIES}


def test_catalog_covers_every_notebook():
    names = [entry.name for entry in ENTRIES]
    assert len(set(names)) == len(names), [name for name, count in Counter(names).items() if count > 1]
    per_notebook = Counter(entry.notebook for entry in MUTANTS)
    assert len(MUTANTS) >= 24 and len(ALTERNATIVES) >= 6
    assert {notebook: per_notebook[notebook] for notebook in NOTEBOOKS if per_notebook[notebook] < 3} == {}
    assert set(per_notebook) | {entry.notebook for entry in ALTERNATIVES} <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", list(BY_NAME))
def test_entry_applies_to_the_current_solution(name):
    """Each edit finds its text exactly once in the solution, and the edited cell is valid Python
    different from the solution (a catalog that no longer matches fails here)."""
    entry = BY_NAME[name]
    solution = nbformat.read(solution_path(entry.notebook), as_version=4)
    edited = apply(entry, solution)
    before, after = ([cell.source for cell in nb.cells if grade_id(cell) == entry.cell] for nb in (solution, edited))
    assert after != before
    ast.parse(after[0])
    assert own_test(entry)


def test_results_list_every_entry_and_meet_the_goals():
    text = RESULTS.read_text()
    assert sorted(listed_names(text)) == sorted(BY_NAME), "RESULTS.md is stale: run .venv/bin/python -m tests.mutation"
    killed, total = map(int, re.search(r"Kill rate: (\d+)/(\d+)", text).groups())
    kept, alternatives = map(int, re.search(r"Alternative correct answers: (\d+)/(\d+)", text).groups())
    assert total == len(MUTANTS) and killed >= 0.95 * total
    assert alternatives == len(ALTERNATIVES) and kept == alternatives


@pytest.mark.slow
def test_sample_of_mutants_is_killed_and_an_alternative_keeps_full_marks():
    outcomes = grade_all([BY_NAME[name] for name in SAMPLE_MUTANTS], [BY_NAME[SAMPLE_ALTERNATIVE]], workers=2)
    survivors = {
        o.entry.name: o.error or "no test cell failed" for o in outcomes if o.entry.kind == "mutant" and not o.killed
    }
    assert not survivors, f"mutants that keep full marks: {survivors}"
    alternative = outcomes[-1]
    assert alternative.full_marks, f"{alternative.entry.name} loses points: {alternative.error or alternative.failed}"
