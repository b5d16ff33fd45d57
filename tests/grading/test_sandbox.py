"""The sandbox and limits of grading kernels, checked on small Python programs (no kernels)."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import pytest
from course_tools import course_base, requires_sandbox

from grading.sandbox import (
    Layout,
    SandboxedExecute,
    SandboxUnavailable,
    parse_size,
    probe_settings,
    run_launcher,
    sandbox_mounts,
)


@pytest.fixture
def place():
    """A working directory and a private course-like directory, outside /tmp."""
    requires_sandbox()
    root = Path(tempfile.mkdtemp(prefix="grading-sandbox-", dir=course_base()))
    root.chmod(0o755)
    (root / "work").mkdir()
    (root / "work" / "data.txt").write_text("the student's own file")
    (root / "solutions").mkdir()
    (root / "solutions" / "answers.txt").write_text("secret")
    (root / "gradebook.db").write_text("grades")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def settings(place: Path, sandbox: bool = True, **limits) -> dict:
    """The kernels' own layout and limits, with the place's private folders as the course's."""
    layout = Layout(private=(str(place / "solutions"), str(place / "gradebook.db"), str(place / "autograded")))
    env = {"PATH": os.environ["PATH"], "HOME": "/tmp", "PYTHONSAFEPATH": "1", "PYTHONNOUSERSITE": "1"}
    limits = {"memory": 0, "cpu": 60, "wall": 60, "processes": 64, "file_size": 0, "tmp_size": 2**20, **limits}
    return {**probe_settings(shutil.which("bwrap") or "bwrap", env, limits, layout), "sandbox": sandbox}


def run(place: Path, code: str, sandbox: bool = True, **limits) -> dict:
    record, _ = run_launcher(settings(place, sandbox, **limits), [sys.executable, "-c", code], str(place / "work"))
    return record


def test_working_copy_is_writable_and_the_original_untouched(place):
    record = run(place, "print(open('data.txt').read()); open('data.txt', 'w').write('changed'); print('ok')")
    assert record["exit_code"] == 0, record
    assert "the student's own file\nok" in record["output_tail"]
    assert (place / "work" / "data.txt").read_text() == "the student's own file"


def test_the_rest_of_the_file_system_is_read_only(place):
    code = f"""
for path in [{str(place / "new.txt")!r}, {str(Path(sys.executable).parent / "x")!r}, '/var/tmp/x', '/etc/x']:
    try:
        open(path, 'w')
        print('WROTE', path)
    except OSError as error:
        print('refused', error.errno)
"""
    record = run(place, code)
    assert "WROTE" not in record["output_tail"]
    assert record["output_tail"].count("refused") == 4
    assert not (place / "new.txt").exists()


def test_only_the_allow_list_exists(place):
    """The kernel's file system is built up from nothing: its top level holds the system's
    directories and the first components of the bound paths, and nothing of the place exists."""
    code = f"""import os, sys
print(sorted(os.listdir('/')))
for path in [{str(place / "solutions")!r}, {str(place / "gradebook.db")!r}, {str(place)!r}, '/var', '/run',
             '/home', '/srv', '/mnt', '/opt', '/media', '/root/.ssh', '/etc/shadow', '/etc/ssh']:
    print(path, os.path.exists(path))
"""
    record = run(place, code)
    lines = record["output_tail"].splitlines()
    top = set(eval(lines[0]))  # a list literal printed by the kernel
    expected = {"bin", "dev", "etc", "lib", "lib64", "proc", "sbin", "sys", "tmp", "usr"}
    bound_roots = {Path(p).parts[1] for p in (sys.prefix, sys.base_prefix, os.path.realpath(sys.base_prefix))}
    assert top <= expected | bound_roots | {"lib32", "libx32"}, top
    assert all(line.endswith(" False") for line in lines[1:]), lines


def test_files_outside_the_allow_list_are_unreadable(place, tmp_path):
    """Secrets of the grading user (an ssh key in a home directory), folders created after the
    sandbox's settings were made, the course's exports: none exists inside."""
    home = place / "home" / "instructor"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    later = place / "autograded" / "other_student"  # a course folder that does not exist yet
    code = f"""import os, time
time.sleep(0.5)
for path in [{str(home / ".ssh" / "id_ed25519")!r}, {str(later / "answers.txt")!r}, {str(place / "grades.csv")!r},
             os.path.expanduser('~/.ssh')]:
    try:
        print(open(path).read())
    except OSError as error:
        print('refused', type(error).__name__)
"""
    settings_ = settings(place)
    later.mkdir(parents=True)
    (later / "answers.txt").write_text("ANSWERS")
    (place / "grades.csv").write_text("GRADES")
    record, _ = run_launcher(settings_, [sys.executable, "-c", code], str(place / "work"))
    assert record["output_tail"].count("refused") == 4, record
    assert "PRIVATE KEY" not in record["output_tail"] and "ANSWERS" not in record["output_tail"]


