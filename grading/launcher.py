"""Start one grading kernel inside a bubblewrap sandbox, with resource limits.

Run by :class:`grading.sandbox.SandboxKernelManager` as the kernel's command::

    python launcher.py SETTINGS.json -- python -m ipykernel_launcher -f CONNECTION.json

It runs *outside* the sandbox, with the grader's privileges, and uses only the
standard library. The submission's working directory is the launcher's own
working directory (the kernel manager starts it there); the kernel gets a copy of it
(``work_dir`` in the settings). The launcher

1. sets rlimits: address space (memory), CPU time, processes, file size, no core dumps;
2. when run as root, gives the kernel a fresh unprivileged uid (so the process limit
   counts and nothing root-only is reachable) and hands it its working directory; the
   read-only sources are first bind-mounted, in a mount namespace of the launcher's own,
   onto staging directories that uid can reach (a Python under ``/root``, say);
3. runs the kernel under ``bwrap`` in a file system built up from nothing (an
   allow-list): the read-only ``mounts`` of the settings (system libraries, a minimal
   ``/etc``, the Python environment, the course's public code and data), a synthetic
   ``/etc/passwd``, a new ``/proc``, a minimal ``/dev``, a private ``/tmp`` and
   ``/dev/shm`` of bounded size; the copy of the working directory (seen as
   ``/tmp/submission``) and the kernel's socket directory are the only writable places,
   and the root is read-only. No network, its own PID namespace and session, no
   capabilities, no further user namespaces;
4. stays as the sandbox's parent to enforce the whole-notebook wall-clock limit, and
   writes why the kernel ended, and which files it wrote in its working directory, to the
   exit record (read back by the kernel manager).

Settings (JSON): ``sandbox`` (bool), ``bwrap`` (path), ``mounts`` (list of
``{"src", "dest"}``: read-only binds), ``symlinks`` (list of ``[target, link]``),
``devices``, ``private`` (paths no mount may contain: checked again here), ``env``,
``limits``, ``kernel_dir``, ``work_dir``, ``exit_record``.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import shutil
import signal
import sys
import time

# Where the submission's working directory appears inside the sandbox.
SANDBOX_WORKDIR = "/tmp/submission"
# First uid handed to sandboxed kernels when grading as root; the launcher's pid is added,
# so kernels that run at the same time never share a uid (nor a process count).
SANDBOX_UID_BASE = 200_000
# Bytes of the kernel's own stdout/stderr kept for the exit record (the rest is dropped).
OUTPUT_TAIL = 4000
# Files listed in the exit record as written by the kernel (the rest are counted).
WRITTEN_LIST = 50
# Size of the private /dev/shm when the settings give none.
DEFAULT_SHM_SIZE = 64 * 2**20
# Size of the kernel's working copy when the settings give none.
DEFAULT_WORK_SIZE = 512 * 2**20
# mount(2) and unshare(2) flags (linux/mount.h, linux/sched.h)
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
LIBC = ctypes.CDLL(None, use_errno=True)


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


def exposed_private(mounts: list[dict], private: list[str]) -> list[str]:
    """The mounts whose source is, or contains, one of the ``private`` paths."""
    found = []
    for mount in mounts:
        source = os.path.realpath(mount["src"])
        for path in private:
            path = os.path.realpath(path)
            if source == "/" or path == source or path.startswith(source.rstrip("/") + "/"):
                found.append(f"{mount['src']} (holds {path})")
    return found


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def private_mount_namespace() -> None:
    """Give this process a mount namespace of its own, whose mounts the host never sees.

    Root unshares it directly; an ordinary user first enters a user namespace that maps its
    own uid and gid to themselves (so files keep their owner and permissions)."""
    if os.geteuid() != 0:
        uid, gid = os.getuid(), os.getgid()
        _check(LIBC.unshare(CLONE_NEWUSER | CLONE_NEWNS), "cannot make a user namespace")
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    else:
        _check(LIBC.unshare(CLONE_NEWNS), "cannot make a mount namespace")
    _check(LIBC.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "cannot make the mounts private")


def mount_tmpfs(path: str, size: int, uid: int) -> None:
    """A tmpfs of ``size`` bytes on ``path`` (in this process's mount namespace), owned by ``uid``."""
    options = f"size={size},mode=0700" + (f",uid={uid},gid={uid}" if os.geteuid() == 0 else "")
    _check(
        LIBC.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode()),
        f"cannot mount a tmpfs on {path}",
    )


