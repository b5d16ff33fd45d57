"""Configuration, code audit, witnesses, output bounds, feedback and report helpers (no kernels)."""

from __future__ import annotations

import copy

import nbformat
import pytest
from catalog import SOURCE, index_of
from course_tools import ROOT
from nbformat.v4 import new_code_cell, new_output
from nbgrader.converters import Autograde
from nbgrader.preprocessors import Execute
from traitlets.config import PyFileConfigLoader

from grading.checks import WITNESS_MIME
from grading.config import autograde_steps
from grading.feedback import HideHiddenTests, leaked_lines, strip_hidden
from grading.outputs import RequireCheckWitnesses, TruncateOutputs, required_checks
from grading.report import notebook_problems
from grading.sandbox import SandboxedExecute


def test_repository_config_maps_solutions_and_exercises():
    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    assert config.CourseDirectory.root == str(ROOT)
    assert config.CourseDirectory.source_directory == "solutions"
    assert config.CourseDirectory.release_directory == "exercises"
    assert config.IgnorePattern.enabled and config.IgnorePattern.pattern
    assert config.Execute.timeout == 120 and config.SandboxedExecute.notebook_time_limit == 900
    steps = config.Autograde.autograde_preprocessors
    assert SandboxedExecute in steps and Execute not in steps
    assert config.ExportApp.plugin_class == "grading.export.StatusCsvExportPlugin"


def test_autograde_steps_keep_nbgraders_own_in_order():
    stock = list(Autograde.class_traits()["autograde_preprocessors"].default())
    ours = [
        step for step in autograde_steps() if step is SandboxedExecute or not step.__module__.startswith("grading.")
    ]
    assert ours == [SandboxedExecute if step is Execute else step for step in stock]


@pytest.mark.parametrize(
    "text",
    [
        "/x/a.py:3: UserWarning: careful\n  warnings.warn('careful')\n",
        "\r 40%|████      | 4/10 [00:01<00:02,  3.10it/s]",
        "12it [00:00, 99.1it/s]",
    ],
)
def test_stderr_noise_pattern(text):
    import re

    from grading.config import STDERR_NOISE

    assert re.search(STDERR_NOISE, text)
    assert not re.search(STDERR_NOISE, "Traceback (most recent call last):\nValueError: bad\n")


def test_required_checks_counts_top_level_calls():
    source = "x0 = 1\ncheck.close(a, b)\nfor i in range(3):\n    check.true(i < 3, 'm')\ncheck.between(x, 0, 1)"
    assert required_checks(source, ["check"]) == 2


def witness():
    return new_output("display_data", data={WITNESS_MIME: {"check": "close"}, "text/plain": "ok"})


def test_a_test_cell_whose_checks_did_not_report_gets_no_points():
    nb = nbformat.read(SOURCE, 4)
    test = nb.cells[index_of(nb, "test_normalize")]  # 4 top-level checks
    test.outputs = [witness()] * 4
    RequireCheckWitnesses().preprocess_cell(test, {}, 0)
    assert all(o.output_type == "display_data" for o in test.outputs)
    test.outputs = [witness()] * 3
    RequireCheckWitnesses().preprocess_cell(test, {}, 0)
    assert test.outputs[-1].ename == "GradingError"
    assert notebook_problems(nb) == ["cell 4 ('test_normalize') did not report all of its checks"]


def test_output_is_bounded():
    cell = new_code_cell("print(...)")
    cell.outputs = [
        new_output("stream", name="stdout", text="x" * 500),
        new_output("stream", name="stdout", text="y"),
        new_output("display_data", data={"image/png": "A" * 300, "text/plain": "<Figure>"}),
    ]
    TruncateOutputs(max_chars=100, max_data_bytes=200).preprocess_cell(cell, {}, 0)
    assert len(cell.outputs) == 2 and cell.outputs[0].text.startswith("x" * 100)
    assert "truncated by the grader" in cell.outputs[0].text
    assert cell.outputs[1].data == {"text/plain": "<Figure>"}


def test_feedback_hides_hidden_tests_and_their_outputs():
    nb = nbformat.read(SOURCE, 4)
    test = copy.deepcopy(nb.cells[index_of(nb, "test_project")])
    visible, hidden = strip_hidden(test.source)
    assert "check.between" in "".join(hidden) and "BEGIN" not in visible and "check.between" not in visible
    test.outputs = [
        new_output(
            "error",
            ename="AssertionError",
            evalue="expected [1. 0.], got [1.15 -0.15]",
            traceback=["...", "check.close(project([1.5, -0.5], ...))"],
        )
    ]
    HideHiddenTests().rebuild_test_cell(test)  # no frame of the cell in the traceback: counts as hidden
    assert test.source == visible
    assert test.outputs[0].traceback == ["AssertionError: a hidden test failed (details of hidden tests are not shown)"]
    assert leaked_lines("<pre>" + test.source + "</pre>", hidden) == []
    assert leaked_lines(
        "<span>check.between(project([1.5, </span><span>-0.5], [0.95, 0.05], 0.2), 0.0, 1.0, "
        "label=&quot;pixels stay in [0, 1]&quot;)</span>",
        hidden,
    )


def test_report_lists_timeouts_and_memory_errors():
    nb = nbformat.read(SOURCE, 4)
    nb.cells[index_of(nb, "test_normalize")].outputs = [
        new_output("error", ename="CellTimeoutError", evalue="", traceback=[])
    ]
    nb.cells[index_of(nb, "normalize")].outputs = [new_output("error", ename="MemoryError", evalue="", traceback=[])]
    assert notebook_problems(nb) == ["cell 3 ('normalize') ran out of memory", "cell 4 ('test_normalize') timed out"]


def test_preflight_verdict():
    from grading.workflow import preflight_verdict

    points = {"test_a": 2.0, "test_b": 1.0}
    good = {
        "preflight-solution": {"test_a": 2.0, "test_b": 1.0},
        "preflight-blank": {"test_a": 0.0, "test_b": 0.0},
        "preflight-tampered": {"test_a": 2.0, "test_b": 1.0},
    }
    assert preflight_verdict("nb", points, good) == ([], "nb: solution 3.0/3.0, blank 0/3.0, tampered 3.0/3.0")
    bad = {
        "preflight-solution": {"test_a": 0.0, "test_b": 1.0},
        "preflight-blank": {"test_a": 0.0, "test_b": 1.0},
        "preflight-tampered": {},
    }
    problems, _ = preflight_verdict("nb", points, bad)
    assert problems == [
        "nb/test_a: the solution scores 0.0 of 2.0",
        "nb/test_a: a tampered solution scores None of 2.0 (tests or points were not restored)",
        "nb/test_b: the blank exercise scores 1.0 (a test that passes on the stub)",
        "nb/test_b: a tampered solution scores None of 1.0 (tests or points were not restored)",
    ]
