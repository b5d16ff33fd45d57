"""Grade many variants of a notebook's answer cells in one execution, forking at each answer cell.

``python -m tests.mutation.forkrun VARIANTS.json [--workers N]`` executes the solution notebook
once, cell after cell, in an IPython shell (magics and ``get_ipython`` work) in this process.
At the start of each answer cell that has variants, it forks one child per variant (at most
``--workers`` alive at once) and then runs the original cell itself and goes on. A child
runs its variant of the cell, then the following cells, up to the notebook's last graded test
cell (or the spec's ``through`` test cell: parent and children stop there), exactly as a
kernel would have run the whole edited notebook from the top (the cells before are the same
and have run in the same state), and stops at the first graded test cell
that fails. A test cell *fails* as it does for nbgrader's validator: it raises, or it writes
to stderr something that the course's ``IgnorePattern`` (warnings, progress bars; the spec's
``stderr_pattern``) does not forgive. Nothing of the ``grading`` package is imported before
the notebook's setup cell imports its checker, as in a fresh kernel. Other cells may fail and
the run goes on, as in nbgrader's ``Execute`` (``allow_errors``).

Verdicts, one JSON line each on stdout: ``killed`` (``test`` is the first test cell that
failed, ``message`` its error), ``survived`` (every test cell passed: full marks), ``timeout``
and ``crashed``, which count as killed: a cell that runs past ``--cell-timeout`` seconds is
interrupted, as nbgrader's ``Execute`` interrupts it (the cell fails, the run goes on); a
child still running after ``--time-limit`` seconds is killed (``timeout``); a child that dies
without a verdict (a crash of the interpreter, ``os._exit``) is ``crashed``: a real grader
would report such a submission as failed, never with full marks. The last line is
``{"done": ...}`` with the time of each cell in the original run.

Before forking, the run sets one torch thread and matplotlib's Agg backend (``%matplotlib
inline`` selects Agg: figures are never rendered), and IPython keeps no history (no thread, no
database): a forked child then holds no lock another thread could own. If a test cell of the
original solution fails here, the harness does not reproduce grading and the run stops with
an error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CELL_TIMEOUT = 120  # s, the course's c.Execute.timeout
DEFAULT_TIME_LIMIT = 900  # s, the course's notebook_time_limit


@dataclass
class Verdict:
    id: str
    status: str  # killed, survived, timeout, crashed
    test: str | None = None
    message: str = ""
    seconds: float = 0.0

    @property
    def killed(self) -> bool:
        return self.status != "survived"


class CellTimeout(KeyboardInterrupt):
    """Raised in a cell that runs past the cell time limit (nbgrader interrupts the kernel)."""


def graded_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader") or {}
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def grade_id(cell) -> str | None:
    return (cell.metadata.get("nbgrader") or {}).get("grade_id")


def make_shell():
    """An IPython shell without history, whose ``%matplotlib`` selects Agg."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class Shell(InteractiveShell):
        def enable_gui(self, gui=None):
            pass

        def enable_matplotlib(self, gui=None):
            import matplotlib

            matplotlib.use("Agg")
            return "agg", "agg"

    config = Config()
    config.HistoryManager.enabled = False
    return Shell.instance(config=config)


class Runner:
    """Runs cells in the shell with fd 2 captured in a file, so that each cell's stderr is known."""

    def __init__(self, shell, stderr_pattern: str, cell_timeout: float):
        self.shell, self.pattern, self.cell_timeout = shell, re.compile(stderr_pattern), cell_timeout
        self.capture_stderr()

    def capture_stderr(self) -> None:
        """Point fd 2 at a file of this process's own (a forked child calls it again)."""
        sys.stderr.flush()
        fd, path = tempfile.mkstemp(prefix="stderr-")
        os.dup2(fd, 2)
        os.close(fd)
        os.unlink(path)

    def run(self, source: str) -> tuple[BaseException | None, str]:
        """Run one cell: (the error it raised or None, what it wrote to stderr)."""
        import matplotlib.pyplot as plt

        os.ftruncate(2, 0)
        os.lseek(2, 0, os.SEEK_SET)
        signal.setitimer(signal.ITIMER_REAL, self.cell_timeout)
        try:
            result = self.shell.run_cell(source, store_history=False, silent=False)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stderr.flush()
        sys.stdout.flush()
        plt.close("all")
        os.lseek(2, 0, os.SEEK_SET)
        written = b""
        while chunk := os.read(2, 1 << 16):
            written += chunk
        error = result.error_before_exec or result.error_in_exec
        return error, written.decode(errors="replace")

    def test_fails(self, error, stderr: str) -> str | None:
        """Why a graded test cell fails (as nbgrader's validator decides), or None."""
        if error is not None:
            text = f"{type(error).__name__}: {error}".strip()
            return text.splitlines()[0][:300] if text else type(error).__name__
        if stderr and not self.pattern.search(stderr):
            return f"wrote to stderr: {stderr.strip().splitlines()[0][:200] if stderr.strip() else '(blank)'}"
        return None


