"""Autograde's kernels, sandboxed: the preprocessor and kernel manager nbgrader uses.

``grading.config.configure`` puts :class:`SandboxedExecute` in place of nbgrader's
``Execute`` in ``Autograde.autograde_preprocessors``, so every ``nbgrader autograde``
in the course directory (command line, formgrader or :mod:`grading`'s commands) runs
each submission in a :class:`SandboxKernelManager` kernel; ``nbgrader validate`` and
students' own kernels are unchanged. The kernel talks to the grader over ZeroMQ's IPC
transport through sockets in a private per-kernel directory (the sandbox has no
network), and is started by ``launcher.py``, which sets the limits and runs ``bwrap``.

The kernel's file system is an allow-list (:func:`sandbox_mounts`): read-only system
libraries and a minimal ``/etc``, the kernel's Python environment (its prefixes and import
path, as the interpreter itself reports them, wherever they live), the course's public
packages and data (``helpers/``, ``grading/``, ``data/models/``) and the paths the
instructor names; nothing else of the machine exists inside. Its working directory cannot
shadow installed modules (``PYTHONSAFEPATH``).

Without a working sandbox, grading stops with :class:`SandboxUnavailable` unless the
instructor allows it explicitly (``GRADING_ALLOW_UNSANDBOXED=1`` or
``c.SandboxedExecute.allow_unsandboxed = True``).
"""

from __future__ import annotations

import functools
import glob
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbgrader.preprocessors import Execute
from traitlets import Bool, Dict, Integer, List, Unicode, default

from .checks import KEY_FILE_ENV
from .paths import find_coursedir, private_paths
from .report import record_stock_failure

LAUNCHER = Path(__file__).resolve().with_name("launcher.py")
ALLOW_UNSANDBOXED_ENV = "GRADING_ALLOW_UNSANDBOXED"
# Variables the sandboxed kernel inherits from the grader (by name or by prefix);
# everything else (tokens, credentials) stays outside.
PASSED_NAMES = {
    "PATH",
    "LANG",
    "LANGUAGE",
    "TZ",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "CUDA_VISIBLE_DEVICES",
    "LD_LIBRARY_PATH",
}
PASSED_PREFIXES = ("LC_", "OMP_", "MKL_", "OPENBLAS_", "NBGRADER_", "PRACTICUM_", "TORCH_", "PYTORCH_")
UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
# What of the machine the kernel sees, read-only (those that exist): system programs and
# libraries, the top-level directories that merged-/usr systems make links into /usr, a
# minimal /etc (the dynamic loader's cache, time zone, name service switch), CPU topology.
SYSTEM_DIRECTORIES = (
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libx32",
    "/usr/libexec",
    "/usr/share",
)
TOP_DIRECTORIES = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_ENTRIES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "hosts",
    "mime.types",
    "alternatives",
)
SYSTEM_INFO = ("/sys/devices/system/cpu",)
# What a GPU kernel needs on top: the devices' sysfs entries and the usual driver locations.
GPU_PATHS = ("/sys", "/usr/local/nvidia", "/usr/local/cuda")
# Parts of each Python prefix the kernel needs (a venv's pyvenv.cfg names its base interpreter).
PREFIX_ENTRIES = ("bin", "lib", "lib32", "lib64", "pyvenv.cfg")
# Run by the kernel's interpreter, with the kernel's environment: where it lives and imports from.
PROBE = """import importlib.util, json, sys
packages = {}
for name in sys.argv[1:]:
    spec = importlib.util.find_spec(name)
    packages[name] = list(spec.submodule_search_locations or []) if spec else []
print(json.dumps({"prefixes": sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}),
                  "path": sys.path, "packages": packages}))
"""


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


