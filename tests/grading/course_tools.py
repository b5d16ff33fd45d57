"""Course directories for the grading tests, and the catalog graded once.

(Not a conftest.py: the suite's other tests import the top-level conftest by name.)
Courses live under /var/tmp, not /tmp: the sandbox gives each kernel a private /tmp,
which would hide a course there wholesale and prove nothing about hiding its parts.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from catalog import ASSIGNMENT, CASES, DUEDATE, SOURCE, Context, network_answers, write_catalog

from grading.sandbox import sandbox_problem

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
NBGRADER = str(Path(sys.executable).with_name("nbgrader"))
# Short limits, so that the slow cases of the catalog stay short.
LIMITS = dict(cell_timeout=5, notebook_time_limit=15, memory_limit="2G", cpu_time_limit=60, max_processes=64)
CONFIG = """import sys
sys.path.insert(0, {root!r})
from grading.config import configure

c = get_config()
configure(c, {course!r}, **{limits!r})
c.Execute.iopub_timeout = 4
{extra}
"""


def requires_sandbox():
    """Skip when bubblewrap cannot sandbox here, unless GRADING_REQUIRE_SANDBOX=1 (CI) makes it fail."""
    problem = sandbox_problem("bwrap")
    if problem is None:
        return
    if os.environ.get("GRADING_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"the sandbox is required here: {problem}")
    pytest.skip(f"no sandbox: {problem}")


def course_base() -> str:
    return "/var/tmp" if os.access("/var/tmp", os.W_OK) else tempfile.gettempdir()


def make_course(extra_config: str = "", base: str | None = None) -> Path:
    """A new course directory (in ``base``, default :func:`course_base`) with the test
    assignment as its solutions (not released yet)."""
    course = Path(tempfile.mkdtemp(prefix="grading-course-", dir=base or course_base()))
    course.chmod(0o755)
    shutil.copytree(SOURCE.parent, course / "solutions" / ASSIGNMENT)
    (course / "nbgrader_config.py").write_text(
        CONFIG.format(root=str(ROOT), course=str(course), limits=LIMITS, extra=extra_config)
    )
    return course


def grading(course: Path, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m grading --course COURSE ARGS...``, as an instructor runs it."""
    return subprocess.run(
        [PYTHON, "-m", "grading", "--course", str(course), *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        env=env,
        timeout=timeout,
    )


def nbgrader(course: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Stock ``nbgrader ARGS...`` run in the course directory."""
    environ = dict(env or os.environ)
    environ["PATH"] = os.pathsep.join([str(Path(PYTHON).parent), environ.get("PATH", "")])
    return subprocess.run([NBGRADER, *args], cwd=course, text=True, capture_output=True, env=environ, timeout=600)


def released_course(extra_config: str = "", base: str | None = None) -> Path:
    course = make_course(extra_config, base)
    result = grading(course, "release", ASSIGNMENT, "--duedate", DUEDATE)
    assert result.returncode == 0, result.stderr
    return course


class AnswerServer(http.server.BaseHTTPRequestHandler):
    """Hands out the right answers on the grader's machine; counts who asked."""

    hits: list[str] = []

    def do_GET(self):
        AnswerServer.hits.append(self.path)
        body = network_answers().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def read_csv(path: Path) -> dict[str, dict]:
    with open(path) as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@dataclass
class HostSecrets:
    """What a submission must never reach, set up on the host next to a course: an ssh key in a
    home directory outside it, a grades export inside it, a world-writable Unix socket (a
    database's or a container engine's) that answers anyone who connects; who connected."""

    secret: Path
    socket_path: str
    hits: list[str]


@contextlib.contextmanager
def host_secrets(course: Path, home: Path | None = None):
    """:class:`HostSecrets` for ``course``; the key goes into ``home`` (default: a new folder
    next to the course, removed afterwards)."""
    own_home = home is None
    home = Path(tempfile.mkdtemp(prefix="grading-home-", dir=course.parent)) if own_home else home
    (home / ".ssh").mkdir(exist_ok=True)
    (home / ".ssh" / "id_ed25519").write_text("HOST-SECRET-KEY\n")
    (course / "grades.csv").write_text("student_id,score\nperfect,GRADES-SECRET\n")
    socket_path = f"/tmp/grading-host-{os.getpid()}-{home.name}.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(socket_path)
    os.chmod(socket_path, 0o777)
    server.listen()
    secrets = HostSecrets(home / ".ssh" / "id_ed25519", socket_path, [])

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            secrets.hits.append("connected")
            connection.sendall(b"SOCKET-SECRET")
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield secrets
    finally:
        server.close()
        os.unlink(socket_path)
        if own_home:
            shutil.rmtree(home, ignore_errors=True)


def kernel_output(notebook: Path) -> str:
    """Everything the kernel printed or displayed in a graded notebook, as text."""
    nb = nbformat.read(notebook, 4)
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts += [
                str(output.get("text", "")),
                str(output.get("evalue", "")),
                *map(str, output.get("traceback", [])),
            ]
            parts += [str(value) for value in output.get("data", {}).values()]
    return "\n".join(parts)


@dataclass
class GradedCourse:
    course: Path
    result: subprocess.CompletedProcess
    seconds: float
    submitted_before: dict[str, str]
    server_hits: list[str]
    reports: dict[str, dict] = field(default_factory=dict)
    socket_hits: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def graded_course():
    """The whole catalog, written into a released course and autograded in one run (preflight first)."""
    import json

    requires_sandbox()
    course = released_course()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AnswerServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with host_secrets(course) as secrets:
        ctx = Context(
            release=nbformat.read(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4),
            solution=nbformat.read(SOURCE, 4),
            course=course,
            port=server.server_address[1],
            secret=secrets.secret,
            socket_path=secrets.socket_path,
        )
        write_catalog(ctx, course / "submitted", CASES)
        before = digest(course / "submitted")
        start = time.monotonic()
        result = grading(course, "autograde", ASSIGNMENT)
        seconds = time.monotonic() - start
    server.shutdown()
    graded = GradedCourse(course, result, seconds, before, list(AnswerServer.hits), socket_hits=secrets.hits)
    for case in CASES:
        path = course / "grading_reports" / ASSIGNMENT / f"{case.student}.json"
        if path.exists():
            graded.reports[case.student] = json.loads(path.read_text())
    print(f"\ncatalog of {len(CASES)} submissions autograded in {seconds:.0f} s (preflight included)\n" + result.stdout)
    yield graded
    shutil.rmtree(course, ignore_errors=True)


ORDINARY_USER = "grading-test-user"


def ordinary_user_python(user: str = ORDINARY_USER) -> list[str]:
    """A command prefix that runs the course's Python as the ordinary (unprivileged) ``user``,
    created (``useradd --system``) if missing: ``["runuser", "-u", USER, "--", PYTHON]``. Skips
    the test unless it runs as root, and when that Python cannot import nbgrader as ``user``.

    Found on these machines: ``.venv/bin/python`` is a copy of pyenv's launcher whose RUNPATH,
    ``/root/.pyenv/versions/3.11.7/lib``, an ordinary user cannot reach (``/root`` is 0700), so
    the loader falls back to Debian's ``libpython3.11.so`` and the interpreter runs as Debian's
    3.11.2 with ``/usr/lib/python3.11`` and the venv's site-packages: nbgrader and the course
    import and work, one patch version away from the root run (``sys.version`` says which)."""
    if os.geteuid() != 0:
        pytest.skip("creating and becoming an ordinary user needs root")
    if subprocess.run(["id", "-u", user], capture_output=True).returncode != 0:
        # another pytest worker may create it at the same time: only its absence afterwards is an error
        created = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", user], capture_output=True)
        if subprocess.run(["id", "-u", user], capture_output=True).returncode != 0:
            pytest.fail(f"useradd {user} failed: {created.stderr.decode().strip()}")
    command = ["runuser", "-u", user, "--", PYTHON]
    probe = subprocess.run([*command, "-c", "import nbgrader, grading"], cwd=ROOT, capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the course's Python does not run as {user}: {probe.stderr.strip()[-300:]}")
    return command