def on_alarm(signum, frame):
    raise CellTimeout("the cell ran past its time limit (no reply before timeout)")


def child(runner: Runner, cells, start: int, source: str, variant_id: str, result_path: str) -> None:
    """In a forked child: the variant of cell ``start``, then the following cells; write the verdict."""
    began = time.perf_counter()
    runner.capture_stderr()
    os.chdir(tempfile.mkdtemp(prefix="variant-"))
    verdict = Verdict(variant_id, "survived")
    for index in range(start, len(cells)):
        error, stderr = runner.run(source if index == start else cells[index].source)
        if graded_test(cells[index]):
            why = runner.test_fails(error, stderr)
            if why is not None:
                verdict = Verdict(variant_id, "killed", grade_id(cells[index]), why)
                break
    verdict.seconds = round(time.perf_counter() - began, 2)
    with open(result_path + ".part", "w") as file:
        json.dump(asdict(verdict), file)
    os.rename(result_path + ".part", result_path)


class Pool:
    """Forked children, at most ``workers`` alive; each verdict is printed as one JSON line."""

    def __init__(self, workers: int, time_limit: float, out, results_dir: str):
        self.workers, self.time_limit, self.out, self.dir = workers, time_limit, out, results_dir
        self.alive: dict[int, tuple[str, float, str]] = {}  # pid -> (variant id, start, result file)
        self.count = 0

    def submit(self, variant_id: str, target) -> None:
        """Fork a child that calls ``target(result_path)`` and exits (after waiting for a free slot)."""
        while len(self.alive) >= self.workers:
            self.reap(block=True)
        self.count += 1
        path = os.path.join(self.dir, f"{self.count}.json")
        pid = os.fork()
        if pid == 0:  # the child: never returns
            status = 1  # no verdict written: the parent reports a crash
            try:
                target(path)
                status = 0
            finally:
                os._exit(status)
        self.alive[pid] = (variant_id, time.perf_counter(), path)

    def reap(self, block: bool = False) -> None:
        """Collect finished children (waiting for one if ``block``), kill those past the limit."""
        while True:
            for pid, (variant_id, started, path) in list(self.alive.items()):
                done, _ = os.waitpid(pid, os.WNOHANG)
                elapsed = time.perf_counter() - started
                if done:
                    self.finish(pid, self.read(variant_id, path, elapsed))
                elif elapsed > self.time_limit:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    message = f"still running after {self.time_limit:.0f} s: killed"
                    self.finish(pid, Verdict(variant_id, "timeout", message=message, seconds=round(elapsed, 2)))
            if not block or len(self.alive) < self.workers:
                return
            time.sleep(0.02)

    def read(self, variant_id: str, path: str, elapsed: float) -> Verdict:
        try:
            with open(path) as file:
                return Verdict(**json.load(file))
        except FileNotFoundError:
            return Verdict(
                variant_id, "crashed", message="the process died without a verdict", seconds=round(elapsed, 2)
            )

    def finish(self, pid: int, verdict: Verdict) -> None:
        del self.alive[pid]
        print(json.dumps(asdict(verdict)), file=self.out, flush=True)

    def drain(self) -> None:
        while self.alive:
            self.reap()
            time.sleep(0.02)


