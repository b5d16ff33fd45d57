"""Flag student code that reaches into the test machinery, for the instructor to review.

Test cells run in the same Python process as the student's code, so a determined
student can always interfere with them; :mod:`grading.checks` defeats the generic
tricks and the sandbox keeps the rest of the machine out of reach. This review points at
the deliberate ones, in two passes:

- **the code** (:func:`audit`): an AST pass over every student-written code cell, IPython
  magics and shell escapes included (as IPython itself rewrites them): any binding of the
  names the locked cells define or of an imported module, by any form of assignment (``=``,
  augmented, annotated, ``for`` and ``with`` targets, ``except ... as``, the walrus,
  imports, ``def``/``class``, ``del``, ``global``, ``match`` captures); assigning attributes of
  those names or of aliases of them (``T = torch.Tensor; T.detach = ...``); and what reaches
  into the interpreter or the kernel: ``builtins``, ``sys.modules`` and the import system,
  frames and code objects, the garbage collector, ``ctypes``, ``inspect``, ``globals()``,
  ``exec``, IPython's shell and its hooks (``get_ipython``, traceback display, input and
  AST transformers), magics other than ``%matplotlib``/``%time``/``%timeit``, shell
  escapes, and files named like Python modules or start-up files;
- **the run** (:class:`ReviewRun`): files the kernel wrote in its working directory (a
  module next to the notebook, say).

A flag does not change the score; it puts the submission on the review list
(``flagged``). :class:`AuditSubmission` and :class:`ReviewRun` are steps of
``nbgrader autograde`` (see :mod:`grading.config`), so stock nbgrader runs them too; each
flag is logged with :data:`REVIEW_PREFIX` (``python -m grading`` collects them into its
report) and kept in the autograded notebook's metadata (``metadata.grading.review``), which
the export reads.
"""

from __future__ import annotations

import ast
import os

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor

from .paths import find_coursedir, release_notebook_path

# Prefix of the review flags the audit logs (python -m grading collects them into its reports).
REVIEW_PREFIX = "grading: review: "
# Where the verdicts are kept in an autograded notebook: metadata[VERDICT_KEY][kind] -> list.
VERDICT_KEY = "grading"

# Modules whose import reaches into the interpreter, the kernel or the grader.
INTERNAL_MODULES = {
    "builtins",
    "gc",
    "ctypes",
    "inspect",
    "importlib",
    "IPython",
    "ipykernel",
    "traitlets",
    "zmq",
    "jupyter_client",
    "nbformat",
    "nbclient",
    "nbgrader",
    "grading",
    "__main__",
    "code",
    "codeop",
    "types",
    "sysconfig",
    "site",
    "runpy",
    "pdb",
    "bdb",
    "tracemalloc",
    "faulthandler",
    "linecache",
    "threading",
    "_thread",
    "signal",
    "atexit",
    "weakref",
}
# Names whose use reaches into the interpreter or the kernel.
INTERNAL_NAMES = {
    "builtins",
    "__builtins__",
    "get_ipython",
    "globals",
    "locals",
    "vars",
    "exec",
    "eval",
    "compile",
    "__import__",
    "setattr",
    "delattr",
    "breakpoint",
    "__loader__",
    "__spec__",
}
# Attributes that reach into objects' internals, frames, code, or IPython's shell and hooks.
INTERNAL_ATTRIBUTES = {
    "__globals__",
    "__code__",
    "__closure__",
    "__builtins__",
    "__dict__",
    "__class__",
    "__subclasses__",
    "__bases__",
    "__mro__",
    "__setattr__",
    "__delattr__",
    "__getattribute__",
    "__torch_function__",
    "__array_function__",
    "__array_ufunc__",
    "__defaults__",
    "__kwdefaults__",
    "__wrapped__",
    "__self__",
    "f_globals",
    "f_locals",
    "f_back",
    "f_builtins",
    "f_code",
    "f_trace",
    "tb_frame",
    "tb_next",
    "gi_frame",
    "cr_frame",
    "ag_frame",
    "co_code",
    "co_consts",
    "user_ns",
    "user_global_ns",
    "showtraceback",
    "InteractiveTB",
    "SyntaxTB",
    "set_custom_exc",
    "input_transformers_cleanup",
    "input_transformers_post",
    "ast_transformers",
    "display_pub",
    "displayhook",
    "run_cell",
    "run_cell_async",
    "_getframe",
}
# Attributes of ``sys`` that change how code is found, run, traced or reported.
SYS_ATTRIBUTES = {
    "modules",
    "meta_path",
    "path_hooks",
    "path_importer_cache",
    "path",
    "settrace",
    "setprofile",
    "excepthook",
    "displayhook",
    "addaudithook",
    "_getframe",
    "call_tracing",
    "monitoring",
}
# IPython magics that are part of ordinary work; every other magic is flagged.
ALLOWED_MAGICS = {"matplotlib", "time", "timeit"}
# File names that Python, IPython or matplotlib would pick up if written next to the notebook.
STARTUP_SUFFIXES = (".py", ".pyc", ".pth", ".so", ".pyd")
STARTUP_NAMES = (
    "sitecustomize",
    "usercustomize",
    "matplotlibrc",
    "ipython_config",
    "ipython_kernel_config",
    "jupyter_config",
)


