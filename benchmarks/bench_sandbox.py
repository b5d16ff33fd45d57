"""What the sandbox adds to each submission: a grading kernel's start-up, with and without it.

    .venv/bin/python benchmarks/bench_sandbox.py                    # this tree: sandboxed, unsandboxed
    .venv/bin/python benchmarks/bench_sandbox.py --compare db1aadb~1 --repeats 7

Each measurement is one grading kernel as autograde starts it (``SandboxedExecute``'s kernel
manager, the launcher, bubblewrap when sandboxed), from ``start_kernel`` until the kernel
answers, and its shutdown. Each runs in a fresh Python process in a scratch course; the
variants take turns (interleaved), and the table gives the median and the range of
``--repeats`` runs, with the ratios to the unsandboxed kernel measured in the same run.
``--compare REF`` adds the sandbox of the ``grading`` package at git revision ``REF`` (e.g.
the deny-list sandbox this one replaced), exported into a scratch directory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run in a fresh process with the ``grading`` package of argv[1] first on the path; prints seconds.
DRIVER = """
import asyncio, json, os, sys, time
sys.path.insert(0, sys.argv[1])
os.environ["GRADING_ALLOW_UNSANDBOXED"] = "1" if sys.argv[2] == "unsandboxed" else "0"
import nbformat
from traitlets.config import Config
from grading.sandbox import SandboxedExecute, sandbox_problem

config = Config()
config.CourseDirectory.root = os.getcwd()
if sys.argv[2] == "unsandboxed":
    config.SandboxedExecute.bwrap = "no-such-bwrap"  # sandbox_problem: not installed, allowed
step = SandboxedExecute(config=config)
step.nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
step._settings = step.launcher_settings()
assert step._settings["sandbox"] == (sys.argv[2] == "sandboxed"), step._settings["sandbox"]

async def main():
    km = step.create_kernel_manager()
    start = time.monotonic()
    await km.start_kernel()
    client = km.client()
    client.start_channels()
    await client.wait_for_ready(timeout=120)
    ready = time.monotonic()
    client.stop_channels()
    await km.shutdown_kernel()
    print(json.dumps({"ready": ready - start, "total": time.monotonic() - start}))

asyncio.run(main())
"""


def export_package(ref: str, target: Path) -> Path:
    """The ``grading`` package at git revision ``ref``, unpacked under ``target``; its parent."""
    archive = subprocess.run(["git", "archive", ref, "grading"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def measure(package_root: Path, mode: str, course: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(package_root), mode],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{package_root} ({mode}) failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare", metavar="REF", help="also the sandbox of the grading package at this git revision")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-", dir="/var/tmp") as scratch:
        scratch = Path(scratch)
        os.chmod(scratch, 0o755)
        course = scratch / "course"
        course.mkdir(mode=0o755)
        variants = {"unsandboxed": (ROOT, "unsandboxed"), "sandboxed (this tree)": (ROOT, "sandboxed")}
        if args.compare:
            old = export_package(args.compare, scratch)
            variants[f"sandboxed ({args.compare})"] = (old, "sandboxed")
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, (package, mode) in variants.items():
                times[name].append(measure(package, mode, course)["total"])
    load = os.getloadavg()[0]
    base = statistics.median(times["unsandboxed"])
    print(
        f"kernel start-up until ready, and shutdown; median of {args.repeats} interleaved runs "
        f"(load average {load:.1f}, {os.cpu_count()} CPUs)"
    )
    print(f"{'variant':34s} {'median':>8s} {'range':>15s} {'/ unsandboxed':>14s} {'added':>8s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:34s} {median:7.2f}s {min(values):6.2f}-{max(values):5.2f}s {median / base:13.2f}x "
            f"{median - base:+7.2f}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
