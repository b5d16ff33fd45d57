"""Mutants generated from the solution cells by AST operators.

Every answer cell of ``solutions/NN_topic/NN_topic.ipynb`` (a code cell with nbgrader's
``solution`` flag) is parsed; each node that lies between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` is offered to every operator of :data:`OPERATORS`, and each change an
operator proposes becomes one mutant: the cell's source with that node's text replaced
(parenthesized, so precedence cannot change) and the rest of the cell as written. A change
whose cell parses to the solution itself, or to an earlier mutant, is dropped; so the mutants
of a cell are distinct programs that differ from the solution.

The same solutions give the same mutants in the same order on every run. A mutant's id is
``NN.cell.operator.HASH``: the hash covers the operator, the text replaced and its
replacement (and, only for identical edits of identical text, their order in the cell), so
ids do not move when other lines of the solution change.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


@dataclass(frozen=True)
class Mutant:
    """One generated mutant: ``source`` is the whole answer cell ``cell`` of ``notebook``, mutated."""

    id: str
    notebook: str
    cell: str
    operator: str
    description: str
    source: str


@dataclass(frozen=True)
class Change:
    """A proposed edit: replace ``node`` (an expression or a statement) by ``new`` (a node, a
    list of statements, or None for ``pass``)."""

    node: ast.AST
    new: ast.AST | list[ast.stmt] | None
    what: str = ""  # a short name of the change for the description, e.g. "dim 1 -> 2"


# ---------------------------------------------------------------------------------------------
# Vocabulary of the operators
ARITHMETIC = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div}
ARITHMETIC |= {ast.Pow: ast.Mult, ast.Mod: ast.FloorDiv, ast.MatMult: ast.Mult}
NON_COMMUTATIVE = (ast.Sub, ast.Div, ast.FloorDiv, ast.MatMult, ast.Pow, ast.Mod)
COMPARISONS = {
    ast.Lt: (ast.LtE, ast.Gt),
    ast.LtE: (ast.Lt, ast.GtE),
    ast.Gt: (ast.GtE, ast.Lt),
    ast.GtE: (ast.Gt, ast.LtE),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
}
# Methods and functions whose dimension argument (the first positional one, or ``dim=``) selects
# what is reduced or reshaped.
DIM_CALLS = {"sum", "mean", "norm", "amax", "amin", "max", "min", "argmax", "argmin", "argsort", "sort", "std"}
DIM_CALLS |= {"var", "prod", "softmax", "log_softmax", "flatten", "squeeze", "cumsum", "all", "any", "logsumexp"}
DIM_CALLS |= {"median", "normalize", "vector_norm", "topk", "gather", "scatter", "scatter_", "count_nonzero"}
# Pairs of names a plausible slip exchanges (methods, functions and attributes alike).
SWAPS = {
    "mean": "sum",
    "sum": "mean",
    "amax": "amin",
    "amin": "amax",
    "max": "min",
    "min": "max",
    "argmax": "argmin",
    "argmin": "argmax",
    "clamp_min": "clamp_max",
    "clamp_max": "clamp_min",
    "train": "eval",
    "eval": "train",
    "enable_grad": "no_grad",
    "no_grad": "enable_grad",
    "zeros_like": "ones_like",
    "ones_like": "zeros_like",
    "zeros": "ones",
    "ones": "zeros",
    "randn": "rand",
    "rand": "randn",
    "randn_like": "rand_like",
    "rand_like": "randn_like",
    "repeat": "repeat_interleave",
    "repeat_interleave": "repeat",
    "floor": "ceil",
    "ceil": "floor",
    "round": "int",
    "topk": "sort",
    "deepcopy": "copy",
    "abs": "neg",
    "relu": "abs",
    "representation": "forward",
}
# Calls that keep their receiver's (or first argument's) shape: removing one leaves a program
# that runs and is wrong in one detail (a missing detach, clamp, sign, cast, ...).
IDENTITY_METHODS = {"detach", "clone", "clamp", "clamp_min", "clamp_max", "clip", "sign", "abs", "float", "double"}
IDENTITY_METHODS |= {"long", "item", "contiguous", "to", "cpu", "requires_grad_", "squeeze", "relu", "exp", "sqrt"}
IDENTITY_METHODS |= {"neg", "flip", "t", "softmax", "log_softmax", "sigmoid", "tanh", "round", "floor", "ceil"}
IDENTITY_FUNCTIONS = {"clamp", "clip", "sign", "abs", "round", "int", "float", "detach", "relu", "softmax", "sqrt"}
IDENTITY_FUNCTIONS |= {"normalize", "exp", "log", "sigmoid", "tanh", "deepcopy", "tuple", "list"}
MODULES = {"torch", "F", "np", "math", "copy", "nn"}  # names that stand for modules, not tensors
# Keyword arguments a slip adds (absent in the solution): name -> [(keyword, value)].
ADDED_KEYWORDS = {
    "topk": [("largest", False)],
    "argsort": [("descending", True)],
    "sort": [("descending", True)],
    "pgd": [("random_start", False), ("random_start", True), ("targeted", True)],
    "cross_entropy": [("reduction", "sum"), ("reduction", "none")],
    "amax": [("keepdim", True)],
    "sum": [("keepdim", True)],
    "mean": [("keepdim", True)],
}
# String choices (the norms, the reductions of a loss): a slip picks another one.
STRING_CHOICES = ({"linf", "l2"}, {"sum", "mean", "none"})


def called_name(call: ast.Call) -> str | None:
    """``f`` for ``f(...)``, ``m`` for ``obj.m(...)``."""
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def number(value: float | int) -> ast.expr:
    """A constant node for ``value`` (negative numbers as unary minus, as Python parses them)."""
    if value < 0:
        return ast.UnaryOp(ast.USub(), ast.Constant(-value))
    return ast.Constant(value)


def replaced(node: ast.AST, **fields) -> ast.AST:
    new = copy.deepcopy(node)
    for name, value in fields.items():
        setattr(new, name, value)
    return new


def short(text: str, limit: int = 60) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# ---------------------------------------------------------------------------------------------
# The operators: each takes a node (and its parent) and yields the changes it proposes.
def arithmetic(node, parent):
    """``a + b`` -> ``a - b``, ``*`` <-> ``/``, ``**`` -> ``*``, ``@`` -> ``*``, also in ``+=``."""
    if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in ARITHMETIC:
        yield Change(node, replaced(node, op=ARITHMETIC[type(node.op)]()))


def operands_swapped(node, parent):
    """``a - b`` -> ``b - a`` for the operators that do not commute."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, NON_COMMUTATIVE):
        yield Change(node, replaced(node, left=node.right, right=node.left))


