"""A catalog of fake submissions, generated from the test assignment's release notebook.

Each :class:`Case` writes one student's submission (the released notebook with answers
filled in, or damaged in some way) and states what grading must conclude: the status,
the autograded score (out of 6; ``None`` when the submission cannot be graded) and a
pattern that one of the report's messages must match.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat

ASSIGNMENT = "grading_demo"
SOURCE = Path(__file__).parent / "assignment" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
MAX_CODE_SCORE = 6.0
MAX_SCORE = 8.0

WRONG = {
    "normalize": "def normalize(v):\n    v = np.asarray(v, dtype=float)\n"
    "    return v / np.abs(v).sum()  # L1, not L2\n",
    "project": "def project(x, x0, eps):\n    x0 = np.asarray(x0, dtype=float)\n"
    "    return np.clip(x, x0 - eps, x0 + eps)  # forgets [0, 1]\n",
    "accuracy": "def accuracy(predictions, labels):\n"
    "    return int(np.sum(np.asarray(predictions) == np.asarray(labels)))  # a count\n",
}
ALTERNATIVE_A = {
    "normalize": "def normalize(v):\n    v = np.array(v, dtype=np.float64)\n    n = np.linalg.norm(v)\n"
    "    return v if n == 0 else v / n\n",
    "project": "def project(x, x0, eps):\n    x0 = np.asarray(x0, dtype=float)\n"
    "    x = np.minimum(np.maximum(np.asarray(x, dtype=float), x0 - eps), x0 + eps)\n"
    "    return np.minimum(np.maximum(x, 0.0), 1.0)\n",
    "accuracy": "def accuracy(predictions, labels):\n    predictions, labels = list(predictions), list(labels)\n"
    "    return sum(p == q for p, q in zip(predictions, labels)) / len(labels)\n",
}
ALTERNATIVE_B = {
    "normalize": "import math\n\ndef normalize(v):\n    values = [float(a) for a in v]\n"
    "    norm = math.sqrt(sum(a * a for a in values))\n"
    "    return np.array([a / norm for a in values]) if norm else np.zeros(len(values))\n",
    "project": "def project(x, x0, eps):\n    out = []\n    for a, c in zip(np.ravel(x), np.ravel(x0)):\n"
    "        a = min(max(float(a), c - eps), c + eps)\n        out.append(min(max(a, 0.0), 1.0))\n"
    "    return np.array(out).reshape(np.shape(x))\n",
    "accuracy": "def accuracy(predictions, labels):\n"
    "    return np.count_nonzero(np.equal(predictions, labels)) / np.size(labels)\n",
}
WRITTEN_ANSWER = "Projection keeps the perturbation inside the threat model; clipping keeps the input an image."


@dataclass
class Context:
    """What the generators need: the notebooks, the course's location, a local server's port,
    and the host's secrets a submission must never reach: a file outside the course (an
    instructor's ssh key) and a world-writable Unix socket served on the host."""

    release: nbformat.NotebookNode
    solution: nbformat.NotebookNode
    course: Path
    port: int
    secret: Path = Path("/nonexistent/secret")
    socket_path: str = "/nonexistent/socket"


def solution_answers(solution: nbformat.NotebookNode) -> dict[str, str]:
    """Source of each answer cell of the solution notebook, solution markers removed."""
    answers = {}
    for cell in solution.cells:
        meta = cell.metadata.get("nbgrader") or {}
        if meta.get("solution"):
            markers = ("BEGIN SOLUTION", "END SOLUTION")
            lines = [line for line in cell.source.splitlines() if not any(m in line for m in markers)]
            answers[meta["grade_id"]] = "\n".join(lines)
    return answers


def grade_id(cell) -> str | None:
    return (cell.metadata.get("nbgrader") or {}).get("grade_id")


def index_of(nb: nbformat.NotebookNode, gid: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if grade_id(c) == gid)


def answered(ctx: Context, answers: dict[str, str], written: bool = False) -> nbformat.NotebookNode:
    """The release notebook with ``answers`` (grade id -> source) in its answer cells."""
    nb = copy.deepcopy(ctx.release)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
        elif grade_id(cell) == "explain" and written:
            cell.source = WRITTEN_ANSWER
    return nb


def perfect(ctx: Context) -> nbformat.NotebookNode:
    return answered(ctx, solution_answers(ctx.solution), written=True)