def _python_source(source: str) -> str:
    """``source`` as IPython runs it: magics and shell escapes become ``get_ipython()`` calls."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # an IPython that cannot transform it runs it as plain Python, if at all
        return source


def parse_cell(source: str) -> ast.Module | None:
    """The syntax tree of a code cell as IPython runs it; None if it does not parse."""
    try:
        return ast.parse(_python_source(source))
    except (SyntaxError, ValueError):
        return None


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_reference(node: ast.AST) -> bool:
    """A name or a chain of attribute accesses and subscripts (no calls): ``torch.Tensor``."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return isinstance(node, ast.Name)


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
        if a.name != "*"
    }


def _bound_names(node: ast.AST) -> list[tuple[str, str]]:
    """(name, how) for each name ``node`` binds in its own scope."""
    targets: list[ast.AST] = []
    how = "rebinds"
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
        targets = [node.target]
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        targets, how = [node.target], "rebinds (as a loop variable)"
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        targets, how = [item.optional_vars for item in node.items if item.optional_vars], "rebinds (with ... as)"
    elif isinstance(node, ast.Delete):
        targets, how = node.targets, "deletes"
    elif isinstance(node, ast.ExceptHandler) and node.name:
        return [(node.name, "rebinds (except ... as)")]
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        return [((a.asname or a.name).split(".")[0], "rebinds (by an import)") for a in node.names if a.name != "*"]
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [(node.name, "redefines")]
    elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
        return [(node.name, "rebinds (a match capture)")]
    elif isinstance(node, ast.MatchMapping) and node.rest:
        return [(node.rest, "rebinds (a match capture)")]
    names = []
    for target in targets:
        for sub in ast.walk(target):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
                names.append((sub.id, how))
    return names


