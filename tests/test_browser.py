"""End to end: the course's JupyterLab, driven in a real browser (Debian's ``chromium``, through Playwright).

JupyterLab starts the way ``python3 tasks.py course`` starts it: ``tasks.course_command`` in the
repository root with ``tasks.jupyter_env()``, plus the options a headless run needs (a free port,
a token, no browser of its own). In headless Chromium the tests

- run all cells of the exercise ``01_gradient_saliency`` with Run > Run All Cells: the cells run
  in order until the first one that calls a blank answer, which shows the stub's
  ``NotImplementedError``; Run All stops there, as it does for a student, and no other cell
  shows an error;
- run all cells of the solution ``02_smoothgrad``: every cell runs and none shows red output
  (an error or a warning); then move the explorer's first slider one step with the keyboard and
  check that the figure's image changes and the explorer reports a successful update;
- open Nbgrader > Formgrader in the lab: its "Manage Assignments" page lists the course's
  assignments (solutions/ is nbgrader's source directory only in ``nbgrader_config.py``, so the
  list shows that the course's configuration is loaded) without a warning.

Everything the lab writes for itself stays in a temporary directory: user settings (autosave
off, so the notebooks are never written; windowing off, so that every cell is in the page),
workspaces, runtime files and checkpoints. Screenshots and the server's log go to
``tests/artifacts/browser/``. The module skips when ``chromium`` is not installed
(``python3 tasks.py test`` installs it when run as root, as in CI).
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from playwright.sync_api import Browser, Locator, Page, sync_playwright

sys.path.insert(0, str(ROOT))
import tasks  # noqa: E402

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's `chromium` is not installed; `python3 tasks.py test` "
        "installs it when run as root (apt-get install chromium)",
    ),
]

ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"
EXERCISE = "exercises/01_gradient_saliency/01_gradient_saliency.ipynb"
SOLUTION = "solutions/02_smoothgrad/02_smoothgrad.ipynb"
# Headless Chromium on a machine without network: no sandbox (root, containers), no GPU, no
# background requests that would wait for a network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Lab user settings for the test: never save the notebooks; keep every cell in the page.
USER_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}
STARTUP_TIMEOUT = 60  # s for the server to answer
RUN_ALL_TIMEOUT = 150  # s for Run All Cells of one notebook
STDERR = "application/vnd.jupyter.stderr"  # JupyterLab's mime type of errors and stderr output


class Lab:
    """A running JupyterLab server: its ``url``, ``token`` and a REST helper."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token

    def api(self, path: str, method: str = "GET"):
        """JSON answer of the server's REST API at ``path`` (``None`` for an empty answer)."""
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def page_url(self, path: str) -> str:
        """URL of ``path`` (e.g. ``lab/tree/x.ipynb``) in a fresh workspace (only what the URL opens)."""
        return f"{self.url}/{path}?reset&token={self.token}"

    def shut_down_kernels(self) -> None:
        for session in self.api("/api/sessions"):
            self.api(f"/api/sessions/{session['id']}", method="DELETE")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_user_settings(settings_dir: Path) -> None:
    for plugin, values in USER_SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def lab_environment(state: Path) -> dict[str, str]:
    """``tasks.jupyter_env()`` with the lab's own state in ``state``, one thread per kernel, and none
    of the developer's ``PRACTICUM_*`` settings (the notebooks run with their defaults)."""
    env = {key: value for key, value in tasks.jupyter_env().items() if not key.startswith("PRACTICUM_")}
    env.update(
        OMP_NUM_THREADS="1",
        JUPYTERLAB_SETTINGS_DIR=str(state / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(state / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(state / "runtime"),
    )
    return env


def wait_until_answering(lab: Lab, server: subprocess.Popen, log_path: Path) -> None:
    """Wait for the server's REST API; fail with the end of its log if it exits or stays silent."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while server.poll() is None and time.monotonic() < deadline:
        try:
            lab.api("/api/status")
            return
        except OSError:
            time.sleep(0.3)
    state = (
        f"exited with {server.returncode}" if server.poll() is not None else f"did not answer in {STARTUP_TIMEOUT} s"
    )
    pytest.fail(f"JupyterLab {state}:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    """JupyterLab started as ``python3 tasks.py course`` starts it, on a free port with a token."""
    state = tmp_path_factory.mktemp("lab")
    write_user_settings(state / "settings")
    port, token = free_port(), secrets.token_hex(16)
    options = [
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        f"--IdentityProvider.token={token}",
        f"--FileCheckpoints.checkpoint_dir={state / 'checkpoints'}",
    ]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "jupyterlab.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            tasks.course_command(tasks.venv_python(), options),
            cwd=tasks.ROOT,
            env=lab_environment(state),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    running = Lab(f"http://127.0.0.1:{port}", token)
    gradebook_existed = (ROOT / "gradebook.db").exists()
    try:
        wait_until_answering(running, server, log_path)
        yield running
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if not gradebook_existed:  # the formgrader creates the course's gradebook on first use
            (ROOT / "gradebook.db").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, lab, request) -> Iterator[Page]:
    """A fresh browser page; afterwards its screenshot is saved as ``<test name>.png`` (also on
    failure) and the kernels it started are shut down."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    yield tab
    tab.screenshot(path=ARTIFACTS / f"{request.node.name}.png")
    context.close()
    lab.shut_down_kernels()


def open_notebook(page: Page, lab: Lab, path: str) -> Locator:
    """Open the notebook ``path`` (relative to the repository) and wait for its kernel; return its panel."""
    page.goto(lab.page_url(f"lab/tree/{path}"))
    panel = page.locator(".jp-NotebookPanel")
    page.wait_for_function(
        """panel => panel.querySelector('.jp-Toolbar-kernelName')?.textContent.includes('Python')
                    && panel.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'""",
        arg=panel.element_handle(timeout=STARTUP_TIMEOUT * 1000),
        timeout=STARTUP_TIMEOUT * 1000,
    )
    return panel


def run_all_cells(page: Page, panel: Locator) -> list[dict]:
    """Run > Run All Cells in a fresh kernel, wait until it is done; each code cell's prompt and
    red (stderr) outputs: ``[{"prompt": "[1]:", "stderr": [text, ...]}, ...]``."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(
        """panel => {
            const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim());
            return panel.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'
                   && prompts[0] === '[1]:' && !prompts.some(p => p.includes('*'));
        }""",
        arg=panel.element_handle(),
        timeout=RUN_ALL_TIMEOUT * 1000,
    )
    return panel.evaluate(
        """(panel, mime) => [...panel.querySelectorAll('.jp-CodeCell')].map(cell => ({
            prompt: cell.querySelector('.jp-InputPrompt').textContent.trim(),
            stderr: [...cell.querySelectorAll(`.jp-OutputArea-output[data-mime-type="${mime}"]`)]
                .map(o => o.textContent),
        }))""",
        STDERR,
    )


def code_cell_count(path: str) -> int:
    return sum(cell["cell_type"] == "code" for cell in json.loads((ROOT / path).read_text())["cells"])


def test_exercise_runs_until_its_first_blank_answer(page, lab):
    panel = open_notebook(page, lab, EXERCISE)
    cells = run_all_cells(page, panel)

    assert len(cells) == code_cell_count(EXERCISE)
    failed = [i for i, cell in enumerate(cells) if cell["stderr"]]
    assert failed, "every cell of the exercise ran without error: its answers are not blank"
    first = failed[0]
    page.locator(".jp-Notebook .jp-CodeCell").nth(first).scroll_into_view_if_needed()  # for the screenshot
    assert failed == [first], f"cells other than the first failing one show errors: {failed}"
    error = "\n".join(cells[first]["stderr"])
    assert "NotImplementedError" in error and "raise NotImplementedError()" in error, (
        f"the first error is not a blank answer's NotImplementedError:\n{error}"
    )
    prompts = [cell["prompt"] for cell in cells]
    assert prompts[: first + 1] == [f"[{n}]:" for n in range(1, first + 2)], prompts
    assert all(prompt == "[ ]:" for prompt in prompts[first + 1 :]), f"Run All did not stop at the error: {prompts}"


def test_solution_runs_cleanly_and_its_explorer_redraws(page, lab):
    panel = open_notebook(page, lab, SOLUTION)
    cells = run_all_cells(page, panel)

    assert [cell["prompt"] for cell in cells] == [f"[{n}]:" for n in range(1, code_cell_count(SOLUTION) + 1)]
    red = {cell["prompt"]: "\n".join(cell["stderr"])[-2000:] for cell in cells if cell["stderr"]}
    assert not red, f"cells show errors or warnings: {red}"

    explorer = panel.locator(".widget-vbox:has(> img.widget-image)").first
    image, status = explorer.locator("img.widget-image"), explorer.locator("> .widget-label")
    explorer.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    before_src, before = image.get_attribute("src"), image.screenshot()
    explorer.screenshot(path=ARTIFACTS / "solution_explorer_before.png")

    slider = explorer.locator("[role=slider]").first
    value = float(slider.get_attribute("aria-valuenow"))
    slider.focus()
    slider.press("ArrowRight")
    page.wait_for_function(
        "([img, src]) => img.src !== src && img.complete && img.naturalWidth > 0",
        arg=[image.element_handle(), before_src],
        timeout=30_000,
    )
    after = image.screenshot()
    explorer.screenshot(path=ARTIFACTS / "solution_explorer_after.png")

    assert float(slider.get_attribute("aria-valuenow")) > value
    assert after != before, "the explorer's figure looks the same after the slider moved"
    assert status.inner_text().startswith("updated in"), f"the explorer's update failed: {status.inner_text()}"


def test_formgrader_lists_the_course_assignments(page, lab):
    page.goto(lab.page_url("lab"))
    page.get_by_role("menuitem", name="Nbgrader", exact=True).click()
    page.get_by_role("menuitem", name="Formgrader", exact=True).click()
    formgrader = page.frame_locator("iframe[src$='/formgrader']")
    assignments = sorted(path.parent.name for path in ROOT.glob("solutions/*/*.ipynb"))
    rows = formgrader.locator("table tbody tr td:first-child")
    rows.nth(len(assignments) - 1).wait_for(timeout=30_000)

    assert formgrader.locator("h1").filter(has_text="Manage Assignments").count() == 1
    assert sorted(rows.all_inner_texts()) == assignments
    warnings = formgrader.locator(".alert-warning:visible, .alert-danger:visible").all_inner_texts()
    assert not warnings, f"the formgrader warns: {warnings}"
