"""``python -m grading preflight`` on every real notebook: perfect, blank and tampered cases.

For each ``solutions/NN_topic/NN_topic.ipynb`` the preflight grades, in the sandbox and
exactly as students are graded, the solution (full marks expected), the blank exercise
(0 expected) and a tampered solution (tests emptied, points inflated, last test deleted:
full marks out of the true maximum expected). The six run in one scratch course, released
afresh from the solutions, two at a time (each preflight grades in a scratch gradebook of
its own, so they cannot clash). Notebooks run on the CPU with ``OMP_NUM_THREADS=1`` and
with small experiment sizes (``SMALL``, the notebooks' own parameters): the tests that
are graded do not depend on them, and the whole runs 3-4 times as fast.
``PRACTICUM_PREFLIGHT_DEFAULTS=1`` keeps the notebooks' default sizes instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from course_tools import PYTHON, ROOT, course_base, requires_sandbox

NAMES = sorted(path.stem for path in ROOT.glob("solutions/*/*.ipynb"))
WORKERS = 2
# Experiment sizes (the notebooks' parameters) that keep every graded test meaningful:
# the tests draw at most 32 test images (03), and compare with references at the same settings.
SMALL = {
    "01_gradient_saliency": {"PRACTICUM_N_IMAGES": "32"},
    "02_smoothgrad": {"PRACTICUM_N_IMAGES": "16"},
    "03_pgd_attacks": {"PRACTICUM_N_IMAGES": "32", "PRACTICUM_STEPS": "3"},
    "04_nonrobust_features": {"PRACTICUM_N_IMAGES": "200", "PRACTICUM_STEPS": "3", "PRACTICUM_EPOCHS": "1"},
    "05_robust_models": {
        "PRACTICUM_N_IMAGES": "32",
        "PRACTICUM_STEPS": "3",
        "PRACTICUM_EPOCHS": "1",
        "PRACTICUM_N_TRAIN": "500",
    },
    "06_feature_visualization": {"PRACTICUM_N_IMAGES": "200", "PRACTICUM_STEPS": "20"},
}
CONFIG = """import sys
sys.path.insert(0, {root!r})
from grading.config import configure

c = get_config()
configure(c, {course!r})
"""
RELEASE = (
    "import sys\nfrom grading.workflow import Course\ncourse = Course(sys.argv[1])\n"
    "for assignment in sys.argv[2:]:\n    course.release(assignment)\n"
)


@dataclass
class Preflight:
    result: subprocess.CompletedProcess
    seconds: float


def environment(name: str) -> dict[str, str]:
    """The grader's environment for one notebook: CPU, one thread, its small sizes (the sandbox
    passes the PRACTICUM_ variables on to the kernels)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PRACTICUM_")}
    env.update(PRACTICUM_DEVICE="cpu", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    if os.environ.get("PRACTICUM_PREFLIGHT_DEFAULTS") != "1":
        env.update(SMALL[name])
    return env


def total_points(name: str) -> float:
    """The points of the notebook's autograded test cells, read from its metadata."""
    nb = nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb", as_version=4)
    return sum(
        float(cell.metadata.nbgrader["points"])
        for cell in nb.cells
        if cell.cell_type == "code"
        and cell.metadata.get("nbgrader", {}).get("grade")
        and not cell.metadata.nbgrader.get("solution")
    )


@pytest.fixture(scope="module")
def preflights() -> dict[str, Preflight]:
    """The preflight of every notebook, in a scratch course with all six released."""
    requires_sandbox()
    course = Path(tempfile.mkdtemp(prefix="grading-notebooks-", dir=course_base()))
    course.chmod(0o755)
    try:
        shutil.copytree(ROOT / "solutions", course / "solutions")
        (course / "nbgrader_config.py").write_text(CONFIG.format(root=str(ROOT), course=str(course)))
        released = subprocess.run(
            [PYTHON, "-c", RELEASE, str(course), *NAMES], cwd=ROOT, capture_output=True, text=True, timeout=600
        )
        assert released.returncode == 0, f"release failed:\n{released.stdout}\n{released.stderr}"

        def preflight(name: str) -> Preflight:
            started = time.monotonic()
            result = subprocess.run(
                [PYTHON, "-m", "grading", "--course", str(course), "preflight", name],
                cwd=ROOT,
                env=environment(name),
                capture_output=True,
                text=True,
                timeout=1200,
            )
            return Preflight(result, time.monotonic() - started)

        started = time.monotonic()
        with ThreadPoolExecutor(WORKERS) as pool:
            # the longest first, so that the two workers finish together
            order = sorted(NAMES, key=lambda name: name not in ("04_nonrobust_features", "05_robust_models"))
            runs = dict(zip(order, pool.map(preflight, order)))
        print(
            f"\npreflight of {len(NAMES)} notebooks, {WORKERS} at a time: {time.monotonic() - started:.0f} s ("
            + ", ".join(f"{name} {run.seconds:.0f} s" for name, run in runs.items())
            + ")"
        )
        yield runs
    finally:
        shutil.rmtree(course, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_preflight_passes_with_the_expected_scores(name, preflights):
    run = preflights[name]
    output = run.result.stdout + run.result.stderr
    assert run.result.returncode == 0, f"the preflight of {name} failed ({run.seconds:.0f} s):\n{output[-4000:]}"
    total = total_points(name)
    assert total > 0
    expected = f"preflight: {name}: solution {total}/{total}, blank 0/{total}, tampered {total}/{total}"
    assert expected in run.result.stdout.splitlines(), f"expected {expected!r} in:\n{output[-4000:]}"
