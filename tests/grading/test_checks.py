"""grading.checks: right answers pass, wrong ones fail, and monkeypatching changes neither.

Each test runs in a fresh interpreter, so that the patches cannot leak into the test session
and the module captures its references in the order a notebook's setup cell imposes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from course_tools import ROOT

SETUP = """
import math, numpy as np, torch
from grading.checks import Checks
check = Checks()

def fails(call):
    try:
        call()
    except AssertionError as error:
        return str(error)
    raise SystemExit(f"did not fail: {call}")
"""


def run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SETUP + textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_right_values_pass_in_every_accepted_type():
    run("""
    check.close(torch.tensor([0.6, 0.8]), [0.6, 0.8])
    check.close(np.array([[1.0, 2.0]], dtype=np.float32), [[1, 2]], rtol=1e-6)
    check.close(np.float32(0.5), 0.5)
    check.close(torch.ones(2, dtype=torch.bfloat16, requires_grad=True), (1, 1))
    check.equal("pgd", "pgd")
    check.equal(torch.tensor([1, 2]), [1, 2])
    check.shape(torch.zeros(2, 1, 4, 4), (2, 1, 4, 4))
    check.between(torch.rand(100), 0.0, 1.0)
    check.true(torch.tensor(True), "true")
    check.true(np.bool_(True), "true")
    check.raises(ValueError, int, "x")
    """)


def test_wrong_values_fail_with_a_clear_message():
    out = run("""
    print(fails(lambda: check.close([0.6, 0.81], [0.6, 0.8], label="normalize")))
    print(fails(lambda: check.close(np.zeros((2, 3)), np.zeros(6))))
    print(fails(lambda: check.close(float("nan"), 1.0)))
    print(fails(lambda: check.between([0.5, 1.2], 0, 1)))
    print(fails(lambda: check.true(1, "must be a bool")))
    print(fails(lambda: check.equal("a", "b")))
    print(fails(lambda: check.raises(ValueError, int, "1")))
    """).splitlines()
    assert out[0].startswith("normalize: 1 of 2 values differ (first at index (1,)); expected")
    assert out[1] == "close: shape (2, 3) instead of (6,)"
    assert out[2].startswith("close: 1 of 1 values differ")
    assert out[3].startswith("between: 1 of 2 values outside [0, 1]")
    assert out[4].startswith("true: the condition must be a single boolean")
    assert out[5] == "equal: expected 'b', got 'a'"
    assert out[6] == "raises: ValueError was not raised"


def test_monkeypatching_libraries_changes_nothing():
    out = run("""
    import builtins
    np.allclose = lambda *a, **k: True
    np.isclose = lambda a, b, **k: np.ones(np.shape(a), dtype=bool)
    np.all = lambda *a, **k: True
    np.absolute = lambda x, *a, **k: x * 0
    np.subtract = lambda a, b, *r, **k: np.zeros(np.shape(a))
    np.testing.assert_allclose = lambda *a, **k: None
    torch.allclose = lambda *a, **k: True
    torch.Tensor.numpy = lambda self: np.array([0.6, 0.8])
    torch.Tensor.detach = lambda self: torch.tensor([0.6, 0.8])
    math.isclose = lambda *a, **k: True
    builtins.isinstance = lambda *a: True
    builtins.abs = lambda x: 0
    print(fails(lambda: check.close(torch.tensor([3.0, 4.0]), [0.6, 0.8])))
    """)
    assert out.startswith("close: 2 of 2 values differ")


def test_the_checker_itself_cannot_be_patched():
    run("""
    for patch in (lambda: setattr(check, "close", None), lambda: setattr(type(check), "close", None),
                  lambda: delattr(type(check), "close")):
        try:
            patch()
        except AttributeError:
            continue
        raise SystemExit("patched")
    """)


def test_values_that_could_lie_are_refused():
    out = run("""
    class Liar(torch.Tensor):
        def __eq__(self, other):
            return True
    class Always(float):
        def __sub__(self, other):
            return 0.0
    print(fails(lambda: check.close(torch.zeros(2).as_subclass(Liar), [1, 1])))
    print(fails(lambda: check.close(Always(5.0), 1.0)))
    torch.Tensor.__torch_function__ = classmethod(lambda cls, func, types, args=(), kwargs=None: True)
    print(fails(lambda: check.close(torch.tensor([1.0]), [1.0])))
    """).splitlines()
    assert "got Liar" in out[0] and "got Always" in out[1]
    assert "tampered with" in out[2]


@pytest.mark.parametrize("module", ["numpy", "math"])
def test_checks_import_without_torch(module):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import {module}, sys\nfrom grading.checks import Checks\n"
            "Checks().close([1.0], [1.0])\nassert 'torch' not in sys.modules",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