def test_host_unix_sockets_are_out_of_reach(place):
    """World-writable Unix sockets of the host (a database's, a container engine's) are files:
    none of /tmp, /run, /var/tmp, /dev/shm is the host's inside, and abstract sockets belong to
    the network namespace."""
    paths = [
        f"/tmp/grading-host-{os.getpid()}.sock",
        f"/dev/shm/grading-host-{os.getpid()}.sock",
        str(place / "host.sock"),
    ]
    servers = []
    for path in paths:
        server = socket.socket(socket.AF_UNIX)
        server.bind(path)
        os.chmod(path, 0o777)
        server.listen()
        servers.append(server)
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(f"\0grading-host-{os.getpid()}")
    abstract.listen()
    code = f"""import socket
for address in {paths!r} + ['\\0grading-host-{os.getpid()}']:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(address)
        print('CONNECTED', address)
    except OSError as error:
        print('refused', type(error).__name__)
"""
    try:
        record = run(place, code)
    finally:
        for server in [*servers, abstract]:
            server.close()
        for path in paths:
            os.unlink(path)
    assert "CONNECTED" not in record["output_tail"], record
    assert record["output_tail"].count("refused") == 4, record


def test_tmp_and_shm_are_private_and_bounded(place):
    with tempfile.NamedTemporaryFile(dir="/tmp", prefix="grading-visible-") as host_file:
        code = f"""import os
print(os.path.exists({host_file.name!r}), sorted(os.listdir('/tmp')), os.listdir('/dev/shm'))
for path in ['/tmp/fill', '/dev/shm/fill', 'fill']:  # the working copy is bounded too
    try:
        with open(path, 'wb') as f:
            for _ in range(64):
                f.write(b'x' * 2**20)
        print('FILLED', path)
    except OSError as error:
        print('full', error.errno)
"""
        record = run(place, code, shm_size=2**20, work_size=4 * 2**20)
    first = record["output_tail"].splitlines()[0]
    assert first.startswith("False ['grading-run-") and first.endswith("'submission'] []"), first
    assert "FILLED" not in record["output_tail"] and record["output_tail"].count("full 28") == 3, record  # ENOSPC


def test_working_directory_cannot_shadow_installed_modules(place):
    (place / "work" / "numpy.py").write_text("raise SystemExit('the shadow numpy was imported')")
    (place / "work" / "sitecustomize.py").write_text("print('SITECUSTOMIZE RAN')")
    record = run(place, "import numpy, sys; print(numpy.__file__); print('' in sys.path)")
    lines = record["output_tail"].splitlines()
    assert record["exit_code"] == 0 and "site-packages" in lines[0] and lines[1] == "False", record
    assert "SITECUSTOMIZE" not in record["output_tail"]


def test_the_interpreter_keeps_its_own_standard_library(place):
    """The environment's base interpreter and standard library are bound wherever they live (a
    pyenv Python under /root when grading as root), not replaced by the system's Python."""
    code = "import os, sys; print(sys.base_prefix); print(os.__file__); print(sys.version)"
    record = run(place, code)
    base, os_file, version = record["output_tail"].splitlines()[:3]
    assert base == sys.base_prefix and os_file == os.__file__ and version == sys.version.splitlines()[0], record


def test_a_mount_that_would_expose_the_course_is_refused(place):
    with pytest.raises(SandboxUnavailable, match="refusing to show"):
        sandbox_mounts(
            sys.executable,
            {"PATH": os.environ["PATH"]},
            Layout(extra=(str(place),), private=(str(place / "solutions"),)),
        )
    bad = settings(place)
    bad["mounts"] = [*bad["mounts"], {"src": str(place), "dest": str(place)}]
    record, _ = run_launcher(bad, [sys.executable, "-c", "print('RAN')"], str(place / "work"))
    assert record["reason"] == "start" and "refusing to mount" in record["message"], record
    assert "RAN" not in record["output_tail"]


def test_a_sandbox_that_cannot_start_says_what_bubblewrap_said(place):
    broken = settings(place)
    broken["mounts"] = [*broken["mounts"], {"src": str(place / "work"), "dest": "/usr/lib/grading-not-there"}]
    record, _ = run_launcher(broken, [sys.executable, "-c", "print('RAN')"], str(place / "work"))
    assert record["reason"] == "start" and "bwrap: Can't mkdir /usr/lib/grading-not-there" in record["message"], record