def comparison(node, parent):
    """``<`` -> ``<=`` and ``>``, ``==`` <-> ``!=``, ``is`` <-> ``is not``, ``in`` <-> ``not in``."""
    if isinstance(node, ast.Compare):
        for index, op in enumerate(node.ops):
            for other in COMPARISONS.get(type(op), ()):
                ops = list(node.ops)
                ops[index] = other()
                yield Change(node, replaced(node, ops=ops))


def boolean(node, parent):
    """``and`` <-> ``or``; ``not x`` -> ``x``; ``a if c else b`` -> ``b if c else a``."""
    if isinstance(node, ast.BoolOp):
        yield Change(node, replaced(node, op=ast.Or() if isinstance(node.op, ast.And) else ast.And()))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield Change(node, node.operand)
    if isinstance(node, ast.IfExp):
        yield Change(node, replaced(node, body=node.orelse, orelse=node.body))


def condition(node, parent):
    """``if c:`` -> ``if not c:``."""
    if isinstance(node, ast.If):
        yield Change(node.test, ast.UnaryOp(ast.Not(), node.test), "condition negated")


def sign(node, parent):
    """``-x`` -> ``x``; a non-zero number -> its negative."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        yield Change(node, node.operand, "sign removed")
    if is_number(node) and node.value != 0 and not is_negated(parent):
        yield Change(node, number(-node.value), "sign negated")


def is_number(node) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def is_negated(parent) -> bool:
    return isinstance(parent, ast.UnaryOp) and isinstance(parent.op, ast.USub)


def constant(node, parent):
    """Integers n -> n + 1, n - 1; floats c -> 0, 2c (numerical guards under 1e-4: -> 0, 1);
    ``True`` <-> ``False``; one norm or reduction name -> another."""
    if not isinstance(node, ast.Constant):
        return
    value = node.value
    sign = -1 if is_negated(parent) else 1
    where = parent if is_negated(parent) else node
    if type(value) is bool:
        yield Change(node, ast.Constant(not value))
    elif type(value) is int:
        for new in (sign * value + 1, sign * value - 1):
            yield Change(where, number(new))
    elif type(value) is float:
        news = (0.0, 1.0) if 0 < abs(value) < 1e-4 else (0.0, 2 * sign * value) if value else (1.0,)
        for new in news:
            yield Change(where, number(new))
    elif type(value) is str:
        for choices in STRING_CHOICES:
            if value in choices:
                for other in sorted(choices - {value}):
                    yield Change(node, ast.Constant(other))


def keyword_dropped(node, parent):
    """Each keyword argument left out (``keepdim=True``, ``dim=1``, ``generator=...``, ...)."""
    if isinstance(node, ast.Call):
        for index, kw in enumerate(node.keywords):
            if kw.arg is not None:
                keywords = node.keywords[:index] + node.keywords[index + 1 :]
                yield Change(node, replaced(node, keywords=keywords), f"{kw.arg}= dropped")


def keyword_added(node, parent):
    """A keyword a slip adds: ``largest=False``, ``descending=True``, ``random_start=...``,
    ``targeted=True``, ``reduction=...``, ``keepdim=True``."""
    if isinstance(node, ast.Call):
        present = {kw.arg for kw in node.keywords}
        for name, value in ADDED_KEYWORDS.get(called_name(node), ()):
            if name not in present:
                keywords = [*node.keywords, ast.keyword(name, ast.Constant(value))]
                yield Change(node, replaced(node, keywords=keywords), f"{name}={value!r} added")


def dim_dropped(node, parent):
    """The dimension of a reduction left out: ``x.sum(dim=1)`` -> ``x.sum()``, ``flatten(1)`` ->
    ``flatten()``."""
    if isinstance(node, ast.Call) and called_name(node) in DIM_CALLS:
        if node.args and isinstance(node.func, ast.Attribute):
            yield Change(node, replaced(node, args=node.args[:-1]), "last positional argument dropped")


def arguments_swapped(node, parent):
    """Two neighbouring positional arguments exchanged; two elements of a tuple exchanged
    (``return a, b`` -> ``return b, a``, ``a, b = ...`` -> ``b, a = ...``)."""
    if isinstance(node, ast.Call):
        for index in range(len(node.args) - 1):
            args = list(node.args)
            args[index], args[index + 1] = args[index + 1], args[index]
            yield Change(node, replaced(node, args=args))
    if isinstance(node, ast.Tuple):
        for index in range(len(node.elts) - 1):
            elts = list(node.elts)
            elts[index], elts[index + 1] = elts[index + 1], elts[index]
            yield Change(node, replaced(node, elts=elts))


def name_swapped(node, parent):
    """A method, function or attribute exchanged for its plausible twin: ``mean`` <-> ``sum``,
    ``amax`` <-> ``amin``, ``train`` <-> ``eval``, ``enable_grad`` <-> ``no_grad``, ..."""
    if isinstance(node, ast.Attribute) and node.attr in SWAPS:
        yield Change(node, replaced(node, attr=SWAPS[node.attr]))
    if isinstance(node, ast.Name) and node.id in SWAPS and isinstance(parent, ast.Call) and parent.func is node:
        yield Change(node, replaced(node, id=SWAPS[node.id]))


def call_removed(node, parent):
    """A call that keeps the shape removed: ``x.detach()`` -> ``x``, ``x.clamp(0, 1)`` -> ``x``,
    ``grad.sign()`` -> ``grad``, ``x.float()`` -> ``x``, ``torch.clamp(x, ...)`` -> ``x``, ..."""
    if not isinstance(node, ast.Call):
        return
    name, func = called_name(node), node.func
    of_module = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in MODULES
    if isinstance(parent, ast.Expr):  # a call made for its effect: removing it is deleting it
        return
    if isinstance(func, ast.Attribute) and not of_module and name in IDENTITY_METHODS:
        yield Change(node, func.value, f".{name}() removed")
    if (isinstance(func, ast.Name) or of_module) and name in IDENTITY_FUNCTIONS and node.args:
        yield Change(node, node.args[0], f"{name}() removed")


def with_item_removed(node, parent):
    """One context manager of a ``with`` removed: ``eval_mode(model)``, ``torch.no_grad()``,
    ``torch.enable_grad()``; the body runs without it."""
    if isinstance(node, ast.With):
        for index, item in enumerate(node.items):
            items = node.items[:index] + node.items[index + 1 :]
            new = replaced(node, items=items) if items else node.body
            yield Change(node, new, f"`with {short(ast.unparse(item.context_expr), 40)}` removed")


def statement_deleted(node, parent):
    """A statement replaced by ``pass`` (an assignment, a call, a return, a whole ``if``/``for``/
    ``with`` block, a nested ``def``)."""
    if isinstance(node, ast.stmt) and not isinstance(node, ast.Pass) and not is_docstring(node):
        yield Change(node, None)


def slice_changed(node, parent):
    """A slice bound moved: ``[:k]`` -> ``[:k + 1]``, ``[:k - 1]``, ``[1:k]``; ``[a:]`` -> ``[a + 1:]``."""
    if isinstance(node, ast.Slice) and node.step is None:
        for bound in ("lower", "upper"):
            value = getattr(node, bound)
            if value is None:
                if bound == "lower":
                    yield Change(node, replaced(node, lower=ast.Constant(1)))
                continue
            for op in (ast.Add, ast.Sub):
                yield Change(node, replaced(node, **{bound: ast.BinOp(value, op(), ast.Constant(1))}))


def index_dropped(node, parent):
    """One element of a tuple index left out: ``rep[:, neuron]`` -> ``rep[neuron]``."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Tuple) and len(node.slice.elts) >= 2:
        for index in range(len(node.slice.elts)):
            elts = node.slice.elts[:index] + node.slice.elts[index + 1 :]
            new_slice = elts[0] if len(elts) == 1 else ast.Tuple(elts, ast.Load())
            yield Change(node, replaced(node, slice=new_slice))