def imported_modules(tree: ast.Module) -> dict[str, str]:
    """Name -> what it imports, for the top-level imports of a cell (``import torch.nn as nn``,
    ``from torch import nn``: both "torch.nn")."""
    modules = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                modules[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and not node.level:
            for alias in node.names:
                if alias.name != "*":
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return modules


class _Scanner(ast.NodeVisitor):
    """One cell's review flags; ``protected``: names of the locked cells and imported modules,
    ``aliases``: names bound to references rooted in them (updated as the cells are read),
    ``modules``: the modules the locked cells import under a name (importing the same module
    under the same name again changes nothing)."""

    def __init__(self, protected: set[str], imported: set[str], aliases: set[str], modules: dict[str, str]):
        self.protected, self.aliases, self.modules = protected, aliases, modules
        self.reached = protected | imported  # whose attributes the tests may use
        self.found: list[str] = []
        self.function_depth = 0
        self.global_names: list[set[str]] = []

    def flag(self, node: ast.AST, what: str) -> None:
        self.found.append(f"line {getattr(node, 'lineno', '?')}: {what}")

    def _module_scope(self, name: str) -> bool:
        """Whether binding ``name`` here changes a module-level (notebook) name."""
        return self.function_depth == 0 or any(name in names for names in self.global_names)

    def generic_visit(self, node: ast.AST) -> None:
        is_import = isinstance(node, (ast.Import, ast.ImportFrom))
        same_imports = imported_modules(ast.Module([node], [])) if is_import else {}
        for name, how in _bound_names(node):
            harmless = name in self.modules and same_imports.get(name) == self.modules[name]
            if name in self.protected and self._module_scope(name) and not harmless:
                self.flag(node, f"{how} '{name}', which the tests rely on")
        if isinstance(node, ast.Subscript):
            self._check_store(node)
        if isinstance(node, ast.Assign) and _is_reference(node.value):
            if _root_name(node.value) in self.reached | self.aliases:
                self.aliases |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        super().generic_visit(node)

    def _check_store(self, node: ast.Attribute | ast.Subscript) -> None:
        """Flag assigning or deleting an attribute or item of a protected name or of an alias."""
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}  # type(check).close = ... too
        if isinstance(node.ctx, (ast.Store, ast.Del)) and names & (self.reached | self.aliases):
            self.flag(node, f"{'deletes' if isinstance(node.ctx, ast.Del) else 'assigns'} {ast.unparse(node)}")

    def _visit_function(self, node) -> None:
        for name, how in _bound_names(node):
            if name in self.protected and self._module_scope(name):
                self.flag(node, f"{how} '{name}', which the tests rely on")
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.function_depth += 1
        self.global_names.append(
            {n for s in ast.walk(node) if isinstance(s, (ast.Global, ast.Nonlocal)) for n in s.names}
        )
        for statement in node.body:
            self.visit(statement)
        self.global_names.pop()
        self.function_depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = _visit_function

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.function_depth += 1
        self.global_names.append(set())
        self.visit(node.body)
        self.global_names.pop()
        self.function_depth -= 1

    def visit_Import(self, node) -> None:
        for alias in node.names:
            module = alias.name.split(".")[0]
            if module in INTERNAL_MODULES:
                self.flag(node, f"imports {alias.name}")
        self.generic_visit(node)

    def visit_ImportFrom(self, node) -> None:
        module = (node.module or "").split(".")[0]
        if module in INTERNAL_MODULES or node.level:
            self.flag(node, f"imports from {'.' * node.level}{node.module or ''}")
        elif module == "sys" and any(a.name in SYS_ATTRIBUTES for a in node.names):
            self.flag(node, f"imports {', '.join(a.name for a in node.names)} from sys")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in INTERNAL_NAMES:
            self.flag(node, f"uses {node.id}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._check_store(node)
        if node.attr in INTERNAL_ATTRIBUTES:
            self.flag(node, f"uses .{node.attr}")
        elif node.attr in SYS_ATTRIBUTES and isinstance(node.value, ast.Name) and node.value.id == "sys":
            self.flag(node, f"uses sys.{node.attr}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        # magics and shell escapes, as IPython rewrites them
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Call)
            and isinstance(func.value.func, ast.Name)
            and func.value.func.id == "get_ipython"
        ):
            name = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
            if func.attr in {"run_line_magic", "run_cell_magic"} and name in ALLOWED_MAGICS:
                # the code the magic runs (%time CODE, %%timeit's cell) is student code too
                for arg in node.args[1:]:
                    body = (
                        parse_cell(arg.value) if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None
                    )
                    self.visit(body if body is not None else arg)
                return
            if func.attr in {"system", "getoutput"}:
                self.flag(node, "runs a shell command (!...)")
            elif func.attr in {"run_line_magic", "run_cell_magic"}:
                self.flag(node, f"uses the magic %{name}")
            else:
                self.flag(node, "uses get_ipython")
            return
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                base = os.path.basename(arg.value)
                if base.endswith(STARTUP_SUFFIXES) or base.startswith(STARTUP_NAMES):
                    self.flag(node, f"names the file {arg.value!r} (a module or start-up file)")
        self.generic_visit(node)


