"""Time the README's two commands from a fresh clone of this repository.

    python3 benchmarks/time_setup.py [--with-tests]

Clones the current commit into a temporary directory, then measures (1) ``python3 tasks.py
course --no-browser`` until JupyterLab answers on its URL (the environment is created on
the way), (2) the same command again (the idempotent, already-set-up case), and with
``--with-tests`` (3) ``python3 tasks.py test`` to the end of the suite.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def time_course(clone: Path, port: int) -> float:
    """Seconds from starting the course command until JupyterLab serves its page."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "tasks.py", "course", "--no-browser", f"--port={port}", "--ServerApp.token=bench"],
        cwd=clone,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the course command exited early:\n{process.stdout.read()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token=bench", timeout=2) as page:
                    if page.status == 200 and re.search(rb"JupyterLab", page.read()):
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--with-tests", action="store_true")
    parser.add_argument("--port", type=int, default=8917)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        print(f"course, fresh clone:  {time_course(clone, args.port):6.0f} s (environment created, lab served)")
        print(f"course, second run:   {time_course(clone, args.port):6.0f} s")
        if args.with_tests:
            start = time.perf_counter()
            result = subprocess.run([sys.executable, "tasks.py", "test", "-q"], cwd=clone)
            print(f"tests (already set up): {time.perf_counter() - start:6.0f} s, exit code {result.returncode}")


if __name__ == "__main__":
    main()
