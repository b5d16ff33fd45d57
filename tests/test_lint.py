"""Lint and format: ruff, configured in pyproject.toml, over the packages, tests and benchmarks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUFF = Path(sys.executable).with_name("ruff")
CHECKED = ["helpers", "grading", "tests", "benchmarks", "tasks.py", "nbgrader_config.py"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check", "--diff"]], ids=["lint", "format"])
def test_ruff_finds_nothing(command):
    result = subprocess.run([str(RUFF), *command, *CHECKED], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
