"""Assertions for test cells that student code cannot switch off by monkeypatching.

A notebook's locked setup cell, which runs before any student code, creates the checker::

    import numpy as np
    import torch                       # import what the tests compare before creating it
    from grading.checks import Checks
    check = Checks()

and test cells use it instead of ``assert torch.allclose(...)``::

    check.close(normalize(x), expected, atol=1e-6, label="normalize")
    check.between(x_adv, 0.0, 1.0, label="pixels stay in [0, 1]")

Every function the checks rely on (NumPy's ufuncs, ``isinstance``, the tensor
conversions) is captured when this module is first imported, so later rebinding of
``np.allclose``, ``np.testing.assert_allclose``, ``torch.allclose``, ``math.isclose``
or builtins changes nothing. Values must be plain numbers, lists, NumPy arrays or
torch tensors of exactly those types (subclasses could override comparisons). Each
passing check publishes a small "witness" output; the grader gives 0 to a test cell
whose checks did not all report (for example when student code stopped later cells
from running as written). This raises the bar; it is not a proof: code running in
the same process can still defeat it deliberately, which the grader's review flags
(:mod:`grading.audit`) are there to catch.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import linecache
import math
import os
import sys

import numpy as np

WITNESS_MIME = "application/vnd.grading.check+json"
# The variable that names the kernel's witness key file (see grading.witnesses), and the
# fields of a witness that its signature covers.
KEY_FILE_ENV = "GRADING_WITNESS_KEY_FILE"
SIGNED_FIELDS = ("check", "label", "cell", "line", "count")


def cell_digest(source: str) -> str:
    """Digest of a cell's code as the kernel ran it (trailing spaces and blank ends ignored)."""
    text = "\n".join(line.rstrip() for line in source.splitlines()).strip("\n")
    return hashlib.sha256(text.encode()).hexdigest()


def signature(key: bytes, witness: dict) -> str:
    """HMAC-SHA256 of the witness's ``SIGNED_FIELDS`` under ``key``."""
    message = json.dumps({field: witness.get(field) for field in SIGNED_FIELDS}, sort_keys=True)
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def _read_key() -> bytes | None:
    """The kernel's witness key, read once and deleted (before any student code runs)."""
    path = os.environ.pop(KEY_FILE_ENV, None)
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            key = f.read().strip()
        os.unlink(path)
    except OSError:
        return None
    return key or None


_key = _read_key()
_getframe, _getlines, _cell_digest, _signature = sys._getframe, linecache.getlines, cell_digest, signature
_count = [0]

_isinstance, _type, _len, _repr, _float, _bool = (
    builtins.isinstance,
    builtins.type,
    builtins.len,
    builtins.repr,
    builtins.float,
    builtins.bool,
)
_tuple, _list, _str, _int, _zip = builtins.tuple, builtins.list, builtins.str, builtins.int, builtins.zip
_AssertionError, _BaseException, _Exception = builtins.AssertionError, builtins.BaseException, builtins.Exception
_ndarray, _generic, _bool_ = np.ndarray, np.generic, np.bool_
_array, _float64 = np.array, np.float64
_absolute, _subtract, _multiply, _add = np.absolute, np.subtract, np.multiply, np.add
_less_equal, _greater_equal, _isnan, _logical_and, _logical_or, _equal = (
    np.less_equal,
    np.greater_equal,
    np.isnan,
    np.logical_and,
    np.logical_or,
    np.equal,
)
_ravel, _argmax, _tolist, _int64 = _ndarray.ravel, _ndarray.argmax, _ndarray.tolist, np.int64
_unravel_index, _array2string = np.unravel_index, np.array2string
_isfinite = math.isfinite

_torch = sys.modules.get("torch")  # captured only if the setup cell imported torch first
if _torch is not None:
    _Tensor, _Parameter = _torch.Tensor, _torch.nn.Parameter
    _detach, _cpu, _numpy, _to = _Tensor.detach, _Tensor.cpu, _Tensor.numpy, _Tensor.to
    _get_dtype = _torch._C.TensorBase.__dict__["dtype"].__get__
    _torch_float64, _numpy_unsupported = _torch.float64, (_torch.float16, _torch.bfloat16)
    _torch_function = _Tensor.__dict__.get("__torch_function__")
else:
    _Tensor = _Parameter = None

try:
    from IPython import get_ipython as _get_ipython

    _shell = _get_ipython()
    _publish = _shell.display_pub.publish if _shell is not None else None
except ImportError:
    _publish = None


def _all(values) -> bool:
    return _bool(_logical_and.reduce(_ravel(_array(values))))


def _count_nonzero(values) -> int:
    return _int(_add.reduce(_ravel(_array(values, dtype=_int64))))


def _fail(label: str, message: str) -> None:
    raise _AssertionError(f"{label}: {message}")


def _tampered() -> str | None:
    """What has been changed that the checks cannot work around, or None."""
    if _Tensor is not None and _Tensor.__dict__.get("__torch_function__") is not _torch_function:
        return "torch.Tensor.__torch_function__ was replaced"
    return None


def _as_array(value, label: str, what: str) -> np.ndarray:
    """``value`` as a NumPy array, accepting only exact built-in, NumPy and torch types."""
    kind = _type(value)
    if kind is bool or kind is int or kind is float:
        return _array(value)
    if kind is _ndarray:
        return _array(value)  # a copy: later mutation by student code cannot reach it
    if _isinstance(value, _generic) and kind.__module__ == "numpy":
        return _array(value)
    if kind is list or kind is tuple:
        items = [_as_array(item, label, what) for item in value]
        try:
            return _array(items)
        except ValueError:
            _fail(label, f"{what} is a ragged sequence")
    if _Tensor is not None and (kind is _Tensor or kind is _Parameter):
        tensor = _cpu(_detach(value))
        if _get_dtype(tensor) in _numpy_unsupported:
            tensor = _to(tensor, _torch_float64)
        return _array(_numpy(tensor))
    _fail(label, f"{what} must be a number, a list, a NumPy array or a torch tensor; got {kind.__name__}")


