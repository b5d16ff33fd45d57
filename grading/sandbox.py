"""Autograde's kernels, sandboxed: the preprocessor and kernel manager nbgrader uses.

``grading.config.configure`` puts :class:`SandboxedExecute` in place of nbgrader's
``Execute`` in ``Autograde.autograde_preprocessors``, so every ``nbgrader autograde``
in the course directory (command line, formgrader or :mod:`grading`'s commands) runs
each submission in a :class:`SandboxKernelManager` kernel; ``nbgrader validate`` and
students' own kernels are unchanged. The kernel talks to the grader over ZeroMQ's IPC
transport through sockets in a private per-kernel directory (the sandbox has no
network), and is started by ``launcher.py``, which sets the limits and runs ``bwrap``.

Without a working sandbox, grading stops with :class:`SandboxUnavailable` unless the
instructor allows it explicitly (``GRADING_ALLOW_UNSANDBOXED=1`` or
``c.SandboxedExecute.allow_unsandboxed = True``).
"""

from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbgrader.preprocessors import Execute
from traitlets import Bool, Dict, Integer, List, Unicode, default

from .paths import find_coursedir, private_paths

LAUNCHER = Path(__file__).resolve().with_name("launcher.py")
ALLOW_UNSANDBOXED_ENV = "GRADING_ALLOW_UNSANDBOXED"
# Variables the sandboxed kernel inherits from the grader (by name or by prefix);
# everything else (tokens, credentials) stays outside.
PASSED_NAMES = {"PATH", "LANG", "LANGUAGE", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES"}
PASSED_PREFIXES = ("LC_", "OMP_", "MKL_", "OPENBLAS_", "NBGRADER_", "PRACTICUM_", "TORCH_", "PYTORCH_")
UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run here and the instructor has not allowed grading without it."""


class KernelFailure(RuntimeError):
    """The kernel died, was killed at a limit or stopped responding; the submission is not graded."""


def parse_size(size: str | int) -> int:
    """Bytes in ``size``: an int, or a string such as ``"512M"`` or ``"8G"``; 0 means no limit."""
    if isinstance(size, int):
        return size
    text = size.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1] if text and text[-1] in UNITS else ""
    return int(float(text[: len(text) - len(unit)]) * UNITS[unit])


def grading_package_root() -> str:
    """The directory that holds the ``grading`` package (put on the kernel's PYTHONPATH)."""
    return str(Path(__file__).resolve().parent.parent)


def allowed_unsandboxed() -> bool:
    return os.environ.get(ALLOW_UNSANDBOXED_ENV, "").lower() in {"1", "true", "yes"}


def _write_private(path: str, data: dict) -> None:
    """Write ``data`` as JSON to a new file that only its owner can read."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(data, f)


def run_launcher(settings: dict, command: list[str], cwd: str, timeout: float = 60) -> tuple[dict, str]:
    """Run ``command`` through the launcher (as a kernel would be); its exit record and stderr."""
    with tempfile.TemporaryDirectory(prefix="grading-run-") as tmp:
        os.chmod(tmp, 0o711)  # the sandbox's uid must reach the kernel directory inside
        kernel_dir = os.path.join(tmp, "kernel")
        os.mkdir(kernel_dir, 0o700)
        settings = {
            **settings,
            "kernel_dir": kernel_dir,
            "work_dir": os.path.join(tmp, "work"),
            "exit_record": os.path.join(tmp, "exit.json"),
        }
        _write_private(os.path.join(tmp, "settings.json"), settings)
        proc = subprocess.run(
            [sys.executable, str(LAUNCHER), os.path.join(tmp, "settings.json"), "--", *command],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        try:
            with open(settings["exit_record"]) as f:
                return json.load(f), proc.stderr
        except OSError:
            return {"reason": "launcher", "message": f"launcher exited with {proc.returncode}"}, proc.stderr


@functools.cache
def sandbox_problem(bwrap: str) -> str | None:
    """None when ``bwrap`` can sandbox a Python process here; otherwise what goes wrong."""
    path = shutil.which(bwrap)
    if path is None:
        return f"bubblewrap ('{bwrap}') is not installed"
    settings = {
        "sandbox": True,
        "bwrap": path,
        "hidden": [],
        "env": {"PATH": os.environ.get("PATH", "")},
        "limits": {"memory": 0, "cpu": 30, "wall": 30, "processes": 64, "file_size": 0, "tmp_size": 2**20},
    }
    with tempfile.TemporaryDirectory(prefix="grading-probe-") as cwd:
        record, stderr = run_launcher(settings, [sys.executable, "-c", "open('probe', 'w').close()"], cwd)
        if record.get("exit_code") != 0:
            return f"bubblewrap cannot start a sandbox here ({record.get('message')}: {stderr.strip()})"
    return None


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run through ``launcher.py`` with ``settings``.

    Each kernel gets a private directory for its connection file and IPC sockets; when
    the kernel is gone, :attr:`exit_record` says why it ended (launcher's record).
    """

    settings = Dict(help="Launcher settings: sandbox, bwrap, hidden, env, limits, devices.")
    exit_record = Dict(allow_none=True, default_value=None)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._private = tempfile.mkdtemp(prefix="grading-kernel-")
        os.chmod(self._private, 0o711)  # the sandbox's uid must reach the kernel directory inside
        self._kernel_dir = os.path.join(self._private, "kernel")
        os.mkdir(self._kernel_dir, 0o700)
        self.transport = "ipc"
        self.ip = os.path.join(self._kernel_dir, "ipc")
        self.connection_file = os.path.join(self._kernel_dir, "connection.json")

    @property
    def kernel_spec(self):
        spec = super().kernel_spec
        if spec is not None:
            spec.interrupt_mode = "message"  # no signal has to cross the sandbox
        return spec

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        settings_file = os.path.join(self._private, "settings.json")
        _write_private(
            settings_file,
            {
                **self.settings,
                "kernel_dir": self._kernel_dir,
                "work_dir": os.path.join(self._private, "work"),
                "exit_record": os.path.join(self._private, "exit.json"),
            },
        )
        return [sys.executable, str(LAUNCHER), settings_file, "--", *super().format_kernel_cmd(extra_arguments)]

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        try:
            with open(os.path.join(self._private, "exit.json")) as f:
                self.exit_record = json.load(f)
        except (OSError, ValueError):
            pass
        if not restart:
            shutil.rmtree(self._private, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources


class SandboxedExecute(Execute):
    """nbgrader's ``Execute``, with each notebook's kernel in the sandbox and under limits.

    The limits (0 disables one): ``memory_limit`` (address space of each process),
    ``cpu_time_limit`` (CPU seconds of each process), ``notebook_time_limit`` (wall-clock
    seconds of the whole notebook, kernel start included), ``max_processes`` (tasks,
    threads included), ``max_file_size``, ``tmp_size`` (the private ``/tmp``). The
    per-cell limit is nbgrader's own ``Execute.timeout``.
    """

    memory_limit = Unicode("8G", help="Address-space limit of each kernel process, e.g. '8G'.").tag(config=True)
    cpu_time_limit = Integer(1800, help="CPU seconds each kernel process may use.").tag(config=True)
    notebook_time_limit = Integer(900, help="Wall-clock seconds a whole notebook may take.").tag(config=True)
    max_processes = Integer(256, help="Tasks (processes and threads) the kernel may have.").tag(config=True)
    max_file_size = Unicode("1G", help="Largest file the kernel may write.").tag(config=True)
    tmp_size = Unicode("512M", help="Size of the kernel's private /tmp.").tag(config=True)
    hidden_paths = List(Unicode(), help="Extra paths the kernel must not see.").tag(config=True)
    gpu = Bool(False, help="Give the kernel the NVIDIA devices (then set memory_limit = '0').").tag(config=True)
    bwrap = Unicode("bwrap", help="The bubblewrap executable.").tag(config=True)
    allow_unsandboxed = Bool(help=f"Grade without the sandbox (also: {ALLOW_UNSANDBOXED_ENV}=1).").tag(config=True)

    @default("allow_unsandboxed")
    def _allow_unsandboxed_default(self) -> bool:
        return allowed_unsandboxed()

    def use_sandbox(self) -> bool:
        """True when kernels will be sandboxed; raise :class:`SandboxUnavailable` if they cannot be
        and grading without the sandbox has not been allowed."""
        problem = sandbox_problem(self.bwrap)
        if problem is None:
            return True
        if self.allow_unsandboxed:
            self.log.warning("grading: running student code WITHOUT the sandbox (%s)", problem)
            return False
        raise SandboxUnavailable(
            f"grading: refusing to run student code without the sandbox: {problem}. Install bubblewrap "
            f"(Debian/Ubuntu: apt-get install bubblewrap), or, for trusted notebooks only, allow grading "
            f"without it: {ALLOW_UNSANDBOXED_ENV}=1 or `python -m grading autograde --unsandboxed`."
        )

    def kernel_environment(self, sandboxed: bool) -> dict[str, str]:
        """The kernel's environment: a short allowlist in the sandbox, the grader's otherwise."""
        if sandboxed:
            env = {k: v for k, v in os.environ.items() if k in PASSED_NAMES or k.startswith(PASSED_PREFIXES)}
            env.update(
                HOME="/tmp",
                TMPDIR="/tmp",
                USER="student",
                LOGNAME="student",
                MPLCONFIGDIR="/tmp/matplotlib",
                IPYTHONDIR="/tmp/ipython",
                PYTHONDONTWRITEBYTECODE="1",
            )
        else:
            env = dict(os.environ)
        env["NBGRADER_EXECUTION"] = "autograde"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [grading_package_root(), env.get("PYTHONPATH")]))
        return env

    def launcher_settings(self) -> dict:
        sandboxed = self.use_sandbox()
        exchange_root = self.config.get("Exchange", {}).get("root")
        return {
            "sandbox": sandboxed,
            "bwrap": shutil.which(self.bwrap) or self.bwrap,
            "hidden": private_paths(find_coursedir(self), exchange_root) + list(self.hidden_paths),
            "env": self.kernel_environment(sandboxed),
            "devices": sorted(glob.glob("/dev/nvidia*")) if self.gpu else [],
            "limits": {
                "memory": parse_size(self.memory_limit),
                "cpu": self.cpu_time_limit,
                "wall": self.notebook_time_limit,
                "processes": self.max_processes,
                "file_size": parse_size(self.max_file_size),
                "tmp_size": parse_size(self.tmp_size),
            },
        }

    def create_kernel_manager(self) -> SandboxKernelManager:
        name = self.kernel_name or self.nb.metadata.get("kernelspec", {}).get("name") or "python3"
        self.km = self._sandbox_km = SandboxKernelManager(kernel_name=name, config=self.config, settings=self._settings)
        return self.km

    def preprocess_cell(self, cell, resources, index):
        self._current_cell = (index, cell.metadata.get("nbgrader", {}).get("grade_id"))
        return super().preprocess_cell(cell, resources, index)

    def preprocess(self, nb, resources=None, km=None):
        self._settings = self.launcher_settings()
        self._sandbox_km = None
        self._current_cell = None
        try:
            return super().preprocess(nb, resources, km)
        except (DeadKernelError, CellTimeoutError, RuntimeError) as error:
            record = getattr(self._sandbox_km, "exit_record", None) or {}
            if not isinstance(error, (DeadKernelError, CellTimeoutError)) and not record:
                raise
            where = "while starting"
            if self._current_cell is not None:
                index, grade_id = self._current_cell
                where = f"in cell {index}" + (f" ('{grade_id}')" if grade_id else "")
            if record.get("reason") in {"wall-time", "cpu-time"}:
                why = record["message"]
            elif isinstance(error, CellTimeoutError):
                why = "the kernel stopped responding after a cell timed out (it ignored the interrupt)"
            else:
                why = record.get("message", "the kernel died")
            raise KernelFailure(f"grading: kernel failure {where}: {why}. The submission was not graded.") from error