OPERATORS: dict[str, Callable] = {
    "arithmetic": arithmetic,
    "operands": operands_swapped,
    "comparison": comparison,
    "boolean": boolean,
    "condition": condition,
    "sign": sign,
    "constant": constant,
    "keyword-dropped": keyword_dropped,
    "keyword-added": keyword_added,
    "dim-dropped": dim_dropped,
    "swap": arguments_swapped,
    "name": name_swapped,
    "call-removed": call_removed,
    "with-removed": with_item_removed,
    "deleted": statement_deleted,
    "slice": slice_changed,
    "index": index_dropped,
}


def is_docstring(node) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


# ---------------------------------------------------------------------------------------------
# Applying a change to the text of a cell
def solution_lines(source: str, where: str) -> set[int]:
    """The (1-based) line numbers strictly inside the cell's solution regions."""
    lines, inside, current = set(), False, None
    for number_, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{where}: nested {BEGIN}")
            inside, current = True, number_
        elif stripped == END:
            if not inside:
                raise ValueError(f"{where}: {END} without {BEGIN}")
            inside = False
        elif inside:
            lines.add(number_)
    if inside or current is None:
        raise ValueError(f"{where}: the solution markers do not pair up")
    return lines


def offsets(source: str) -> list[int]:
    """Byte offset of the start of each line (ast's columns count UTF-8 bytes)."""
    starts, total = [0], 0
    for line in source.encode().splitlines(keepends=True):
        total += len(line)
        starts.append(total)
    return starts


