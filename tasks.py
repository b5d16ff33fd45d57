#!/usr/bin/env python3
"""The course's two commands, each idempotent and self-contained.

    python3 tasks.py course [jupyter lab options]   set up, then open JupyterLab on exercises/
    python3 tasks.py test   [pytest options]        set up, then run the whole test suite

Both create (or update) a virtual environment in ``.venv`` (override with the
``PRACTICUM_VENV`` variable) with only the standard library's ``venv`` and pip,
install the course as an editable package with its ``course`` and ``dev``
extras, and skip the install when ``pyproject.toml`` has not changed since the
last one. ``python3 tasks.py env`` only sets up; ``python3 tasks.py
environment-yml`` rewrites ``environment.yml`` from ``pyproject.toml``.

Which build of torch: pip's default is the CUDA build (several GB). To install torch and
torchvision from a package index of your choosing first, e.g. PyTorch's CPU builds, give
``--torch-index URL`` (after the command) or set ``PRACTICUM_TORCH_INDEX=URL``:

    PRACTICUM_TORCH_INDEX=https://download.pytorch.org/whl/cpu python3 tasks.py course

No index is the default. A changed index triggers the install again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("PRACTICUM_VENV", ROOT / ".venv")).resolve()
EXTRAS = ("course", "dev")
STAMP = VENV / ".practicum-install"
# torch and torchvision come from the index in --torch-index / PRACTICUM_TORCH_INDEX, when one is given
TORCH_PACKAGES = ("torch", "torchvision")
TORCH_INDEX_VARIABLE = "PRACTICUM_TORCH_INDEX"
TORCH_INDEX_OPTION = "--torch-index"
# command -> Debian package, needed by the tests: the grading sandbox, the browser test's browser,
# a throwaway PostgreSQL server for the gradebook-on-PostgreSQL test
SYSTEM_PACKAGES = {"bwrap": "bubblewrap", "chromium": "chromium", "pg_ctlcluster": "postgresql"}
# JupyterLab settings that every student gets: no "fetch news?" pop-up.
LAB_OVERRIDES = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def install_fingerprint(torch_index: str | None = None) -> str:
    """Hash of what decides the install: the project file, the extras, the Python and the
    index torch comes from (when one is chosen)."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update(",".join(EXTRAS).encode())
    digest.update(sys.version.encode())
    if torch_index:
        digest.update(f"torch index {torch_index}".encode())
    return digest.hexdigest()


def torch_index_from(args: list[str], environ: dict[str, str]) -> tuple[str | None, list[str]]:
    """The index URL for torch (``--torch-index URL`` or ``--torch-index=URL`` among ``args``,
    else ``PRACTICUM_TORCH_INDEX`` in ``environ``, else None) and ``args`` without the option."""
    rest, index, values = [], None, iter(args)
    for arg in values:
        if arg == TORCH_INDEX_OPTION or arg.startswith(TORCH_INDEX_OPTION + "="):
            index = arg.partition("=")[2] if "=" in arg else next(values, "")
            if not index or index.startswith("-"):
                sys.exit(
                    f"{TORCH_INDEX_OPTION} needs a URL, e.g. {TORCH_INDEX_OPTION} https://download.pytorch.org/whl/cpu"
                )
        else:
            rest.append(arg)
    return index or environ.get(TORCH_INDEX_VARIABLE) or None, rest