def run(spec: dict, workers: int, cell_timeout: float, time_limit: float, out) -> None:
    """Execute ``spec["notebook"]``'s solution with forks for ``spec["variants"]`` (see the module)."""
    import nbformat

    notebook = spec["notebook"]
    nb = nbformat.read(ROOT / "solutions" / notebook / f"{notebook}.ipynb", as_version=4)
    tests = [index for index, cell in enumerate(nb.cells) if graded_test(cell)]
    through = spec.get("through")
    if through is not None and through not in {grade_id(nb.cells[index]) for index in tests}:
        raise SystemExit(f"{notebook}: no graded test cell {through!r}")
    last_test = next(i for i in tests if grade_id(nb.cells[i]) == through) if through else max(tests)
    cells = [cell for cell in nb.cells[: last_test + 1] if cell.cell_type == "code"]
    by_cell: dict[str, list[dict]] = {}
    for variant in spec["variants"]:
        by_cell.setdefault(variant["cell"], []).append(variant)
    unknown = set(by_cell) - {grade_id(cell) for cell in cells}
    if unknown:
        raise SystemExit(f"{notebook}: no answer cell {sorted(unknown)} before its last test cell")

    import torch
    import tqdm

    torch.set_num_threads(1)
    tqdm.tqdm.monitor_interval = 0  # no monitor thread
    signal.signal(signal.SIGALRM, on_alarm)
    runner = Runner(make_shell(), spec["stderr_pattern"], cell_timeout)
    pool = Pool(workers, time_limit, out, tempfile.mkdtemp(prefix="verdicts-"))
    os.chdir(tempfile.mkdtemp(prefix="solution-"))
    times, began = {}, time.perf_counter()
    for index, cell in enumerate(cells):
        for variant in by_cell.get(grade_id(cell), ()):
            pool.submit(
                variant["id"], lambda path, v=variant, i=index: child(runner, cells, i, v["source"], v["id"], path)
            )
        started = time.perf_counter()
        error, stderr = runner.run(cell.source)
        times[grade_id(cell) or f"cell {index}"] = round(time.perf_counter() - started, 2)
        if graded_test(cell) and (why := runner.test_fails(error, stderr)):
            pool.drain()
            raise SystemExit(f"{notebook}: the solution fails {grade_id(cell)} in this harness: {why}")
        pool.reap()
    pool.drain()
    print(json.dumps({"done": notebook, "seconds": round(time.perf_counter() - began, 1), "cells": times}), file=out)


def prepare_environment() -> None:
    """The notebooks' defaults on the CPU, one thread, Agg (before anything imports torch)."""
    from .score import PARAMETERS

    for key in PARAMETERS:
        os.environ.pop(key, None)
    os.environ["PRACTICUM_DEVICE"] = "cpu"
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    os.environ["MPLBACKEND"] = "Agg"
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def grade_variants(
    notebook: str,
    variants: list[tuple[str, str, str]],
    *,
    stderr_pattern: str,
    workers: int = 2,
    on_verdict=None,
    through: str | None = None,
) -> tuple[dict[str, Verdict], dict]:
    """Grade ``variants`` ((id, answer cell, cell source), ...) of ``notebook`` in a fresh process
    (this module's command); ({id: verdict}, the run's summary line). ``on_verdict(verdict)`` is
    called as each arrives. ``through``: execute only up to this graded test cell (default: the
    last), as the validator does for :func:`tests.mutation.score.through`."""
    spec = {
        "notebook": notebook,
        "stderr_pattern": stderr_pattern,
        "variants": [{"id": id_, "cell": cell, "source": source} for id_, cell, source in variants],
    }
    if through is not None:
        spec["through"] = through
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix=f"variants-{notebook}-") as file:
        json.dump(spec, file)
        file.flush()
        command = [sys.executable, "-m", "tests.mutation.forkrun", file.name, "--workers", str(workers)]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        verdicts, summary = {}, None
        for line in process.stdout:
            record = json.loads(line)
            if "done" in record:
                summary = record
                continue
            verdict = Verdict(**record)
            verdicts[verdict.id] = verdict
            if on_verdict:
                on_verdict(verdict)
        if process.wait() != 0 or summary is None:
            raise RuntimeError(f"{notebook}: the fork runner failed (exit status {process.returncode}); see its stderr")
    missing = {id_ for id_, _, _ in variants} - set(verdicts)
    if missing:
        raise RuntimeError(f"{notebook}: no verdict for {sorted(missing)[:5]}")
    return verdicts, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation.forkrun", description=__doc__.splitlines()[0])
    parser.add_argument(
        "variants",
        help='JSON: {"notebook": NAME, "stderr_pattern": REGEX, "variants": [{"id", "cell", "source"}, ...], '
        '"through": TEST CELL (optional)}',
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT)
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT)
    args = parser.parse_args(argv)
    prepare_environment()
    spec = json.loads(Path(args.variants).read_text())
    # Verdicts go to the original stdout; the notebook's own output (fd 1) goes nowhere.
    # The harness's own errors go to the original stderr (fd 2 captures the cells' stderr).
    out, errors = os.fdopen(os.dup(1), "w"), os.fdopen(os.dup(2), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        run(spec, args.workers, args.cell_timeout, args.time_limit, out)
    except BaseException as error:
        traceback.print_exception(error, file=errors)
        errors.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