def test_files_the_kernel_writes_are_recorded(place):
    record = run(place, "open('numpy.py', 'w').write('x = 1'); open('data.txt', 'a').write('more')")
    assert record["written"] == ["data.txt", "numpy.py"] and record["written_count"] == 2, record


def test_no_network():
    requires_sandbox()
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    with tempfile.TemporaryDirectory(dir=course_base()) as work:
        os.chmod(work, 0o755)
        Path(work, "work").mkdir()
        code = f"""import socket
for address in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:
    try:
        socket.create_connection(address, timeout=2)
        print('CONNECTED', address)
    except OSError as error:
        print('refused', type(error).__name__)
"""
        record = run(Path(work), code)
    server.close()
    assert "CONNECTED" not in record["output_tail"]
    assert record["output_tail"].count("refused") == 2


def test_memory_limit_raises_memory_error(place):
    record = run(
        place, "try:\n    x = bytearray(3 * 2**30)\nexcept MemoryError:\n    print('MemoryError')", memory=2**30
    )
    assert record["exit_code"] == 0 and "MemoryError" in record["output_tail"]


def test_cpu_time_limit_kills(place):
    record = run(place, "while True:\n    pass", cpu=1)
    assert record["reason"] == "cpu-time", record
    assert "CPU-time limit of 1 s" in record["message"]


def test_wall_time_limit_kills_the_whole_sandbox(place):
    record = run(place, "import os, time\nos.fork()\ntime.sleep(30)", wall=1)
    assert record["reason"] == "wall-time" and record["seconds"] < 10, record
    assert "time limit of 1 s" in record["message"]


def test_process_limit_stops_a_fork_bomb(place):
    code = """import os, time
children = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
        children += 1
except OSError as error:
    print('stopped after', children, type(error).__name__)
"""
    record = run(place, code, processes=16, wall=20)
    words = record["output_tail"].split()
    assert words[:2] == ["stopped", "after"] and int(words[2]) < 16, record
    assert record["seconds"] < 15  # the parent exits; the pid namespace takes its children with it


def test_file_size_limit(place):
    record = run(
        place,
        "try:\n    open('big', 'wb').write(b'x' * 2**21)\nexcept OSError as e:\n    print('refused', e.errno)",
        file_size=2**20,
    )
    assert "refused 27" in record["output_tail"]  # EFBIG


def test_kernel_runs_unprivileged(place):
    code = "import os; print(os.getuid()); print(sorted(os.listdir('/root')) if os.path.isdir('/root') else [])"
    record = run(place, code)
    uid, root_home = record["output_tail"].splitlines()[:2]
    if os.geteuid() == 0:
        assert int(uid) != 0
    else:
        assert int(uid) == os.getuid()
    bound = {Path(p).parts[2] for p in (sys.base_prefix, sys.prefix) if Path(p).parts[1:2] == ("root",)}
    assert set(eval(root_home)) <= bound, root_home  # nothing of root's home but a bound environment


def test_exit_records_say_why_the_kernel_ended(place):
    assert run(place, "import os; os._exit(3)")["message"] == "the kernel exited with code 3"
    killed = run(place, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert killed["reason"] == "signal" and killed["message"] == "the kernel was killed by SIGKILL"


def test_limits_apply_without_the_sandbox_too(place):
    record = run(place, "import os; print(os.getuid())", sandbox=False, wall=1)
    assert record["exit_code"] == 0 and int(record["output_tail"]) == os.getuid()
    assert run(place, "import time; time.sleep(30)", sandbox=False, wall=1)["reason"] == "wall-time"


def test_kernel_environment_keeps_secrets_out(monkeypatch):
    monkeypatch.setenv("API_TOKEN", "secret")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    env = SandboxedExecute().kernel_environment(sandboxed=True)
    assert "API_TOKEN" not in env and env["OMP_NUM_THREADS"] == "2"
    assert env["HOME"] == "/tmp" and env["NBGRADER_EXECUTION"] == "autograde"
    assert SandboxedExecute().kernel_environment(sandboxed=False)["API_TOKEN"] == "secret"


@pytest.mark.parametrize(
    "text, size", [("512M", 512 * 2**20), ("8G", 8 * 2**30), ("1.5GiB", 3 * 2**29), ("0", 0), (4096, 4096)]
)
def test_parse_size(text, size):
    assert parse_size(text) == size
