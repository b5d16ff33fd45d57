"""The project's own set-up files agree with each other."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest
from conftest import ROOT
from packaging.requirements import Requirement

sys.path.insert(0, str(ROOT))
import tasks  # noqa: E402


def test_environment_yml_is_derived_from_pyproject():
    assert (ROOT / "environment.yml").read_text() == tasks.environment_yml(), (
        "environment.yml drifted from pyproject.toml: run `python3 tasks.py environment-yml`"
    )


def test_declared_torch_ranges_admit_the_local_wheels():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = {Requirement(dep).name: Requirement(dep) for dep in project["dependencies"]}
    assert requirements["torch"].specifier.contains("2.14.1")
    assert requirements["torchvision"].specifier.contains("0.29.1")
    assert not any("index-url" in dep for dep in project["dependencies"])


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(python3 tasks\.py (?:course|test))\s*$", readme, flags=re.M)
    assert commands[:2] == ["python3 tasks.py course", "python3 tasks.py test"]
    ci_lines = [
        line
        for line in (ROOT / ".ci/run").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]
    assert ci_lines == ["exec python3 tasks.py test"]


TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


def declared_torch_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [dep for dep in project["dependencies"] if Requirement(dep).name in {"torch", "torchvision"}]


def test_a_chosen_torch_index_installs_torch_from_it_first_and_no_index_is_the_default():
    python = ROOT / ".venv/bin/python"
    default = tasks.install_commands(python, None)
    assert not any("--index-url" in command for command in default)
    chosen = tasks.install_commands(python, TORCH_INDEX)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    assert chosen[0] == [*pip, "--index-url", TORCH_INDEX, *declared_torch_requirements()]
    assert len(declared_torch_requirements()) == 2 and chosen[1:] == default


def test_the_torch_index_comes_from_the_option_or_the_variable():
    variable = {tasks.TORCH_INDEX_VARIABLE: "https://variable.example/simple"}
    assert tasks.torch_index_from(["--no-browser"], {}) == (None, ["--no-browser"])
    assert tasks.torch_index_from(["-k", "x"], variable) == ("https://variable.example/simple", ["-k", "x"])
    for args in (["--torch-index", TORCH_INDEX, "--no-browser"], [f"--torch-index={TORCH_INDEX}", "--no-browser"]):
        assert tasks.torch_index_from(args, variable) == (TORCH_INDEX, ["--no-browser"])  # the option wins
    for args in (["--torch-index"], ["--torch-index", "--no-browser"], ["--torch-index="]):
        with pytest.raises(SystemExit):
            tasks.torch_index_from(args, {})


def test_the_torch_index_reaches_pip_and_a_changed_index_installs_again(tmp_path):
    """``tasks.py env`` against a fake interpreter that records the pip command lines it is given."""
    log = tmp_path / "venv" / "pip.log"
    fake = tmp_path / "venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\n')
    fake.chmod(0o755)

    def setup(*args: str, index: str | None = None) -> list[str]:
        env = {key: value for key, value in os.environ.items() if key != tasks.TORCH_INDEX_VARIABLE}
        env.update({"PRACTICUM_VENV": str(tmp_path / "venv"), **({tasks.TORCH_INDEX_VARIABLE: index} if index else {})})
        before = log.read_text().splitlines() if log.exists() else []
        result = subprocess.run([sys.executable, str(ROOT / "tasks.py"), "env", *args], env=env, capture_output=True)
        assert result.returncode == 0, result.stderr.decode()
        return log.read_text().splitlines()[len(before) :]

    torch_step = f"-m pip install --disable-pip-version-check --index-url {TORCH_INDEX} " + " ".join(
        declared_torch_requirements()
    )
    first = setup(index=TORCH_INDEX)
    assert len(first) == 3 and first[0] == torch_step and "--index-url" not in " ".join(first[1:])
    assert setup(index=TORCH_INDEX) == []  # same index, same project: the install is skipped
    other = setup("--torch-index", "https://other.example/simple", index=TORCH_INDEX)
    assert len(other) == 3 and "--index-url https://other.example/simple torch" in other[0]
    default = setup()
    assert len(default) == 2 and "--index-url" not in " ".join(default)