# Expressions that bind tighter than any operator: written without parentheses.
ATOMS = (ast.Name, ast.Constant, ast.Attribute, ast.Call, ast.Subscript, ast.List, ast.Tuple, ast.Dict)


def replacement_text(change: Change, indent: int) -> str:
    node, new = change.node, change.new
    if isinstance(node, ast.stmt):
        statements = [ast.Pass()] if new is None else new if isinstance(new, list) else [new]
        text = "\n".join(ast.unparse(statement) for statement in statements)
        return text.replace("\n", "\n" + " " * indent)
    text = ast.unparse(new)
    if isinstance(node, ast.Slice) or isinstance(getattr(node, "ctx", None), ast.Store) or isinstance(new, ATOMS):
        return text
    return f"({text})"


def apply_change(source: str, starts: list[int], change: Change) -> tuple[str, str, str]:
    """(mutated source, text replaced, its replacement, the mutated text around it on its line)."""
    node, data = change.node, source.encode()
    begin = starts[node.lineno - 1] + node.col_offset
    end = starts[node.end_lineno - 1] + node.end_col_offset
    new_text = replacement_text(change, node.col_offset).encode()
    line_start, line_end = starts[node.lineno - 1], starts[node.end_lineno]
    before, after = data[line_start:begin].decode().lstrip(), data[end:line_end].decode().rstrip()
    context = before if len(before) <= 30 else "\u2026" + before[-29:]
    context += new_text.decode().splitlines()[0] + (after if len(after) <= 30 else after[:29] + "\u2026")
    mutated = (data[:begin] + new_text + data[end:]).decode()
    return mutated, data[begin:end].decode(), new_text.decode(), context


