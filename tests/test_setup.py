"""The project's own set-up files agree with each other."""

from __future__ import annotations

import re
import sys
import tomllib

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