@dataclass(frozen=True)
class Layout:
    """What the kernel may see besides the system and its Python environment.

    ``packages``: the course's public packages, bound where the kernel's interpreter finds
    them; ``data``: directories relative to the directory that holds the first of them (the
    course's code), bound when they exist; ``extra``: absolute paths the instructor names;
    ``private``: paths that no bound directory may contain (the course's own files: a
    configuration that would expose one is refused); ``gpu``: add the NVIDIA driver's paths."""

    packages: tuple[str, ...] = ("helpers", "grading")
    data: tuple[str, ...] = ("data/models", "data/cache")
    extra: tuple[str, ...] = ()
    private: tuple[str, ...] = ()
    gpu: bool = False


@functools.cache
def probe_interpreter(python: str, env: tuple[tuple[str, str], ...], packages: tuple[str, ...]) -> dict:
    """Prefixes, import path and package directories of the interpreter ``python`` run with the
    environment ``env`` (as the kernel will be), as it reports them (see ``PROBE``)."""
    try:
        result = subprocess.run(
            [python, "-c", PROBE, *packages], env=dict(env), cwd="/", capture_output=True, text=True, timeout=120
        )
        if result.returncode == 0:
            return json.loads(result.stdout)
        problem = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
    except (OSError, subprocess.TimeoutExpired, ValueError) as error:
        problem = [str(error)]
    raise SandboxUnavailable(f"grading: cannot inspect the kernel's Python {python}: {problem[0]}")


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def sandbox_mounts(python: str, env: dict[str, str], layout: Layout) -> tuple[list[dict], list[list[str]]]:
    """The read-only mounts (``{"src", "dest"}``, parents first) and the links (``[target, link]``)
    that make up the file system of a kernel run by ``python`` with ``env``: the system parts
    (``SYSTEM_DIRECTORIES``, ``ETC_ENTRIES``...), the interpreter's prefixes and import path, the
    layout's packages, data and extra paths. Import-path entries that hold the course's code
    directory or a private path (the course directory on ``PYTHONPATH``) are left out: the
    packages are bound on their own. Raises :class:`SandboxUnavailable` when a package, data or
    extra path would expose a private one."""
    probe = probe_interpreter(python, tuple(sorted(env.items())), layout.packages)
    private = [os.path.realpath(p) for p in layout.private]
    package_dirs = [d for name in layout.packages for d in probe["packages"].get(name, [])]
    code_dirs = [os.path.dirname(os.path.realpath(d)) for d in package_dirs[:1]]
    links, wanted = [], []
    for top in TOP_DIRECTORIES:
        if os.path.islink(top):
            links.append([os.readlink(top), top])
        elif os.path.isdir(top):
            wanted.append(top)
    wanted += [*SYSTEM_DIRECTORIES, *(os.path.join("/etc", e) for e in ETC_ENTRIES), *SYSTEM_INFO]
    if layout.gpu:
        wanted += GPU_PATHS
    wanted += [os.path.join(prefix, entry) for prefix in probe["prefixes"] for entry in PREFIX_ENTRIES]
    for entry in probe["path"] + env.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        real = os.path.realpath(entry) if entry else ""
        if entry and not any(_inside(p, real) for p in private + code_dirs):
            wanted.append(entry)
    required = [*package_dirs, *(os.path.join(c, d) for c in code_dirs for d in layout.data), *layout.extra]
    for path in required:
        real = os.path.realpath(path)
        exposed = [p for p in private if _inside(p, real)]
        if exposed:
            raise SandboxUnavailable(f"grading: refusing to show {path} to the kernel: it holds {exposed[0]}")
    mounts = {}
    for path in wanted + required:
        if not os.path.exists(path):
            continue
        for dest in dict.fromkeys([os.path.abspath(path), os.path.realpath(path)]):
            mounts.setdefault(dest, os.path.realpath(path))
    ordered, kept = [], []
    for dest in sorted(mounts, key=lambda d: d.split("/")):
        src = mounts[dest]
        # a directory already visible through a mount of its parent needs no mount of its own
        covered = any(_inside(dest, d) and src == os.path.join(s, os.path.relpath(dest, d)) for d, s in kept)
        if not covered:
            ordered.append({"src": src, "dest": dest})
            kept.append((dest, src))
    return ordered, links


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