def audit_cells(cells: list[tuple[str, str]], protected: set[str], modules: dict[str, str] | None = None) -> list[str]:
    """Review flags for the student code ``cells`` ((where, source), in order), given the names
    the locked cells define (``protected``; in ``modules``, the modules they import by name);
    the attributes of modules imported anywhere are protected too."""
    trees = [(where, parse_cell(source)) for where, source in cells]
    imported = {name for _, tree in trees if tree is not None for name in imported_names(tree)}
    aliases: set[str] = set()
    flags = []
    for where, tree in trees:
        if tree is None:
            continue
        scanner = _Scanner(protected, imported, aliases, modules or {})
        scanner.visit(tree)
        flags += [f"{where}, {f}" for f in dict.fromkeys(scanner.found)]
    return flags


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def audit(submission: nbformat.NotebookNode, release: nbformat.NotebookNode) -> list[str]:
    """Review flags for the student-written code cells of ``submission`` (its locked cells, as
    the release has them, are skipped)."""
    locked, protected, modules = {}, set(), {}
    for cell in release.cells:
        meta = _nbgrader(cell)
        if cell.cell_type == "code" and meta.get("locked") and not meta.get("solution"):
            locked[meta.get("grade_id")] = cell.source
            tree = parse_cell(cell.source)
            if tree is not None and not meta.get("grade"):  # setup cells; test cells' variables are theirs
                protected |= defined_names(tree)
                modules |= imported_modules(tree)
    cells = []
    for index, cell in enumerate(submission.cells):
        grade_id = _nbgrader(cell).get("grade_id")
        if cell.cell_type != "code" or (grade_id in locked and cell.source == locked[grade_id]):
            continue
        cells.append((f"cell {index}" + (f" ({grade_id!r})" if grade_id else ""), cell.source))
    return audit_cells(cells, protected, modules)


def is_startup_file(path: str) -> bool:
    """Whether Python, IPython or matplotlib could pick up the file at ``path`` (a module, a
    start-up or configuration file) from the notebook's directory."""
    name = os.path.basename(path)
    return (
        name.endswith(STARTUP_SUFFIXES)
        or name.startswith(STARTUP_NAMES)
        or "/" in path
        and path.split("/")[0].endswith((".egg-info", ".dist-info"))
    )


def startup_files(folder: str) -> list[str]:
    """Module and start-up files in the submission ``folder`` (relative paths, sorted)."""
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.relpath(os.path.join(root, name), folder) for name in files]
    return sorted(path for path in found if is_startup_file(path))


def written_file_flags(written: list[str], count: int) -> tuple[list[str], list[str]]:
    """(review flags, notes) about the files a kernel wrote in its working directory: modules
    and start-up files are flagged, other files noted."""
    suspicious = [p for p in written if is_startup_file(p)]
    review = [f"the kernel wrote {p} next to the notebook (a module or start-up file)" for p in suspicious]
    others = [p for p in written if p not in suspicious]
    notes = []
    if others or count > len(written):
        listed = ", ".join(others[:5]) + (", ..." if count > 5 else "")
        notes.append(f"the kernel wrote {count} file(s) in its working directory ({listed})")
    return review, notes


def add_verdict(nb: nbformat.NotebookNode, kind: str, items: list[str]) -> None:
    """Append ``items`` to the notebook's ``metadata.grading[kind]`` (kept in the autograded file)."""
    if items:
        verdict = nb.metadata.setdefault(VERDICT_KEY, {})
        verdict[kind] = list(dict.fromkeys([*verdict.get(kind, []), *items]))


class AuditSubmission(NbGraderPreprocessor):
    """Sanitizing step of autograde, after the structure is restored: :func:`audit` against the
    release notebook; each flag is logged (``REVIEW_PREFIX``) and kept in the notebook."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        coursedir = find_coursedir(self)
        path = release_notebook_path(coursedir, info["assignment"], info["notebook"])
        nb.metadata.pop(VERDICT_KEY, None)  # a submission's own verdict counts for nothing
        flags = audit(nb, nbformat.read(path, as_version=4)) if os.path.exists(path) else []
        folder = coursedir.format_path(coursedir.submitted_directory, info["student"], info["assignment"])
        flags += [
            f"the submission holds {name} next to the notebook (a module or start-up file)"
            for name in startup_files(folder)
        ]
        for flag in flags:
            self.log.warning("%s%s", REVIEW_PREFIX, flag)
        add_verdict(nb, "review", flags)
        return nb, resources


class ReviewRun(NbGraderPreprocessor):
    """Autograde step after execution: what the run shows (files the kernel wrote next to the
    notebook, from the sandbox's exit record in ``resources["grading"]``)."""

    def preprocess(self, nb, resources):
        record = resources.get("grading", {}).get("exit_record") or {}
        review, notes = written_file_flags(record.get("written", []), record.get("written_count", 0))
        for flag in review:
            self.log.warning("%s%s", REVIEW_PREFIX, flag)
        add_verdict(nb, "review", review)
        add_verdict(nb, "notes", notes)
        return nb, resources
