"""The mutation tables in CI: every catalog entry still applies, RESULTS.md and GENERATED.md are
complete and meet the goals they state, and a fast sample is graded for real, generated mutants
by the fork runner and by nbgrader's validator alike (the full run: ``.venv/bin/python -m
tests.mutation``)."""

from __future__ import annotations

import ast
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import nbformat
import pytest

from .catalog import ALTERNATIVES, ENTRIES, MUTANTS
from .equivalent import EQUIVALENT
from .forkrun import grade_variants
from .generate import notebook_mutants, notebooks
from .results import RESULTS, counted, listed_names
from .score import (
    ROOT,
    apply,
    grade_all,
    grade_id,
    own_test,
    set_kernel_environment,
    solution_path,
    validate,
    with_cell,
)
from .table import TABLE, load, tallies

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
# Generated mutants of 01's first answer cell, graded through its test cell by the fork runner:
# two operators that kill (a context manager removed, arguments swapped) and one equivalent
# mutant; the first and the last are graded by nbgrader's validator too (a kernel each).
SAMPLE_NOTEBOOK, SAMPLE_TEST = "01_gradient_saliency", "test_input_gradient"
SAMPLE_GENERATED = (
    "01.input_gradient.with-removed.39e4a8",
    "01.input_gradient.swap.7f07fc",
    "01.input_gradient.call-removed.bfe521",
)
SAMPLE_VALIDATED = (SAMPLE_GENERATED[0], SAMPLE_GENERATED[-1])


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
    """The catalog at 100 %: every graded wrong answer killed, every graded alternative at full marks."""
    text = RESULTS.read_text()
    assert sorted(listed_names(text)) == sorted(BY_NAME), "RESULTS.md is stale: run .venv/bin/python -m tests.mutation"
    killed, total, kept, alternatives, not_graded = counted(text)
    assert total + alternatives + not_graded == len(ENTRIES)
    assert killed == total and kept == alternatives


def test_generated_record_is_current_and_table_states_it():
    """Each graded notebook's record holds exactly the mutants the generator makes now (ids are
    stable under edits elsewhere in the notebook), every reviewed equivalent mutant still exists and
    survives (a test that kills one checks more than the exercise asks, or the review is wrong), and
    GENERATED.md shows the record's figures."""
    record, table = load(), TABLE.read_text()
    every = {mutant.id for notebook in notebooks() for mutant in notebook_mutants(notebook)}
    assert set(EQUIVALENT) <= every, f"equivalent.py lists mutants no longer generated: {set(EQUIVALENT) - every}"
    for notebook, graded in record["notebooks"].items():
        mutants = notebook_mutants(notebook)
        stale = {m.id for m in mutants} ^ set(graded["mutants"])
        assert not stale, f"{notebook}: the record is stale ({len(stale)} ids): run -m tests.mutation --notebooks"
        verdicts = graded["mutants"]
        killed = sorted(id_ for id_ in EQUIVALENT if id_ in verdicts and verdicts[id_]["status"] != "survived")
        assert not killed, f"{notebook}: mutants reviewed as equivalent that a test kills: {killed}"
        total, _ = tallies(notebook, mutants, graded["mutants"])
        assert total.row(notebook) in table, f"GENERATED.md is stale for {notebook}"
    assert len(re.findall(r"^## \d\d_", table, re.MULTILINE)) == len(record["notebooks"])


@pytest.mark.slow
def test_sample_of_mutants_is_killed_and_an_alternative_keeps_full_marks():
    outcomes = grade_all([BY_NAME[name] for name in SAMPLE_MUTANTS], [BY_NAME[SAMPLE_ALTERNATIVE]], workers=2)
    survivors = {
        o.entry.name: o.error or "no test cell failed" for o in outcomes if o.entry.kind == "mutant" and not o.killed
    }
    assert not survivors, f"mutants that keep full marks: {survivors}"
    alternative = outcomes[-1]
    assert alternative.full_marks, f"{alternative.entry.name} loses points: {alternative.error or alternative.failed}"


@pytest.mark.slow
def test_fork_runner_agrees_with_the_validator_on_generated_mutants():
    """The sample's generated mutants get the verdicts recorded from the fork runner (one
    execution, forked), and the same as from nbgrader's validator (a kernel per mutant)."""
    from grading.config import STDERR_NOISE

    by_id = {m.id: m for m in notebook_mutants(SAMPLE_NOTEBOOK)}
    variants = [(id_, by_id[id_].cell, by_id[id_].source) for id_ in SAMPLE_GENERATED]
    verdicts, _ = grade_variants(SAMPLE_NOTEBOOK, variants, stderr_pattern=STDERR_NOISE, through=SAMPLE_TEST)
    recorded = load()["notebooks"][SAMPLE_NOTEBOOK]["mutants"]
    for id_ in SAMPLE_GENERATED:
        assert verdicts[id_].status == recorded[id_]["status"], f"{id_}: {verdicts[id_]}, recorded {recorded[id_]}"
        assert (id_ in EQUIVALENT) == (verdicts[id_].status == "survived")
    with ProcessPoolExecutor(2, mp_context=get_context("spawn"), initializer=set_kernel_environment) as pool:
        graded = list(pool.map(validate_through_sample_test, [by_id[id_].source for id_ in SAMPLE_VALIDATED]))
    for id_, (failed, error) in zip(SAMPLE_VALIDATED, graded, strict=True):
        assert error is None, f"{id_}: {error}"
        assert verdicts[id_].test == next(iter(failed), None), f"{id_}: fork runner {verdicts[id_]}, validator {failed}"


def validate_through_sample_test(source: str) -> tuple[dict[str, str], str | None]:
    """nbgrader's validator on the sample notebook with its first answer cell's source replaced."""
    return validate(with_cell(SAMPLE_NOTEBOOK, "input_gradient", source), SAMPLE_NOTEBOOK, SAMPLE_TEST)