def stage_sources(mounts: list[dict], stage_dir: str) -> list[dict]:
    """Bind each mount's source onto a directory (or file) under ``stage_dir`` (in this process's
    private mount namespace); the mounts with their staged sources.

    Done as root, before giving up root: the sandbox's uid then reaches sources under
    directories it could not enter (a Python under ``/root/.pyenv``)."""
    os.mkdir(stage_dir, 0o711)
    staged = []
    for index, mount in enumerate(mounts):
        target = os.path.join(stage_dir, str(index))
        if os.path.isdir(mount["src"]):
            os.mkdir(target, 0o755)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        _check(
            LIBC.mount(mount["src"].encode(), target.encode(), None, MS_BIND | MS_REC, None),
            f"cannot stage {mount['src']}",
        )
        staged.append({**mount, "src": target})
    return staged


def copy_submission(source: str, target: str) -> None:
    """Copy the regular files and directories under ``source`` into ``target`` (links, devices,
    FIFOs and sockets are left out: the grader refuses submissions that hold them)."""
    for root, dirs, files in os.walk(source):
        relative = os.path.relpath(root, source)
        for name in dirs:
            if not os.path.islink(os.path.join(root, name)):
                os.makedirs(os.path.join(target, relative, name), 0o755, exist_ok=True)
        for name in files:
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                shutil.copyfile(path, os.path.join(target, relative, name))


def identity_files(uid: int) -> list[tuple[str, int]]:
    """Read ends of pipes holding a one-user ``/etc/passwd`` and ``/etc/group`` for ``uid``."""
    files = []
    for path, text in (
        ("/etc/passwd", f"student:x:{uid}:{uid}:student:/tmp:/usr/sbin/nologin\n"),
        ("/etc/group", f"student:x:{uid}:\n"),
    ):
        read, write = os.pipe()
        os.write(write, text.encode())
        os.close(write)
        os.set_inheritable(read, True)
        files.append((path, read))
    return files


