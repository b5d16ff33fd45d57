"""Start one grading kernel inside a bubblewrap sandbox, with resource limits.

Run by :class:`grading.sandbox.SandboxKernelManager` as the kernel's command::

    python launcher.py SETTINGS.json -- python -m ipykernel_launcher -f CONNECTION.json

It runs *outside* the sandbox, with the grader's privileges, and uses only the
standard library. The submission's working directory is the launcher's own
working directory (the kernel manager starts it there); the kernel gets a copy of it
(``work_dir`` in the settings). The launcher

1. sets rlimits: address space (memory), CPU time, processes, file size, no core dumps;
2. when run as root, gives the kernel a fresh unprivileged uid (so the process limit
   counts and root-only files stay unreadable) and hands it its working directory;
3. runs the kernel under ``bwrap``: no network, a read-only view of ``/``, the course's
   private paths (solutions, gradebook, other students' files) replaced by empty
   read-only directories or an empty file, a private ``/tmp``, its own PID namespace;
   only a copy of the working directory (seen as ``/tmp/submission``) and the kernel's
   socket directory are writable;
4. stays as the sandbox's parent to enforce the whole-notebook wall-clock limit, and
   writes why the kernel ended to the exit record (read back by the kernel manager).
"""

from __future__ import annotations

import json
import os
import resource
import select
import shutil
import signal
import sys
import time

# Where the submission's working directory appears inside the sandbox (its host path may lie
# under directories the sandbox's uid cannot enter).
SANDBOX_WORKDIR = "/tmp/submission"
# First uid handed to sandboxed kernels when grading as root; the launcher's pid is added,
# so kernels that run at the same time never share a uid (nor a process count).
SANDBOX_UID_BASE = 200_000
# Bytes of the kernel's own stdout/stderr kept for the exit record (the rest is dropped).
OUTPUT_TAIL = 4000


def tasks_of_uid(uid: int) -> int:
    """Number of tasks (threads included) whose real uid is ``uid``: what RLIMIT_NPROC counts."""
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue
        if int(fields["Uid"].split()[0]) == uid:
            count += int(fields["Threads"])
    return count


def set_limits(limits: dict, uid: int) -> None:
    """Apply the rlimits of ``limits`` (0 or missing means no limit) to this process."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.get("memory"):
        resource.setrlimit(resource.RLIMIT_AS, (limits["memory"], limits["memory"]))
    if limits.get("cpu"):
        # SIGXCPU at the soft limit, SIGKILL at the hard one.
        resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu"], limits["cpu"] + 5))
    if limits.get("file_size"):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size"], limits["file_size"]))
    if limits.get("processes"):
        # A fresh uid starts from zero; a shared one (not root) already has tasks running.
        already = 0 if os.geteuid() == 0 else tasks_of_uid(uid)
        n = already + limits["processes"]
        resource.setrlimit(resource.RLIMIT_NPROC, (n, n))


def hand_over(paths: list[str], uid: int) -> None:
    """Give ``paths`` (and everything below them) to ``uid``, never following links."""
    for top in paths:
        os.lchown(top, uid, uid)
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), uid, uid)


def bwrap_command(settings: dict, workdir: str, command: list[str]) -> list[str]:
    """The ``bwrap`` command line that runs ``command`` in the sandbox, in ``workdir``.
    Built with the sandbox's uid: paths that uid cannot reach need no hiding."""
    limits = settings["limits"]
    args = [
        settings["bwrap"],
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "grading",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ]
    for device in settings.get("devices", []):
        args += ["--dev-bind", device, device]
    for path in settings["hidden"]:
        if os.path.isdir(path):
            args += ["--tmpfs", path, "--remount-ro", path]
        elif os.path.exists(path):
            args += ["--ro-bind", "/dev/null", path]
    if limits.get("tmp_size"):
        args += ["--size", str(limits["tmp_size"])]
    args += [
        "--tmpfs",
        "/tmp",
        "--bind",
        settings["kernel_dir"],
        settings["kernel_dir"],
        "--bind",
        workdir,
        SANDBOX_WORKDIR,
    ]
    return args + ["--chdir", SANDBOX_WORKDIR, "--", *command]


