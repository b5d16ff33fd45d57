"""The code audit (no kernels): every way of reaching into the tests is flagged, real answers are not."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from catalog import SOURCE, index_of

from grading.audit import audit, audit_cells, written_file_flags

ROOT = Path(__file__).resolve().parents[2]
PROTECTED = {"check", "np", "Checks", "torch"}
MODULES = {"np": "numpy", "torch": "torch"}


def flags(code: str) -> list[str]:
    return audit_cells([("cell", code)], PROTECTED, MODULES)


# Each snippet reaches into the test machinery in its own way; each must be flagged.
ATTACKS = {
    "assignment": ("check = None", "rebinds 'check'"),
    "augmented": ("np += 1", "rebinds 'np'"),
    "annotated": ("check: object = object()", "rebinds 'check'"),
    "loop target": ("for check in [object()]:\n    pass", "rebinds (as a loop variable) 'check'"),
    "nested loop target": ("for _, (a, check) in enumerate([(1, 2)]):\n    pass", "'check'"),
    "with target": ("import contextlib\nwith contextlib.nullcontext(1) as check:\n    pass", "(with ... as) 'check'"),
    "except target": ("try:\n    1 / 0\nexcept ZeroDivisionError as check:\n    pass", "(except ... as) 'check'"),
    "walrus": ("if (check := object()):\n    pass", "rebinds 'check'"),
    "walrus in a comprehension": ("[check := i for i in range(3)]", "rebinds 'check'"),
    "import as": ("import os as check", "rebinds (by an import) 'check'"),
    "from import": ("from os import path as np", "rebinds (by an import) 'np'"),
    "another module as np": ("import math as np", "rebinds (by an import) 'np'"),
    "def": ("def check():\n    pass", "redefines 'check'"),
    "class": ("class Checks:\n    pass", "redefines 'Checks'"),
    "del": ("del check", "deletes 'check'"),
    "global in a function": ("def f():\n    global check\n    check = None", "rebinds 'check'"),
    "match capture": ("match 1:\n    case check:\n        pass", "(a match capture) 'check'"),
    "module attribute": ("np.allclose = lambda *a: True", "assigns np.allclose"),
    "nested module attribute": ("np.testing.assert_allclose = print", "assigns np.testing.assert_allclose"),
    "alias of a class": ("T = torch.Tensor\nT.detach = lambda self: self", "assigns T.detach"),
    "alias of an alias": ("A = np.testing\nB = A\nB.assert_allclose = print", "assigns B.assert_allclose"),
    "attribute through a call": ("type(check).close = print", "assigns type(check).close"),
    "attribute in a loop target": ("for np.e in [1]:\n    pass", "assigns np.e"),
    "item of a module dict": ("np.__dict__['allclose'] = print", "uses .__dict__"),
    "delete an attribute": ("del np.allclose", "deletes np.allclose"),
    "setattr": ("setattr(np, 'allclose', print)", "uses setattr"),
    "globals": ("globals()['check'] = None", "uses globals"),
    "vars": ("vars()['check'] = None", "uses vars"),
    "exec": ("exec('check = None')", "uses exec"),
    "eval": ("eval('1')", "uses eval"),
    "compile": ("compile('x', 'f', 'exec')", "uses compile"),
    "builtins": ("import builtins\nbuiltins.isinstance = lambda *a: True", "imports builtins"),
    "dunder builtins": ("__builtins__.isinstance = print", "uses __builtins__"),
    "sys.modules": ("import sys\nsys.modules['numpy'].allclose = print", "uses sys.modules"),
    "from sys import modules": ("from sys import modules", "imports modules from sys"),
    "sys.path": ("import sys\nsys.path.insert(0, '.')", "uses sys.path"),
    "settrace": ("import sys\nsys.settrace(print)", "uses sys.settrace"),
    "frames": ("import sys\nsys._getframe().f_back.f_globals['check'] = 1", "uses ._getframe"),
    "traceback frames": ("try:\n    1 / 0\nexcept Exception as e:\n    e.__traceback__.tb_frame", "uses .tb_frame"),
    "function globals": ("print.__globals__", "uses .__globals__"),
    "code objects": ("f = lambda: 1\nf.__code__ = (lambda: 2).__code__", "uses .__code__"),
    "class swap": ("class Fake:\n    __slots__ = ()\n\ncheck.__class__ = Fake", "assigns check.__class__"),
    "subclasses": ("object.__subclasses__()", "uses .__subclasses__"),
    "gc": ("import gc\ngc.get_referrers(check)", "imports gc"),
    "ctypes": ("import ctypes", "imports ctypes"),
    "inspect": ("import inspect\ninspect.currentframe()", "imports inspect"),
    "importlib": ("import importlib\nimportlib.reload(np)", "imports importlib"),
    "linecache": ("import linecache\nlinecache.cache.clear()", "imports linecache"),
    "threads": ("import threading", "imports threading"),
    "the grader": ("from grading import checks", "imports from grading"),
    "a relative import": ("from . import x", "imports from ."),
    "__main__": ("import __main__\n__main__.check = None", "imports __main__"),
    "get_ipython": ("get_ipython().input_transformers_cleanup.append(print)", "uses get_ipython"),
    "IPython module": ("import IPython\nIPython.get_ipython().showtraceback = print", "imports IPython"),
    "traceback display": ("ip = object()\nip.showtraceback = print", "uses .showtraceback"),
    "user namespace": ("shell = object()\nshell.user_ns['check'] = None", "uses .user_ns"),
    "line magic": ("%config InteractiveShell.ast_node_interactivity = 'none'", "uses the magic %config"),
    "extension": ("%load_ext autoreload", "uses the magic %load_ext"),
    "cell magic": ("%%javascript\nalert(1)", "uses the magic %javascript"),
    "shell escape": ("!cat /etc/passwd", "runs a shell command"),
    "code inside an allowed magic": ("%time check = None", "rebinds 'check'"),
    "code inside an allowed cell magic": ("%%time\nnp.allclose = print", "assigns np.allclose"),
    "module file": ("open('numpy.py', 'w').write('x = 1')", "names the file 'numpy.py'"),
    "start-up file": ("open('sitecustomize.py', 'w')", "names the file 'sitecustomize.py'"),
    "matplotlibrc": ("open('matplotlibrc', 'w')", "names the file 'matplotlibrc'"),
    "torch function hook": ("torch.Tensor.__torch_function__ = print", "uses .__torch_function__"),
}


@pytest.mark.parametrize("code, expected", ATTACKS.values(), ids=ATTACKS.keys())
def test_every_way_of_reaching_into_the_tests_is_flagged(code, expected):
    found = flags(code)
    assert any(expected in flag for flag in found), found


ORDINARY = {
    "re-import the setup's modules": "import numpy as np\nimport torch\nfrom torch import nn",
    "local names in functions": "def f(x):\n    check = x + 1\n    np_ = check\n    return np_",
    "parameters named like anything": "def f(check, np=None):\n    return check",
    "comprehension variables": "values = [check for check in range(3)]",
    "attributes of own objects": "class Model(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
    "        self.scale = 2.0\n\nm = Model()\nm.scale = 3.0",
    "tensors built from torch": "delta = torch.zeros(3)\ndelta.requires_grad = True\ndelta.grad = None",
    "arrays built from numpy": "out = np.zeros(3)\nout.flags.writeable = False\nout[0] = 1.0",
    "model.modules and eval": "m = torch.nn.Linear(2, 2)\nm.eval()\nlist(m.modules())",
    "allowed magics": "%matplotlib inline\n%time x = 1",
    "writing data files": "np.save('results.npy', np.zeros(3))\nopen('notes.txt', 'w').write('hi')",
    "printing to stderr": "import sys\nprint('x', file=sys.stderr)",
}


@pytest.mark.parametrize("code", ORDINARY.values(), ids=ORDINARY.keys())
def test_ordinary_code_is_left_alone(code):
    assert flags(code) == []


def test_the_real_solutions_are_not_flagged():
    """Every answer of the six notebooks' solutions (and the test assignment's) passes the audit,
    as do the answers of the generated exercises (the stubs)."""
    for source in [SOURCE, *sorted(ROOT.glob("solutions/*/*.ipynb"))]:
        solution = nbformat.read(source, 4)
        release_path = ROOT / "exercises" / source.parent.name / source.name
        release = nbformat.read(release_path, 4) if release_path.exists() else solution
        for cell in solution.cells:  # the release has no solution markers: strip them as a student would
            cell.source = "\n".join(line for line in cell.source.splitlines() if "### " not in line)
        assert audit(solution, release) == [], source.name
        assert audit(release, release) == [], source.name


def test_audit_sees_code_moved_anywhere_in_the_notebook():
    nb = nbformat.read(SOURCE, 4)
    nb.cells.insert(index_of(nb, "test_accuracy") + 1, nbformat.v4.new_code_cell("check = None"))
    found = audit(nb, nbformat.read(SOURCE, 4))
    assert len(found) == 1 and "rebinds 'check'" in found[0] and found[0].startswith("cell 11"), found


def test_written_files_are_flagged_or_noted():
    review, notes = written_file_flags(["numpy.py", "fig.png", "pkg/__init__.py"], 3)
    assert [r.split(" wrote ")[1].split(" ")[0] for r in review] == ["numpy.py", "pkg/__init__.py"]
    assert notes == ["the kernel wrote 3 file(s) in its working directory (fig.png)"]
    assert written_file_flags([], 0) == ([], [])
