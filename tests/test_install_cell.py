"""Colab and Binder: every notebook links to its exercise, and its setup cell installs the course.

The fresh-environment test runs the setup cell of a notebook (IPython magics removed) with the
Python of a new, empty virtual environment, the course source set to a local path, the way a
student's first cell runs on Colab: it must clone and install the course, then import
everything the notebook needs and load a shipped checkpoint.
"""

from __future__ import annotations

import os
import re
import subprocess
import venv
from pathlib import Path
from urllib.parse import unquote

import mistune
import nbformat
import pytest

from grading import links

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted(ROOT.glob("solutions/*/*.ipynb"))


def setup_source(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(cell for cell in nb.cells if cell.cell_type == "code").source


def test_links_and_install_source_are_up_to_date():
    assert links.main(["--check"]) == 0, "run `python -m grading.links`, then release the exercises"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_exercise_links_to_itself_and_installs_from_the_repository(path):
    url, branch = links.repository()
    exercise = nbformat.read(ROOT / "exercises" / path.stem / path.name, as_version=4)
    title = exercise.cells[0].source
    assert links.links_line(path.stem, url, branch) in title
    assert (
        f"colab.research.google.com/github/{url.removeprefix('https://github.com/')}/blob/{branch}/exercises/{path.stem}/{path.name}"
        in title
    )
    assert f'"PRACTICUM_COURSE_SOURCE", "{url}.git")' in setup_source(ROOT / "exercises" / path.stem / path.name)


def test_stamp_follows_a_new_address_and_is_idempotent():
    nb = nbformat.read(SOLUTIONS[0], as_version=4)
    assert links.stamp(nb, SOLUTIONS[0].stem, "https://github.com/someone/fork", "dev")
    assert "github/someone/fork/blob/dev/exercises/" in nb.cells[0].source
    assert sum(map(links.is_links_line, nb.cells[0].source.splitlines())) == 1
    assert '"https://github.com/someone/fork.git")' in setup_source_of(nb)
    assert not links.stamp(nb, SOLUTIONS[0].stem, "https://github.com/someone/fork", "dev")


@pytest.mark.parametrize("folder", ["solutions", "exercises"])
def test_title_cell_renders_the_badges_as_images(folder):
    """CommonMark (mistune, which comes with nbconvert) renders each title cell's links line as two
    linked badge images, not as raw text or an HTML block, as JupyterLab and GitHub do."""
    for path in sorted((ROOT / folder).glob("*/*.ipynb")):
        title = nbformat.read(path, as_version=4).cells[0]
        html = mistune.html(title.source)
        badges = re.findall(r'<a href="([^"]+)"><img src="([^"]+)" alt="([^"]+)" />', html)
        assert [(src, alt) for _, src, alt in badges] == [
            (links.COLAB_BADGE, "Open in Colab"),
            (links.BINDER_BADGE, "Launch Binder"),
        ], f"{path.relative_to(ROOT)}: badges not rendered as images"
        assert "[![" not in html, f"{path.relative_to(ROOT)}: literal badge markdown in the rendered title"
        assert all(f"exercises/{path.stem}/{path.name}" in unquote(href) for href, _, _ in badges)


def setup_source_of(nb: nbformat.NotebookNode) -> str:
    return next(cell for cell in nb.cells if cell.cell_type == "code").source


@pytest.mark.slow
def test_setup_cell_installs_the_course_from_a_local_path_in_a_fresh_environment(tmp_path):
    if subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "helpers", "grading", "data", "pyproject.toml"],
        capture_output=True,
        text=True,
    ).stdout.strip():
        pytest.skip("the package has uncommitted changes; the setup cell clones what is committed")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    workdir = tmp_path / "colab"
    workdir.mkdir()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV", "PRACTICUM_"))
    }
    environment.update(PRACTICUM_COURSE_SOURCE=str(ROOT), MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    assert (
        subprocess.run([python, "-c", "import helpers"], cwd=workdir, env=environment, capture_output=True).returncode
        != 0
    ), "the fresh environment already has helpers"
    code = "\n".join(line for line in setup_source(SOLUTIONS[0]).splitlines() if not line.startswith("%"))
    code += (
        "\nimport helpers\nmodel = load_pretrained('mnist_standard', device='cpu')\n"
        "print('installed', helpers.__file__)\n"
    )
    result = subprocess.run(
        [python, "-c", code], cwd=workdir, env=environment, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"installed {workdir / 'robustness-practicum' / 'helpers' / '__init__.py'}" in result.stdout