def torch_requirements() -> list[str]:
    """The project's requirements on ``TORCH_PACKAGES``, as ``pyproject.toml`` declares them."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [dep for dep in dependencies if re.match(r"[A-Za-z0-9._-]+", dep).group(0).lower() in TORCH_PACKAGES]


def install_commands(python: Path, torch_index: str | None) -> list[list[str]]:
    """The pip commands that install the course into the environment of ``python``: torch and
    torchvision from ``torch_index`` first when one is given (then the project's install finds
    them satisfied and keeps them), the course with its extras, the ``--no-deps`` packages."""
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    no_deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["practicum"]["no-deps"]
    commands = [[*pip, "--index-url", torch_index, *torch_requirements()]] if torch_index else []
    return [*commands, [*pip, "-e", f"{ROOT}[{','.join(EXTRAS)}]"], [*pip, "--no-deps", *no_deps]]


def run(*cmd: str | os.PathLike, **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def ensure_env(torch_index: str | None = None) -> Path:
    """Create or update the virtual environment (torch from ``torch_index`` when given); return its Python."""
    if sys.version_info < (3, 11):  # noqa: UP036 (tasks.py may be started by an older python3)
        sys.exit(f"Python >= 3.11 is needed; this is {sys.version.split()[0]}.")
    python = venv_python()
    if not python.exists():
        print(f"Creating the virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, upgrade_deps=False).create(VENV)
    fingerprint = install_fingerprint(torch_index)
    if not STAMP.exists() or STAMP.read_text().strip() != fingerprint:
        for command in install_commands(python, torch_index):
            run(*command)
        STAMP.write_text(fingerprint)
    settings = VENV / "share/jupyter/lab/settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "overrides.json").write_text(json.dumps(LAB_OVERRIDES, indent=2))
    return python


def ensure_system_packages() -> None:
    """Debian packages the tests use (``SYSTEM_PACKAGES``), installed when missing and possible
    (root with apt-get); otherwise say what is missing."""
    missing = [package for command, package in SYSTEM_PACKAGES.items() if shutil.which(command) is None]
    if not missing:
        return
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", *missing, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    else:
        print(f"note: install {' '.join(missing)} (Debian/Ubuntu package names): the tests that need them skip")


def jupyter_env() -> dict[str, str]:
    """Environment in which the venv's ``python3`` kernel comes first."""
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(VENV / "share/jupyter"), env.get("JUPYTER_PATH")]))
    env["PATH"] = os.pathsep.join([str(venv_python().parent), env.get("PATH", "")])
    return env


def course_command(python: Path, args: list[str]) -> list[str]:
    """The ``jupyter lab`` command that ``course`` runs (in ``ROOT``, with ``jupyter_env()``):
    the repository is the server's root, exercises/ opens first (as root, e.g. in a container,
    Jupyter needs ``--allow-root``)."""
    as_root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in args else []
    return [
        str(python),
        "-m",
        "jupyter",
        "lab",
        f"--ServerApp.root_dir={ROOT}",
        "--LabApp.default_url=/lab/tree/exercises",
        *as_root,
        *args,
    ]


def course(args: list[str], torch_index: str | None = None) -> int:
    cmd = course_command(ensure_env(torch_index), args)
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=jupyter_env())


def test(args: list[str], torch_index: str | None = None) -> int:
    python = ensure_env(torch_index)
    ensure_system_packages()
    env = jupyter_env()
    if shutil.which("bwrap"):  # the sandbox can run here: its tests must fail, not skip, if it breaks
        env["GRADING_REQUIRE_SANDBOX"] = "1"
    cmd = [str(python), "-m", "pytest", *pytest_workers(args), *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)


def pytest_workers(args: list[str]) -> list[str]:
    """pytest-xdist's options for the suite: a worker per core (at most 4), each test module on one
    worker (its module fixtures, a graded course for instance, are made once); none when the
    options already choose (``-n``, ``--numprocesses``, ``-p no:xdist``). Most of the suite waits
    on kernels and subprocesses, so two workers on two cores take about half the time."""
    if any(arg.startswith(("-n", "--numprocesses", "--dist")) or arg == "no:xdist" for arg in args):
        return []
    return ["-n", str(max(1, min(4, os.cpu_count() or 1))), "--dist", "loadfile"]


def environment_yml() -> str:
    """``environment.yml`` derived from ``pyproject.toml`` (conda users, Binder)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    python = project["requires-python"]
    pip_deps = list(project["dependencies"])
    for extra in EXTRAS:
        pip_deps += project["optional-dependencies"][extra]
    lines = [
        "# Generated from pyproject.toml by `python3 tasks.py environment-yml`; do not edit by hand.",
        "# The course package itself is installed by `postBuild` (Binder) or `pip install -e .` (conda).",
        "name: robustness-practicum",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python{python}",
        "  - pip",
        "  - pip:",
        *[f'    - "{dep}"' for dep in pip_deps],
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"course", "test", "env", "environment-yml"}:
        print(__doc__)
        return 2
    command = argv[0]
    torch_index, rest = torch_index_from(argv[1:], dict(os.environ))
    if command == "course":
        return course(rest, torch_index)
    if command == "test":
        return test(rest, torch_index)
    if command == "env":
        ensure_env(torch_index)
        return 0
    (ROOT / "environment.yml").write_text(environment_yml())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