def wait_for(pid: int, seconds: float | None, output: int | None = None, tail: bytearray | None = None):
    """Wait for child ``pid`` at most ``seconds`` (None: forever); its wait status, or None on time-out.

    Meanwhile read the non-blocking descriptor ``output`` (the kernel's stdout and stderr)
    and keep its last ``OUTPUT_TAIL`` bytes in ``tail``."""
    deadline = None if seconds is None else time.monotonic() + seconds
    pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    try:
        while True:
            if output is not None:
                try:
                    while chunk := os.read(output, 65536):
                        tail += chunk
                        del tail[:-OUTPUT_TAIL]
                    output = None  # end of file: nobody writes any more
                except BlockingIOError:
                    pass
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            waiting = [fd for fd in (pidfd, output) if fd is not None]
            select.select(waiting, [], [], 0.1 if pidfd is None else left)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def describe(status: int, limits: dict) -> dict:
    """Why the kernel ended, from its wait status (bwrap reports a signal as 128 + signal)."""
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    if code is not None and code <= 128:
        return {"reason": "exit", "exit_code": code, "message": f"the kernel exited with code {code}"}
    sig = os.WTERMSIG(status) if code is None else code - 128
    name = signal.Signals(sig).name if sig in set(signal.Signals) else f"signal {sig}"
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_used = children.ru_utime + children.ru_stime
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and limits.get("cpu") and cpu_used >= limits["cpu"]):
        return {
            "reason": "cpu-time",
            "signal": name,
            "message": f"the kernel used up its CPU-time limit of {limits['cpu']} s and was killed",
        }
    return {"reason": "signal", "signal": name, "message": f"the kernel was killed by {name}"}


def main(argv: list[str]) -> int:
    settings_path, separator, *command = argv
    if separator != "--" or not command:
        print("usage: launcher.py SETTINGS.json -- COMMAND...", file=sys.stderr)
        return 2
    with open(settings_path) as f:
        settings = json.load(f)
    limits = settings["limits"]
    # The kernel works in a copy of the submission's directory: the grader later writes into
    # the original, and must never follow a link that student code planted there.
    workdir = settings["work_dir"]
    shutil.copytree(os.getcwd(), workdir, symlinks=True)
    uid = os.getuid()
    if settings["sandbox"] and os.geteuid() == 0:
        uid = SANDBOX_UID_BASE + os.getpid()
        hand_over([settings["kernel_dir"], workdir], uid)
    env = settings["env"]

    errors_read, errors_write = os.pipe()  # the child reports why it could not start
    output_read, output_write = os.pipe()  # the kernel's own stdout and stderr
    child = os.fork()
    if child == 0:  # the sandbox
        try:
            os.close(errors_read)
            os.close(output_read)
            os.dup2(output_write, 1)
            os.dup2(output_write, 2)
            set_limits(limits, uid)
            if uid != os.getuid():
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            for path in (workdir, command[0], settings["kernel_dir"]):
                if not os.access(path, os.X_OK):
                    raise PermissionError(
                        f"the sandbox's unprivileged user cannot reach {path}; when grading as root, the course "
                        f"directory and the Python environment must be readable by other users (not under "
                        f"/root, parents chmod o+x), or grade as an ordinary user"
                    )
            if settings["sandbox"]:
                os.execve(settings["bwrap"], bwrap_command(settings, workdir, command), env)
            os.chdir(workdir)
            os.execve(command[0], command, env)
        except BaseException as error:  # report, never fall through into the parent's code
            os.write(errors_write, f"cannot start the kernel: {error}".encode())
        os._exit(127)
    os.close(errors_write)
    os.close(output_write)
    os.set_blocking(output_read, False)
    tail = bytearray()

    def stop(signum, frame):  # the kernel manager ends the kernel: end the sandbox with it
        os.kill(child, signal.SIGKILL)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    started = time.monotonic()
    status = wait_for(child, limits.get("wall") or None, output_read, tail)
    with os.fdopen(errors_read, "rb") as errors:
        start_error = errors.read().decode()
    if start_error:
        record = {"reason": "start", "message": start_error}
    elif status is None:
        os.kill(child, signal.SIGKILL)
        wait_for(child, None)
        record = {
            "reason": "wall-time",
            "message": f"the notebook ran past its time limit of {limits['wall']} s; the kernel was killed",
        }
    else:
        record = describe(status, limits)
    record["seconds"] = round(time.monotonic() - started, 1)
    record["output_tail"] = tail.decode(errors="replace")
    with open(settings["exit_record"], "w") as f:
        json.dump(record, f)
    return 0 if record.get("exit_code") == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