def with_prefix(ctx: Context, gid: str, prefix: str, answers: dict[str, str] | None = None):
    """Solution answers, with ``prefix`` code put before answer ``gid``."""
    answers = dict(answers or solution_answers(ctx.solution))
    answers[gid] = prefix + "\n" + answers[gid]
    return answered(ctx, answers)


def replace(ctx: Context, **answers: str) -> nbformat.NotebookNode:
    return answered(ctx, {**solution_answers(ctx.solution), **answers})


# --- the generators -------------------------------------------------------------------------
def tampered_tests(ctx):
    nb = answered(ctx, WRONG)
    for cell in nb.cells:
        if (cell.metadata.get("nbgrader") or {}).get("grade"):
            if cell.cell_type == "code":
                cell.source = "pass  # all tests pass now"
            cell.metadata.nbgrader["points"] = 100
    return nb


def deleted_test(ctx):
    nb = replace(ctx, project=WRONG["project"])
    del nb.cells[index_of(nb, "test_project")]
    return nb


def duplicated_cells(ctx):
    nb = perfect(ctx)
    first = copy.deepcopy(nb.cells[index_of(nb, "normalize")])
    first.source = WRONG["normalize"]  # an early attempt, superseded by the copy below it
    nb.cells.insert(index_of(nb, "normalize"), first)
    test = copy.deepcopy(nb.cells[index_of(nb, "test_accuracy")])
    nb.cells.insert(index_of(nb, "test_accuracy") + 1, test)
    return nb


def notebook_time_limit(ctx):
    nb = perfect(ctx)
    slow = [
        nbformat.v4.new_code_cell("import time\ntime.sleep(4)  # each cell under the per-cell limit") for _ in range(5)
    ]
    nb.cells[index_of(nb, "setup") + 1 : index_of(nb, "setup") + 1] = slow
    return nb


def patch_before_setup(ctx):
    nb = answered(ctx, WRONG)
    patch = nbformat.v4.new_code_cell(
        "import numpy\nnumpy.absolute = lambda x, *a, **k: x * 0  # every difference looks like zero\n"
        "numpy.less_equal = lambda a, b, *r, **k: numpy.ones(numpy.shape(a), dtype=bool)"
    )
    nb.cells.insert(0, patch)
    return nb


def kernel_name(ctx):
    nb = perfect(ctx)
    nb.metadata.kernelspec = {"name": "ir", "display_name": "R", "language": "R"}
    return nb


def text_of(nb) -> str:
    return nbformat.writes(nb)