def describe(operator: str, change: Change, old: str, context: str) -> str:
    """One line: what changed, the text before and after (shortened), and for a small edit the
    line as it reads after it."""
    if change.new is None:
        return f"statement deleted: `{short(old.splitlines()[0])}`"
    label = change.what or operator
    if isinstance(change.node, ast.With):
        return f"{label}: `{short(old.splitlines()[0])}`"
    text = f"{label}: `{short(old)}` \u2192 `{short(ast.unparse(change.new))}`"
    return text + (f" in `{short(context, 70)}`" if len(old) < 24 else "")


def walk(tree: ast.AST, lines: set[int]) -> Iterator[tuple[ast.AST, ast.AST | None]]:
    """(node, parent) for every node on the solution's lines, in source order; f-strings and
    docstrings are not entered (messages, not behaviour)."""

    def visit(node, parent):
        if isinstance(node, ast.JoinedStr) or is_docstring(node):
            return
        if getattr(node, "lineno", None) in lines and getattr(node, "end_lineno", None) in lines:
            yield node, parent
        for child in ast.iter_child_nodes(node):
            yield from visit(child, node)

    yield from visit(tree, None)


def cell_mutants(notebook: str, cell_id: str, source: str) -> list[Mutant]:
    """The mutants of one answer cell, in a fixed order (source order, then operator order)."""
    where = f"{notebook}/{cell_id}"
    tree = ast.parse(source)
    lines, starts = solution_lines(source, where), offsets(source)
    seen = {ast.dump(tree)}
    counts: Counter[str] = Counter()
    mutants = []
    for node, parent in walk(tree, lines):
        for name, operator in OPERATORS.items():
            for change in operator(node, parent):
                if not hasattr(change.node, "lineno") or change.node.lineno not in lines:
                    continue
                mutated, old, new, context = apply_change(source, starts, change)
                try:
                    dump = ast.dump(ast.parse(mutated))
                except SyntaxError:  # an edit that cannot be written (should not happen)
                    continue
                if dump in seen:
                    continue
                seen.add(dump)
                key = f"{name}|{old}|{new}"
                counts[key] += 1
                digest = hashlib.sha1(f"{key}|{counts[key]}".encode()).hexdigest()[:6]
                mutants.append(
                    Mutant(
                        id=f"{notebook[:2]}.{cell_id}.{name}.{digest}",
                        notebook=notebook,
                        cell=cell_id,
                        operator=name,
                        description=describe(name, change, old, context),
                        source=mutated,
                    )
                )
    return mutants


def answer_cells(notebook: str) -> list[tuple[str, str]]:
    """(grade_id, source) of each answer cell (a code cell with a solution) of a solution notebook."""
    nb = nbformat.read(ROOT / "solutions" / notebook / f"{notebook}.ipynb", as_version=4)
    cells = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader") or {}
        if cell.cell_type == "code" and meta.get("solution"):
            cells.append((meta["grade_id"], cell.source))
    return cells


def notebook_mutants(notebook: str) -> list[Mutant]:
    return [mutant for cell_id, source in answer_cells(notebook) for mutant in cell_mutants(notebook, cell_id, source)]


def notebooks() -> list[str]:
    return sorted(path.stem for path in ROOT.glob("solutions/*/*.ipynb"))
