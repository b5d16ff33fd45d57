"""pytest plugin for the nbval runs of ``tests/test_notebooks.py``: keep what nbval executed.

nbval runs each code cell of a notebook as one test item and compares outputs, but keeps
nothing. With ``-p nbval_capture --nbval-capture-dir DIR`` this plugin writes, for every
notebook nbval ran, ``DIR/NAME.ipynb`` (the notebook with the outputs that nbval's kernel
produced, so that nbgrader's validator can grade it without executing it again) and
``DIR/NAME.json`` (each code cell's outcome, duration in seconds and failure message).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

_notebooks: dict[Path, tuple[nbformat.NotebookNode, list[dict]]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--nbval-capture-dir", help="write each executed notebook and a per-cell report here")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not hasattr(item, "cell_num"):  # only nbval's cell items
        return
    notebook, records = _notebooks.setdefault(Path(str(item.parent.fspath)), (item.parent.nb, []))
    item.cell.outputs = [nbformat.from_dict(output) for output in (item.test_outputs or [])]
    item.cell.execution_count = item.cell_num + 1
    records.append(
        {
            "cell": item.cell_num,
            "id": item.cell.get("id"),
            "outcome": report.outcome,
            "seconds": round(call.duration, 3),
            "message": "" if report.passed else str(report.longrepr)[-3000:],
        }
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    directory = session.config.getoption("--nbval-capture-dir")
    if not directory:
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    for path, (notebook, records) in _notebooks.items():
        nbformat.write(notebook, Path(directory) / path.name)
        (Path(directory) / path.with_suffix(".json").name).write_text(json.dumps({"cells": records}, indent=1))