def _show(array: np.ndarray) -> str:
    try:
        return _array2string(array, threshold=12, precision=6)
    except _Exception:  # NumPy's printing looks things up at call time: fall back to plain numbers
        return _repr(_tolist(_array(array)))


class _Frozen(type):
    def __setattr__(cls, name, value):
        raise AttributeError("the checks cannot be changed")

    def __delattr__(cls, name):
        raise AttributeError("the checks cannot be changed")


class Checks(metaclass=_Frozen):
    """Tamper-resistant assertions for test cells (see the module's docstring).

    Each method raises ``AssertionError`` with a message that says what differs, or
    returns None and publishes a witness output.
    """

    __slots__ = ()

    def _passed(self, name: str, label: str) -> None:
        if _publish is None:
            return
        witness = {"check": name, "label": label}
        if _key is not None:  # autograding: sign where the check was called from
            caller = _getframe(2)
            _count[0] += 1
            witness.update(
                cell=_cell_digest("".join(_getlines(caller.f_code.co_filename))), line=caller.f_lineno, count=_count[0]
            )
            witness["mac"] = _signature(_key, witness)
        _publish({WITNESS_MIME: witness, "text/plain": f"\u2713 {label}"})

    def _start(self, label: str) -> None:
        problem = _tampered()
        if problem is not None:
            _fail(label, f"the test environment was tampered with ({problem})")

    def close(self, actual, expected, *, rtol: float = 1e-5, atol: float = 1e-8, label: str = "close") -> None:
        """``actual`` equals ``expected`` elementwise within ``atol + rtol * |expected|``, same shape."""
        self._start(label)
        got, want = _as_array(actual, label, "the result"), _as_array(expected, label, "the expected value")
        if got.shape != want.shape:
            _fail(label, f"shape {got.shape} instead of {want.shape}")
        got, want = _array(got, dtype=_float64), _array(want, dtype=_float64)
        diff = _absolute(_subtract(got, want))
        ok = _logical_or(
            _less_equal(diff, _add(atol, _multiply(rtol, _absolute(want)))), _logical_and(_isnan(got), _isnan(want))
        )
        if not _all(ok):
            bad = _count_nonzero(~ok)
            where = _unravel_index(_argmax(_array(~ok, dtype=_float64)), ok.shape) if ok.ndim else ()
            _fail(
                label,
                f"{bad} of {ok.size} values differ (first at index {_tuple(_int(i) for i in where)}); "
                f"expected {_show(want)}, got {_show(got)}",
            )
        self._passed("close", label)

    def equal(self, actual, expected, *, label: str = "equal") -> None:
        """``actual`` equals ``expected`` exactly (strings, or numbers and arrays of the same shape)."""
        self._start(label)
        if _type(expected) is str or _type(actual) is str:
            if not (_type(actual) is str and _type(expected) is str and _str.__eq__(actual, expected)):
                _fail(label, f"expected {_repr(expected)}, got {_repr(actual)}")
        else:
            got, want = _as_array(actual, label, "the result"), _as_array(expected, label, "the expected value")
            if got.shape != want.shape:
                _fail(label, f"shape {got.shape} instead of {want.shape}")
            if not _all(_equal(got, want)):
                _fail(label, f"expected {_show(want)}, got {_show(got)}")
        self._passed("equal", label)

    def shape(self, actual, expected_shape, *, label: str = "shape") -> None:
        """``actual`` (array-like) has shape ``expected_shape``."""
        self._start(label)
        got = _as_array(actual, label, "the result").shape
        if got != _tuple(expected_shape):
            _fail(label, f"shape {got} instead of {_tuple(expected_shape)}")
        self._passed("shape", label)

    def between(self, actual, low: float, high: float, *, atol: float = 1e-6, label: str = "between") -> None:
        """Every value of ``actual`` lies in ``[low - atol, high + atol]`` (and none is NaN)."""
        self._start(label)
        got = _array(_as_array(actual, label, "the result"), dtype=_float64)
        ok = _logical_and(_greater_equal(got, low - atol), _less_equal(got, high + atol))
        if not _all(ok):
            _fail(
                label,
                f"{_count_nonzero(~ok)} of {ok.size} values outside [{low}, {high}] "
                f"(range found: {_show(got.min())} to {_show(got.max())})",
            )
        self._passed("between", label)

    def true(self, condition, message: str, *, label: str = "true") -> None:
        """``condition`` (a bool, or a single boolean NumPy/torch value) is True."""
        self._start(label)
        if _type(condition) is not bool:
            value = _as_array(condition, label, "the condition")
            if value.dtype != _bool_ or value.size != 1:
                _fail(label, f"the condition must be a single boolean, got {value.dtype} of shape {value.shape}")
            condition = _bool(_all(value))
        if not condition:
            _fail(label, message)
        self._passed("true", label)

    def raises(self, exception: type[BaseException], function, *args, label: str = "raises", **kwargs) -> None:
        """Calling ``function(*args, **kwargs)`` raises ``exception`` (or a subclass)."""
        self._start(label)
        try:
            function(*args, **kwargs)
        except _BaseException as error:
            if not _isinstance(error, exception):
                _fail(label, f"raised {_type(error).__name__} instead of {exception.__name__}: {error}")
        else:
            _fail(label, f"{exception.__name__} was not raised")
        self._passed("raises", label)