def truncated_json(ctx):
    text = text_of(perfect(ctx))
    return text[: len(text) // 2]


def repairable_json(ctx):
    return text_of(perfect(ctx)) + "\n<<<<<<< HEAD\n"


MONKEYPATCH = """import math
import numpy
numpy.allclose = lambda *a, **k: True
numpy.isclose = lambda a, b, **k: numpy.ones(numpy.shape(a), dtype=bool)
numpy.testing.assert_allclose = lambda *a, **k: None
numpy.testing.assert_array_equal = lambda *a, **k: None
math.isclose = lambda *a, **k: True
try:
    check.close = lambda *a, **k: None
except AttributeError:
    pass
try:
    type(check).close = lambda *a, **k: None
except AttributeError:
    pass
"""

SKIP_TESTS = """ip = get_ipython()
ip.input_transformers_cleanup.append(lambda lines: ["pass\\n"])  # every later cell does nothing
"""

WARNINGS = """import sys
import warnings

def normalize(v):
    warnings.warn("normalize: converting the input to float", UserWarning)
    with np.errstate(divide="warn"):
        np.float64(1.0) / np.float64(0.0)  # a RuntimeWarning
    for i in range(3):
        sys.stderr.write(f"\\r{33 * (i + 1)}%|{'#' * (i + 1):<3}| {i + 1}/3 [00:00<00:00, 99.00it/s]")
    v = np.asarray(v, dtype=float)
    norm = np.sqrt(np.sum(v * v))
    return v / norm if norm > 0 else np.zeros_like(v)
"""

INFINITE_LOOP = "def normalize(v):\n    while True:\n        pass\n"
IGNORES_INTERRUPT = (
    "import time\n\ndef normalize(v):\n    while True:\n        try:\n            time.sleep(1)\n"
    "        except:  # a bare except swallows the grader's interrupt\n            pass\n"
)
KERNEL_CRASH = "import os\nos._exit(1)\n"
# bytes(n) takes zeroed pages from the system without touching them, so the bomb reaches the
# address-space limit in well under a second however loaded the machine (bytearray(n) writes
# every page: on a busy machine the cell timed out before the limit was reached).
MEMORY_BOMB = (
    "def normalize(v):\n    hog = []\n    while True:\n"
    "        hog.append(bytes(64 * 2**20))  # until the memory limit\n"
)
FORK_BOMB = (
    "import os\nimport time\n\ndef project(x, x0, eps):\n    while True:  # every child forks too\n"
    "        try:\n            os.fork()\n        except OSError:\n            time.sleep(0.05)\n"
)
HUGE_OUTPUT = "for i in range(200_000):\n    print(f'line {i}: ' + 'x' * 90)\nprint('y' * 3_000_000)\n"


def reads_solutions(ctx):
    """Wrong answers, replaced by the solutions if it can read them (and it tries other files)."""
    course = ctx.course
    targets = {
        "solutions": course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
        "gradebook": course / "gradebook.db",
        "other student": course / "submitted" / "perfect" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
    }
    code = (
        "".join(WRONG.values())
        + f"""
import json
for name, path in {json.dumps({k: str(v) for k, v in targets.items()})}.items():
    try:
        with open(path) as f:
            text = f.read()
        print(name, "read:", len(text), "characters")
    except OSError as error:
        print(name, "not readable:", type(error).__name__)
        continue
    if name == "solutions":
        for cell in json.loads(text)["cells"]:
            if cell["cell_type"] == "code" and "BEGIN SOLUTION" in "".join(cell["source"]):
                exec("".join(cell["source"]))
"""
    )
    return answered(ctx, {"normalize": code, "project": "", "accuracy": ""})


def writes_gradebook(ctx):
    """Right answers, plus attempts to write the gradebook and other students' files."""
    course = ctx.course
    code = f"""import sqlite3
attempts = {{}}
try:
    db = sqlite3.connect({str(course / "gradebook.db")!r})
    db.execute("UPDATE grade SET manual_score = 100")
    db.commit()
    attempts["gradebook"] = "written"
except Exception as error:
    attempts["gradebook"] = type(error).__name__
for path in [{str(course / "autograded" / "perfect" / ASSIGNMENT / "pwned.txt")!r},
             {str(course / "submitted" / "perfect" / ASSIGNMENT / "pwned.txt")!r},
             {str(course / "pwned.txt")!r}]:
    try:
        with open(path, "w") as f:
            f.write("pwned")
        attempts[path] = "written"
    except OSError as error:
        attempts[path] = type(error).__name__
print(attempts)
"""
    return with_prefix(ctx, "normalize", code)


def plants_symlinks(ctx):
    """Right answers, plus links in its working directory to files the grader writes afterwards."""
    course = ctx.course
    code = f"""import os
for name, target in [("{ASSIGNMENT}.ipynb", {str(course / "gradebook.db")!r}),
                     ("timestamp.txt", {str(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")!r})]:
    try:
        os.remove(name)
    except OSError:
        pass
    os.symlink(target, name)
"""
    return with_prefix(ctx, "normalize", code)


def network(ctx):
    """Wrong answers, replaced by the right ones if it can download them from the grader's machine."""
    code = (
        "".join(WRONG.values())
        + f"""
import socket
import urllib.request
try:
    exec(urllib.request.urlopen("http://127.0.0.1:{ctx.port}/answers.py", timeout=3).read().decode())
except OSError as error:
    print("no network:", error)
try:
    socket.create_connection(("1.1.1.1", 53), timeout=3)
except OSError as error:
    print("no network:", error)
"""
    )
    return answered(ctx, {"normalize": code, "project": "", "accuracy": ""})


def network_answers() -> str:
    """What the local server hands out: the correct answers (the test counts the requests)."""
    return "".join(solution_answers(nbformat.read(SOURCE, 4))[g] + "\n" for g in ("normalize", "project", "accuracy"))


@dataclass(frozen=True)
class Case:
    student: str
    build: Callable[[Context], nbformat.NotebookNode | str]
    status: str
    code_score: float | None
    message: str = ""  # a regular expression one of the report's messages must match
    timestamp: str | None = None
    # puts more into the submission folder (ctx, folder), after every notebook is written
    files: Callable[[Context, Path], None] | None = None


CASES = [
    Case("perfect", perfect, "graded", 6, r"^needs manual grading$"),
    Case("blank", lambda ctx: copy.deepcopy(ctx.release), "graded", 0),
    Case("wrong", lambda ctx: answered(ctx, WRONG), "graded", 0),
    Case("partly_right", lambda ctx: replace(ctx, project=WRONG["project"]), "graded", 3),
    Case("alternative_a", lambda ctx: answered(ctx, ALTERNATIVE_A), "graded", 6),
    Case("alternative_b", lambda ctx: answered(ctx, ALTERNATIVE_B), "graded", 6),
    Case(
        "infinite_loop",
        lambda ctx: replace(ctx, normalize=INFINITE_LOOP),
        "flagged",
        4,
        r"cell \d+ \('test_normalize'\) timed out",
    ),
    Case(
        "ignores_interrupt",
        lambda ctx: replace(ctx, normalize=IGNORES_INTERRUPT),
        "failed",
        None,
        r"kernel failure in cell \d+ \('test_normalize'\): the kernel stopped responding",
    ),
    Case(
        "notebook_time_limit",
        notebook_time_limit,
        "failed",
        None,
        r"kernel failure in cell \d+: the notebook ran past its time limit of 15 s",
    ),
    Case(
        "kernel_crash",
        lambda ctx: with_prefix(ctx, "accuracy", KERNEL_CRASH),
        "failed",
        None,
        r"kernel failure in cell \d+ \('accuracy'\): the kernel exited with code 1",
    ),
    Case(
        "memory_bomb",
        lambda ctx: replace(ctx, normalize=MEMORY_BOMB),
        "flagged",
        4,
        r"cell \d+ \('test_normalize'\) ran out of memory",
    ),
    Case(
        "fork_bomb", lambda ctx: replace(ctx, project=FORK_BOMB), "flagged", 3, r"cell \d+ \('test_project'\) timed out"
    ),
    Case("tampered_tests", tampered_tests, "flagged", 0, r"locked cell 'test_normalize' was edited"),
    Case("deleted_test", deleted_test, "graded", 3, r"cell 'test_project' was missing: restored"),
    Case("duplicated_cells", duplicated_cells, "graded", 6, r"cell 'normalize' appears more than once"),
    Case("warnings", lambda ctx: replace(ctx, normalize=WARNINGS), "graded", 6),
    Case(
        "monkeypatch",
        lambda ctx: with_prefix(ctx, "normalize", MONKEYPATCH, WRONG),
        "flagged",
        0,
        r"assigns numpy\.allclose",
    ),
    Case("patch_before_setup", patch_before_setup, "flagged", 0, r"moved below"),
    Case(
        "skips_tests",
        lambda ctx: with_prefix(ctx, "normalize", SKIP_TESTS, WRONG),
        "flagged",
        0,
        r"\('test_normalize'\) did not report all of its checks",
    ),
    Case("reads_solutions", reads_solutions, "flagged", 0, r"uses exec"),
    Case("writes_gradebook", writes_gradebook, "graded", 6),
    Case("plants_symlinks", plants_symlinks, "graded", 6),
    Case("network", network, "flagged", 0, r"uses exec"),
    Case("huge_output", lambda ctx: with_prefix(ctx, "normalize", HUGE_OUTPUT), "graded", 6),
    Case("malformed_json", truncated_json, "failed", None, r"unreadable notebook"),
    Case("repaired_json", repairable_json, "graded", 6, r"malformed JSON repaired"),
    Case("wrong_kernel", kernel_name, "graded", 6, r"kernel 'ir' replaced by 'python3'"),
    Case("late", perfect, "graded", 6, r"^late by 1 day, 0:00:00$", timestamp="2030-01-02 00:00:00 UTC"),
]
DUEDATE = "2030-01-01 00:00:00 UTC"


# --- fail closed: the sandbox, links and special files, in-process tricks, malformed notebooks ---
# Markers that must never appear in what a kernel printed: they stand for secrets on the host.
SECRET_MARKERS = ("HOST-SECRET-KEY", "SOCKET-SECRET", "GRADES-SECRET")

# A fake checker: every check "passes" and publishes a witness as the real one does.
FAKE_CHECKER = """class Fake:
    def __getattr__(self, name):
        def passed(*args, label=name, **kwargs):
            display({"application/vnd.grading.check+json": {"check": name, "label": label},
                     "text/plain": "passed " + label}, raw=True)
        return passed
"""


def escapes_to_host(ctx):
    """Wrong answers; tries every way out of the sandbox it can think of and prints what it got."""
    course = ctx.course
    targets = [
        str(ctx.secret),
        str(course / "grades.csv"),
        str(course / "nbgrader_config.py"),
        str(course / "autograded" / "perfect" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"),
        str(course / "feedback"),
        "/etc/shadow",
        "/root/.ssh/id_rsa",
        "/home",
        "/run",
        "/var/run",
    ]
    code = (
        "".join(WRONG.values())
        + f"""
import os, socket
for path in {targets!r}:
    try:
        print(path, "READ:", open(path).read()[:200] if os.path.isfile(path) else os.listdir(path))
    except OSError as error:
        print(path, "refused:", type(error).__name__)
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({ctx.socket_path!r})
    print("socket READ:", s.recv(100))
except OSError as error:
    print("socket refused:", type(error).__name__)
for path in ["/escape.txt", "/usr/lib/escape.txt", {str(course / "escape.txt")!r}]:
    try:
        open(path, "w").write("escaped")
        print(path, "WRITTEN")
    except OSError as error:
        print(path, "not written:", type(error).__name__)
"""
    )
    return answered(ctx, {"normalize": code, "project": "", "accuracy": ""})


FILLS_MEMORY = """import os
for path in ["/dev/shm/fill", "/tmp/fill", "fill"]:
    try:
        with open(path, "wb") as f:
            for _ in range(700):
                f.write(b"x" * 2**20)
        print(path, "FILLED")
    except OSError as error:
        print(path, "stopped:", error.errno)
    finally:
        try:
            os.remove(path)
        except OSError:
            pass
"""


def shadow_modules(ctx, folder: Path) -> None:
    """Module files next to the notebook that would make NumPy compare everything as equal."""
    (folder / "numpy.py").write_text("def allclose(*a, **k):\n    return True\n")
    (folder / "sitecustomize.py").write_text("import builtins\nbuiltins.isinstance = lambda *a: True\n")


WRITES_MODULE = """open("shadow_helpers.py", "w").write("def normalize(v):\\n    return v\\n")
try:
    import shadow_helpers
    print("IMPORTED the shadow module")
except ImportError as error:
    print("not importable:", type(error).__name__)
"""
REBINDS = {
    "loop": FAKE_CHECKER + "for check in [Fake()]:\n    pass\n",
    "with": FAKE_CHECKER + "import contextlib\nwith contextlib.nullcontext(Fake()) as check:\n    pass\n",
    "walrus": FAKE_CHECKER + "if (check := Fake()):\n    pass\n",
    "frame": FAKE_CHECKER + "import sys\nsys._getframe().f_globals['check'] = Fake()\n",
    # keeps the real checker and calls it, with values that pass, from its own code
    "forwarding": "real = check\n\nclass Forward:\n    def __getattr__(self, name):\n"
    "        def forward(*args, label=name, **kwargs):\n            real.true(True, 'forwarded', label=label)\n"
    "        return forward\n\nfor check in [Forward()]:\n    pass\n",
}
ALIAS_PATCH = (
    "A = np.testing\nA.assert_allclose = lambda *a, **k: None\nB = np\nB.absolute = lambda x, *a, **k: x * 0\n"
)
HIDES_TRACEBACKS = "get_ipython().showtraceback = lambda *a, **k: None\n"
IPYTHON_IMPORT = "import IPython\nIPython.get_ipython().showtraceback = lambda *a, **k: None\n"
BUILTINS_PATCH = "__builtins__.isinstance = lambda *a: True\n"
MAGIC_AND_SHELL = "!echo shell escape\n%config InteractiveShell.ast_node_interactivity = 'all'\n"


def link_to(target: Callable[[Context], Path], name: str = "notes.txt"):
    """Puts a link named ``name`` to ``target(ctx)`` in the submission folder."""

    def files(ctx, folder: Path) -> None:
        os.symlink(target(ctx), folder / name)

    return files


def fifo(ctx, folder: Path) -> None:
    os.mkfifo(folder / "data.fifo")


def hard_link(ctx, folder: Path) -> None:
    os.link(ctx.course / "nbgrader_config.py", folder / "config.txt")


def setuid_file(ctx, folder: Path) -> None:
    path = folder / "tool.sh"
    path.write_text("#!/bin/sh\nid\n")
    path.chmod(0o4755)


def student_folder_link(ctx, folder: Path) -> None:
    """The student's whole folder is a link to another student's submission."""
    student = folder.parent
    shutil.rmtree(student)
    os.symlink(student.parent / "perfect", student)


def with_metadata(**changes):
    """Solution answers, with the nbgrader metadata of the 'normalize' answer cell changed
    (``nbgrader=...`` replaces all of it)."""

    def build(ctx):
        nb = perfect(ctx)
        cell = nb.cells[index_of(nb, "normalize")]
        for key, value in changes.items():
            if key == "nbgrader":
                cell.metadata["nbgrader"] = value
            else:
                cell.metadata.nbgrader[key] = value
        return json.dumps(nb)

    return build


def invalid_output(ctx):
    nb = perfect(ctx)
    nb.cells[index_of(nb, "normalize")].outputs = [{"output_type": "bogus", "data": 1}]
    return json.dumps(nb)


def rebinds(how: str):
    return lambda ctx: with_prefix(ctx, "normalize", REBINDS[how], WRONG)


FAIL_CLOSED_CASES = [
    Case("escapes_to_host", escapes_to_host, "graded", 0),
    Case("fills_memory", lambda ctx: with_prefix(ctx, "normalize", FILLS_MEMORY), "graded", 6),
    Case(
        "shadows_numpy",
        lambda ctx: answered(ctx, WRONG),
        "flagged",
        0,
        r"holds numpy\.py next to the notebook",
        files=shadow_modules,
    ),
    Case(
        "writes_module",
        lambda ctx: with_prefix(ctx, "normalize", WRITES_MODULE, WRONG),
        "flagged",
        0,
        r"wrote shadow_helpers\.py next to the notebook",
    ),
    Case("rebinds_checker_loop", rebinds("loop"), "flagged", 0, r"\(as a loop variable\) 'check'"),
    Case("rebinds_checker_with", rebinds("with"), "flagged", 0, r"\(with \.\.\. as\) 'check'"),
    Case("rebinds_checker_walrus", rebinds("walrus"), "flagged", 0, r"rebinds 'check'"),
    Case("rebinds_checker_frame", rebinds("frame"), "flagged", 0, r"uses \._getframe"),
    Case("forwards_to_the_checker", rebinds("forwarding"), "flagged", 0, r"did not report all of its checks"),
    Case(
        "alias_patch",
        lambda ctx: with_prefix(ctx, "normalize", ALIAS_PATCH, WRONG),
        "flagged",
        0,
        r"assigns A\.assert_allclose",
    ),
    Case(
        "hides_tracebacks",
        lambda ctx: with_prefix(ctx, "normalize", HIDES_TRACEBACKS, WRONG),
        "flagged",
        0,
        r"uses \.showtraceback",
    ),
    Case(
        "ipython_import",
        lambda ctx: with_prefix(ctx, "normalize", IPYTHON_IMPORT, WRONG),
        "flagged",
        0,
        r"imports IPython",
    ),
    Case(  # breaks the kernel itself: not graded, and the report says what the code did
        "builtins_patch",
        lambda ctx: with_prefix(ctx, "normalize", BUILTINS_PATCH, WRONG),
        "failed",
        None,
        r"uses __builtins__",
    ),
    Case(
        "magic_and_shell",
        lambda ctx: with_prefix(ctx, "normalize", MAGIC_AND_SHELL),
        "flagged",
        6,
        r"runs a shell command",
    ),
    Case(
        "link_to_solutions",
        perfect,
        "failed",
        None,
        r"notes\.txt \(a link to",
        files=link_to(lambda ctx: ctx.course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"),
    ),
    Case("link_to_a_folder", perfect, "failed", None, r"a link to", files=link_to(lambda ctx: ctx.course, "course")),
    Case("fifo", perfect, "failed", None, r"data\.fifo", files=fifo),
    Case("hard_link", perfect, "failed", None, r"config\.txt \(a hard link", files=hard_link),
    Case("setuid_file", perfect, "failed", None, r"tool\.sh \(setuid", files=setuid_file),
    Case("student_folder_link", perfect, "failed", None, r"\.\. \(a link to", files=student_folder_link),
    Case(
        "metadata_not_a_mapping",
        with_metadata(nbgrader="oops"),
        "failed",
        None,
        r"metadata\.nbgrader is a str, not a mapping",
    ),
    Case("metadata_a_list", with_metadata(nbgrader=[1, 2]), "failed", None, r"metadata\.nbgrader is a list"),
    Case("points_as_text", with_metadata(points="100"), "failed", None, r"metadata\.nbgrader\.points is a str"),
    Case("invalid_output", invalid_output, "failed", None, r"not a valid notebook"),
]
CASES += FAIL_CLOSED_CASES


def write_catalog(ctx: Context, submitted: Path, cases=CASES) -> None:
    """Write every case's submission under ``submitted/STUDENT/ASSIGNMENT/``."""
    for case in cases:
        target = submitted / case.student / ASSIGNMENT
        target.mkdir(parents=True, exist_ok=True)
        content = case.build(ctx)
        with warnings.catch_warnings():  # keep duplicated cells' ids as they are
            warnings.simplefilter("ignore")
            text = content if isinstance(content, str) else nbformat.writes(content)
        (target / f"{ASSIGNMENT}.ipynb").write_text(text)
        (target / "timestamp.txt").write_text(case.timestamp or "2029-12-31 12:00:00 UTC")
    for case in cases:  # after every folder exists: some point at others
        if case.files:
            case.files(ctx, submitted / case.student / ASSIGNMENT)


def messages(report: dict) -> list[str]:
    return [m for m in [report.get("failure")] + report["problems"] + report["review"] + report["notes"] if m]


def matches(pattern: str, report: dict) -> bool:
    return not pattern or any(re.search(pattern, m) for m in messages(report))


# --- Feedback and display: outputs and markdown that try to run in a browser, too much output ---
# (their rendered feedback and formgrader views are checked in tests/grading/test_feedback.py)
PNG = (  # a 1x1 PNG: images must stay
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
KEPT_TEXT = ["html-text-kept", "table-text-kept", "stdout-text-kept", "markdown-text-kept", "written-text-kept"]
HTML_ATTACKS = [
    "<script>document.title='pwned'</script>",
    "<img src=x onerror=\"document.title='pwned'\">",
    "<svg onload=\"document.title='pwned'\"><circle r=5 /></svg>",
    "<iframe src='https://example.org/'></iframe>",
    "<object data='https://example.org/x.swf'></object><embed src='https://example.org/x.swf'>",
    "<form action='https://example.org/'><input name=token><button>Send</button></form>",
    "<style>body { background: url(https://example.org/track) }</style>",
    "<a href=\"javascript:document.title='pwned'\">js</a>",
    "<a href=\"jav&#x09;ascript:document.title='pwned'\">entity js</a>",
    "<a href='data:text/html,<script>alert(1)</script>'>data</a>",
    "<div style='position:fixed; top:0; left:0; width:100%; background:url(https://example.org/t)'>cover</div>",
    "<math><mtext><table><mglyph><style><img src=x onerror=\"document.title='pwned'\">",
    "<noscript><p title=\"</noscript><img src=x onerror=document.title='pwned'>\"></noscript>",
    "<details open ontoggle=\"document.title='pwned'\"><summary>s</summary>d</details>",
    "<base href='https://example.org/'><meta http-equiv='refresh' content='0; url=https://example.org/'>",
    "<link rel=stylesheet href='https://example.org/x.css'>",
    "&lt;script&gt;escaped text stays text&lt;/script&gt;",
]
# `display` is IPython's built-in: no import (importing IPython is for the audit to judge).
HOSTILE_HTML = f"""attacks = {HTML_ATTACKS!r}
page = "<p>html-text-kept</p>" + "".join(attacks) + "<table><tr><td>table-text-kept</td></tr></table>"
display({{"text/html": page, "text/plain": "<HTML>"}}, raw=True)
display({{"text/html": "<b>isolated</b><script>document.title='pwned'</script>"}}, raw=True,
        metadata={{"text/html": {{"isolated": True}}}})
display({{"image/png": {PNG!r}, "text/plain": "<a png>"}}, raw=True)
print("stdout-text-kept <script>document.title='pwned'</script>")
"""
HOSTILE_TYPES = f"""import ipywidgets
display({{"application/javascript": "document.title = 'pwned'", "text/plain": "js fallback"}}, raw=True)
display({{"image/svg+xml": '<svg onload="alert(1)"><script>alert(2)</script></svg>'}},
        raw=True)
display({{"application/vnd.jupyter.widget-view+json": {{"model_id": "x", "version_major": 2, "version_minor": 0}},
         "text/plain": "widget fallback"}}, raw=True)
display({{"application/x-unknown": "<script>document.title = 'pwned'</script>"}}, raw=True)
display({{"text/markdown": "markdown-text-kept <img src=x onerror=alert(1)> [js](javascript:alert(1))"}}, raw=True)
display({{"image/png": {PNG!r}}}, raw=True,
        metadata={{"image/png": {{"width": 4, "onload": "x"}}, "filenames": {{"image/png": "javascript:alert(1)"}}}})
display({{"image/png": "not base64 <script>alert(1)</script>"}}, raw=True)
display(ipywidgets.HTML(value="<img src=x onerror=\\"document.title='pwned'\\">"))  # widget state
"""
ATTACHMENT_HTML = "PHNjcmlwdD5kb2N1bWVudC50aXRsZT0ncHduZWQnPC9zY3JpcHQ+"  # <script>document.title=...</script>
MARKDOWN_ATTACKS = (
    "Markdown with raw HTML: <img src=x onerror=\"document.title='pwned'\"> <script>alert(1)</script>\n\n"
    "<iframe src='https://example.org'></iframe><form><input name=p><button>Send</button></form>\n\n"
    "<object data=x></object><embed src=x><svg onload=alert(1)></svg>\n\n"
    "[markdown link](javascript:alert(1)) <javascript:alert(2)> [ref][1] ![data](data:text/html,hi)\n\n"
    "<div style='position:fixed;top:0;left:0;width:100%;height:100%'>overlay</div>\n\n"
    "![kept](attachment:ok.png) ![unsafe](attachment:evil.html) ![missing](attachment:missing.png)\n\n"
    "[1]: data:text/html,<script>alert(3)</script>\n"
)


def hostile_markdown(ctx):
    """Right answers; markdown cells (the written answer among them) and a raw cell that try to run."""
    nb = perfect(ctx)
    nb.cells[index_of(nb, "explain")].source = (
        "written-text-kept " + WRITTEN_ANSWER + "\n\n<img src=x onerror=alert(1)><style>*{display:none}</style>"
    )
    markdown = nbformat.v4.new_markdown_cell(MARKDOWN_ATTACKS)
    markdown.attachments = {"ok.png": {"image/png": PNG}, "evil.html": {"text/html": ATTACHMENT_HTML}}
    raw = nbformat.v4.new_raw_cell("<script>document.title='pwned'</script>", metadata={"raw_mimetype": "text/html"})
    nb.cells[index_of(nb, "setup") + 1 : index_of(nb, "setup") + 1] = [markdown, raw]
    return nb


HUGE_TOTAL = """import base64, os
for i in range(30):  # 30 images of 1.9 MB: each under the per-output limit, 57 MB in all
    display({"image/png": base64.b64encode(os.urandom(1_400_000)).decode(), "text/plain": f"image {i}"}, raw=True)
"""
# After the tests ran: the whole input history, hidden tests included, printed into an output.
PRINTS_HIDDEN_TESTS = "print('\\n'.join(In))\n"


def leaks_hidden_tests(ctx):
    """Right answers; normalize prints its (hidden) inputs, and a last cell prints every cell run."""
    answers = solution_answers(ctx.solution)
    answers["normalize"] = answers["normalize"].replace("def normalize(v):\n", "def normalize(v):\n    print(v)\n")
    nb = answered(ctx, answers, written=True)
    nb.cells.append(nbformat.v4.new_code_cell(PRINTS_HIDDEN_TESTS))
    return nb


FEEDBACK_CASES = [
    Case("hostile_html", lambda ctx: with_prefix(ctx, "normalize", HOSTILE_HTML), "graded", 6),
    Case(
        "hostile_types", lambda ctx: with_prefix(ctx, "normalize", HOSTILE_TYPES), "graded", 6, r"cleaned for display"
    ),
    Case("hostile_markdown", hostile_markdown, "graded", 6, r"cleaned for display: .*2 markdown cell"),
    Case("huge_total", lambda ctx: with_prefix(ctx, "normalize", HUGE_TOTAL), "graded", 6, r"outputs cut"),
    Case("leaks_hidden_tests", leaks_hidden_tests, "graded", 6),
]
CASES += FEEDBACK_CASES
