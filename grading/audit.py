"""Flag student code that reaches into the test machinery, for the instructor to review.

Test cells run in the same Python process as the student's code, so a determined
student can always interfere with them; :mod:`grading.checks` defeats the generic
tricks. This static scan of the student's cells points at the deliberate ones:
assigning attributes of imported modules or of the names the locked cells define
(``np.allclose = ...``, ``check.close = ...``), rebinding those names, ``setattr``,
and the modules that reach into the interpreter or the kernel (``builtins``,
``sys.modules``, ``gc``, ``ctypes``, ``inspect``, ``get_ipython``). A flag does not
change the score; it puts the submission on the review list.
"""

from __future__ import annotations

import ast

import nbformat

# Names and attributes that reach into the interpreter, the kernel or other code's internals.
INTROSPECTION_NAMES = {
    "builtins",
    "__builtins__",
    "gc",
    "ctypes",
    "inspect",
    "get_ipython",
    "setattr",
    "delattr",
    "__import__",
    "importlib",
    "exec",
}
INTROSPECTION_ATTRIBUTES = {
    "modules",
    "_getframe",
    "__code__",
    "__globals__",
    "__closure__",
    "__builtins__",
    "__setattr__",
    "__torch_function__",
    "__array_function__",
    "__array_ufunc__",
}


def _parse(source: str) -> ast.Module | None:
    """The cell's syntax tree, IPython magics and shell escapes blanked out; None if it does not parse."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def defined_names(tree: ast.Module) -> set[str]:
    """Top-level names a cell binds (assignments, imports, functions, classes)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def imported_names(tree: ast.Module) -> set[str]:
    return {
        (a.asname or a.name).split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }


def scan_cell(tree: ast.Module, protected: set[str]) -> list[str]:
    """What in one cell's code looks like tampering; ``protected``: names the setup cells define."""
    modules = imported_names(tree) | protected
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                root = _root_name(target)
                if isinstance(target, ast.Attribute) and root in modules:
                    found.append(f"line {line}: assigns {ast.unparse(target)}")
                elif isinstance(target, ast.Name) and target.id in protected:
                    found.append(f"line {line}: rebinds '{target.id}', defined by a locked cell")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in protected:
            found.append(f"line {line}: redefines '{node.name}', defined by a locked cell")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            for alias in node.names:
                name = (module or alias.name).split(".")[0]
                if name in INTROSPECTION_NAMES or name == "grading":
                    found.append(f"line {line}: imports {module or alias.name}")
        elif isinstance(node, ast.Name) and node.id in INTROSPECTION_NAMES:
            found.append(f"line {line}: uses {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in INTROSPECTION_ATTRIBUTES:
            found.append(f"line {line}: uses .{node.attr}")
    return list(dict.fromkeys(found))


def audit(submission: nbformat.NotebookNode, release: nbformat.NotebookNode) -> list[str]:
    """Review flags for the student-written code cells of ``submission`` (locked cells skipped)."""
    locked, protected = {}, set()
    for cell in release.cells:
        meta = cell.metadata.get("nbgrader") or {}
        if cell.cell_type == "code" and meta.get("locked") and not meta.get("solution"):
            locked[meta["grade_id"]] = cell.source
            tree = _parse(cell.source)
            if tree is not None and not meta.get("grade"):  # setup cells; test cells' variables are theirs
                protected |= defined_names(tree)
    flags = []
    for index, cell in enumerate(submission.cells):
        grade_id = (cell.metadata.get("nbgrader") or {}).get("grade_id")
        if cell.cell_type != "code" or (grade_id in locked and cell.source == locked[grade_id]):
            continue
        tree = _parse(cell.source)
        if tree is not None:
            flags += [f"cell {index}{f' ({grade_id!r})' if grade_id else ''}, {f}" for f in scan_cell(tree, protected)]
    return flags