def probe_settings(bwrap: str, env: dict[str, str], limits: dict, layout: Layout = Layout()) -> dict:
    """Launcher settings for running a plain Python program (``sys.executable``) in the sandbox:
    the kernel's layout and limits, for probes, tests and benchmarks."""
    mounts, links = sandbox_mounts(sys.executable, env, layout)
    return {
        "sandbox": True,
        "bwrap": bwrap,
        "mounts": mounts,
        "symlinks": links,
        "private": list(layout.private),
        "env": env,
        "limits": limits,
    }


@functools.cache
def sandbox_problem(bwrap: str) -> str | None:
    """None when ``bwrap`` can sandbox a Python process here; otherwise what goes wrong (with
    bubblewrap's own message)."""
    path = shutil.which(bwrap)
    if path is None:
        return f"bubblewrap ('{bwrap}') is not installed"
    limits = {"memory": 0, "cpu": 30, "wall": 30, "processes": 64, "file_size": 0, "tmp_size": 2**20}
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONSAFEPATH": "1", "PYTHONNOUSERSITE": "1"}
    try:
        settings = probe_settings(path, env, limits)
    except SandboxUnavailable as error:
        return str(error).removeprefix("grading: ")
    with tempfile.TemporaryDirectory(prefix="grading-probe-") as cwd:
        record, stderr = run_launcher(settings, [sys.executable, "-c", "open('probe', 'w').close()"], cwd)
        if record.get("exit_code") != 0:
            output = " ".join(filter(None, [record.get("output_tail", "").strip(), stderr.strip()]))
            return f"bubblewrap cannot start a sandbox here ({record.get('message')}: {output})"
    return None


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run through ``launcher.py`` with ``settings``.

    Each kernel gets a private directory for its connection file and IPC sockets; when
    the kernel is gone, :attr:`exit_record` says why it ended (launcher's record).
    """

    settings = Dict(help="Launcher settings: sandbox, bwrap, private, env, limits, devices (see launcher.py).")
    layout = Dict(help="The Layout's fields, from which the kernel's mounts are made (sandboxed kernels only).")
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
        self.witness_key = secrets.token_hex(32)  # signs the checks' witnesses (grading.witnesses)

    @property
    def kernel_spec(self):
        spec = super().kernel_spec
        if spec is not None:
            spec.interrupt_mode = "message"  # no signal has to cross the sandbox
        return spec

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        command = super().format_kernel_cmd(extra_arguments)
        settings_file = os.path.join(self._private, "settings.json")
        key_file = os.path.join(self._kernel_dir, "witness.key")
        with os.fdopen(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(self.witness_key)
        mounts, links = [], []
        if self.settings.get("sandbox"):
            layout = Layout(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.layout.items()})
            mounts, links = sandbox_mounts(command[0], self.settings["env"], layout)
        _write_private(
            settings_file,
            {
                **self.settings,
                "env": {**self.settings["env"], KEY_FILE_ENV: key_file},
                "mounts": mounts,
                "symlinks": links,
                "kernel_dir": self._kernel_dir,
                "work_dir": os.path.join(self._private, "work"),
                "exit_record": os.path.join(self._private, "exit.json"),
            },
        )
        return [sys.executable, str(LAUNCHER), settings_file, "--", *command]

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
    shm_size = Unicode("64M", help="Size of the kernel's private /dev/shm.").tag(config=True)
    work_size = Unicode("512M", help="Size of the kernel's copy of its working directory.").tag(config=True)
    public_packages = List(
        Unicode(), ["helpers", "grading"], help="The course's packages the notebooks import (bound read-only)."
    ).tag(config=True)
    public_data = List(
        Unicode(),
        ["data/models", "data/cache"],
        help="Data directories the notebooks load, relative to the directory holding the first public package.",
    ).tag(config=True)
    read_only_paths = List(Unicode(), help="Other absolute paths the kernel may read (a dataset directory, say).").tag(
        config=True
    )
    hidden_paths = List(Unicode(), help="Extra paths the kernel must never see (no mount may hold one).").tag(
        config=True
    )
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
                PYTHONSAFEPATH="1",  # the working directory cannot shadow installed modules
                PYTHONNOUSERSITE="1",
            )
        else:
            env = dict(os.environ)
        env["NBGRADER_EXECUTION"] = "autograde"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [grading_package_root(), env.get("PYTHONPATH")]))
        return env

    def launcher_settings(self) -> dict:
        sandboxed = self.use_sandbox()
        coursedir = find_coursedir(self)
        exchange_root = self.config.get("Exchange", {}).get("root")
        private = [coursedir.root, *private_paths(coursedir, exchange_root, existing_only=False), *self.hidden_paths]
        return {
            "sandbox": sandboxed,
            "bwrap": shutil.which(self.bwrap) or self.bwrap,
            "private": private,
            "env": self.kernel_environment(sandboxed),
            "devices": sorted(glob.glob("/dev/nvidia*")) if self.gpu else [],
            "limits": {
                "memory": parse_size(self.memory_limit),
                "cpu": self.cpu_time_limit,
                "wall": self.notebook_time_limit,
                "processes": self.max_processes,
                "file_size": parse_size(self.max_file_size),
                "tmp_size": parse_size(self.tmp_size),
                "shm_size": parse_size(self.shm_size),
                "work_size": parse_size(self.work_size),
            },
        }

    def layout(self, private: list[str]) -> dict:
        """The :class:`Layout` of this grading run's kernels (as a dict of its fields)."""
        return {
            "packages": list(self.public_packages),
            "data": list(self.public_data),
            "extra": list(self.read_only_paths),
            "private": private,
            "gpu": self.gpu,
        }

    def create_kernel_manager(self) -> SandboxKernelManager:
        name = self.kernel_name or self.nb.metadata.get("kernelspec", {}).get("name") or "python3"
        self.km = self._sandbox_km = SandboxKernelManager(
            kernel_name=name, config=self.config, settings=self._settings, layout=self.layout(self._settings["private"])
        )
        return self.km

    def preprocess_cell(self, cell, resources, index):
        self._current_cell = (index, cell.metadata.get("nbgrader", {}).get("grade_id"))
        return super().preprocess_cell(cell, resources, index)

    def preprocess(self, nb, resources=None, km=None):
        self._settings = self.launcher_settings()
        self._sandbox_km = None
        self._current_cell = None
        try:
            nb, resources = super().preprocess(nb, resources, km)
            run = resources.setdefault("grading", {})
            run["exit_record"] = getattr(self._sandbox_km, "exit_record", None)
            run["witness_key"] = getattr(self._sandbox_km, "witness_key", None)
            return nb, resources
        except (DeadKernelError, CellTimeoutError, RuntimeError) as error:
            record = getattr(self._sandbox_km, "exit_record", None) or {}
            if not isinstance(error, (DeadKernelError, CellTimeoutError)) and not record:
                raise
            where = "while starting"
            if self._current_cell is not None:
                index, grade_id = self._current_cell
                where = f"in cell {index}" + (f" ('{grade_id}')" if grade_id else "")
            if record.get("reason") in {"wall-time", "cpu-time", "start"}:
                why = record["message"]
            elif isinstance(error, CellTimeoutError):
                why = "the kernel stopped responding after a cell timed out (it ignored the interrupt)"
            else:
                why = record.get("message", "the kernel died")
                last = [line for line in record.get("output_tail", "").splitlines() if line.strip()][-1:]
                if self._current_cell is None and last:  # it never started: say what it printed
                    why += f" ({last[0].strip()[:300]})"
            message = f"kernel failure {where}: {why}. The submission was not graded."
            info = (resources or {}).get("nbgrader", {})
            record_stock_failure(info.get("assignment"), info.get("student"), message)
            raise KernelFailure(f"grading: {message}") from error
