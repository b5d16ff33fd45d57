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

from grading.sandbox import SandboxedExecute, parse_size, run_launcher


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
    return {
        "sandbox": sandbox,
        "bwrap": shutil.which("bwrap") or "bwrap",
        "hidden": [str(place / "solutions"), str(place / "gradebook.db")],
        "env": {"PATH": os.environ["PATH"], "HOME": "/tmp"},
        "limits": {"memory": 0, "cpu": 60, "wall": 60, "processes": 64, "file_size": 0, "tmp_size": 2**20, **limits},
    }


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


def test_private_paths_are_hidden(place):
    code = f"""import os
print(os.listdir({str(place / "solutions")!r}))
try:
    print(repr(open({str(place / "gradebook.db")!r}).read()))
except OSError as error:
    print('gradebook refused')
"""
    record = run(place, code)
    assert record["output_tail"].splitlines()[0] == "[]"
    assert "grades" not in record["output_tail"]


def test_tmp_is_private(place):
    with tempfile.NamedTemporaryFile(dir="/tmp", prefix="grading-visible-") as host_file:
        record = run(place, f"import os; print(os.path.exists({host_file.name!r}), os.listdir('/tmp'))")
    assert record["output_tail"].startswith("False ['submission', 'grading-run-")  # only what it needs
    assert "grading-visible-" not in record["output_tail"]


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
    record = run(place, "import os; print(os.getuid()); print(os.access('/root', os.R_OK))")
    uid, root_readable = record["output_tail"].split()
    if os.geteuid() == 0:
        assert int(uid) != 0 and root_readable == "False"
    else:
        assert int(uid) == os.getuid()


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