def bwrap_command(
    settings: dict, workdir: str, command: list[str], mounts: list[dict], identity: list[tuple[str, int]]
) -> list[str]:
    """The ``bwrap`` command line that runs ``command`` in the sandbox, in ``workdir``: a file
    system made only of ``mounts`` (read-only), the ``identity`` files and what the kernel
    needs to run (see the module's docstring)."""
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
        "--cap-drop",
        "ALL",
    ]
    for mount in mounts:
        args += ["--ro-bind", mount["src"], mount["dest"]]
    for target, link in settings.get("symlinks", []):
        args += ["--symlink", target, link]
    args += ["--proc", "/proc", "--dev", "/dev"]
    for device in settings.get("devices", []):
        args += ["--dev-bind", device, device]
    args += ["--perms", "0755", "--dir", "/etc"]
    for path, fd in identity:
        args += ["--perms", "0644", "--ro-bind-data", str(fd), path]
    if limits.get("tmp_size"):
        args += ["--size", str(limits["tmp_size"])]
    args += ["--tmpfs", "/tmp", "--size", str(limits.get("shm_size") or DEFAULT_SHM_SIZE), "--tmpfs", "/dev/shm"]
    args += [
        "--bind",
        settings["kernel_dir"],
        settings["kernel_dir"],
        "--bind",
        workdir,
        SANDBOX_WORKDIR,
        "--remount-ro",
        "/",
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


def describe(status: int, limits: dict, output: str) -> dict:
    """Why the kernel ended, from its wait status (bwrap reports a signal as 128 + signal) and the
    end of its ``output`` (where bwrap writes why it could not start the sandbox)."""
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    if code is not None and code <= 128:
        bwrap_errors = [line for line in output.splitlines() if line.startswith("bwrap: ")]
        if code != 0 and bwrap_errors:
            return {
                "reason": "start",
                "exit_code": code,
                "message": f"bubblewrap could not start the sandbox ({bwrap_errors[-1]})",
            }
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


def file_states(directory: str) -> dict[str, tuple]:
    """Type, size and modification time of every entry under ``directory`` (links not followed)."""
    states = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            info = os.lstat(path)
            states[os.path.relpath(path, directory)] = (info.st_mode >> 12, info.st_size, info.st_mtime_ns)
    return states


def written_files(before: dict[str, tuple], directory: str) -> tuple[list[str], int]:
    """Entries of ``directory`` created or changed since ``before`` (:func:`file_states`): the
    first ``WRITTEN_LIST`` of them, sorted, and how many there are."""
    after = file_states(directory)
    changed = sorted(path for path, state in after.items() if before.get(path) != state and state[0] != 0o04)
    return changed[:WRITTEN_LIST], len(changed)


def main(argv: list[str]) -> int:
    settings_path, separator, *command = argv
    if separator != "--" or not command:
        print("usage: launcher.py SETTINGS.json -- COMMAND...", file=sys.stderr)
        return 2
    with open(settings_path) as f:
        settings = json.load(f)
    limits = settings["limits"]
    sandboxed = settings["sandbox"]
    as_root = sandboxed and os.geteuid() == 0
    uid = SANDBOX_UID_BASE + os.getpid() if as_root else os.getuid()
    # The kernel works in a copy of the submission's directory: the grader later writes into
    # the original, and must never follow a link that student code planted there. In the
    # sandbox the copy lives on a tmpfs of bounded size, in a mount namespace of the
    # launcher's own (so that the host never sees it, and this process can still read it).
    workdir = settings["work_dir"]
    os.mkdir(workdir, 0o700)
    mounts = settings.get("mounts", [])
    exposed = exposed_private(mounts, settings.get("private", [])) if sandboxed else []
    setup_error = f"refusing to mount {', '.join(exposed)} into the sandbox" if exposed else None
    if sandboxed and not setup_error:
        try:
            private_mount_namespace()
            mount_tmpfs(workdir, limits.get("work_size") or DEFAULT_WORK_SIZE, uid)
            if as_root:
                mounts = stage_sources(mounts, os.path.join(os.path.dirname(settings["kernel_dir"]), "stage"))
        except OSError as error:
            setup_error = f"cannot prepare the sandbox: {error}"
    copy_submission(os.getcwd(), workdir)
    before = file_states(workdir)
    if as_root:
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
            if setup_error:
                raise RuntimeError(setup_error)
            python = os.path.realpath(command[0])
            if as_root and not os.stat(python).st_mode & 0o001:
                raise PermissionError(
                    f"{python} cannot be run by other users (the sandbox's unprivileged "
                    f"user): make the Python environment readable by others (chmod o+rx)"
                )
            set_limits(limits, uid)
            if uid != os.getuid():
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            if sandboxed:
                identity = identity_files(uid)
                os.execve(settings["bwrap"], bwrap_command(settings, workdir, command, mounts, identity), env)
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
    output = tail.decode(errors="replace")
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
        record = describe(status, limits, output)
    record["seconds"] = round(time.monotonic() - started, 1)
    record["output_tail"] = output
    record["written"], record["written_count"] = written_files(before, workdir)
    with open(settings["exit_record"], "w") as f:
        json.dump(record, f)
    return 0 if record.get("exit_code") == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
