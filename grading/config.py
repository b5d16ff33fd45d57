"""The course's nbgrader configuration, applied by the repository's ``nbgrader_config.py``.

:func:`configure` makes every nbgrader command run in the course directory (the
command line, the formgrader, :mod:`grading`'s commands) use this course's layout and
grading rules: solutions are nbgrader's source directory and exercises its release
directory; autograde restores each submission's structure first, runs it in the
sandbox with time and memory limits, forgives stderr noise, requires the checks'
witnesses and bounds outputs; feedback hides hidden tests; export flags submissions
that could not be graded instead of showing 0.
"""

from __future__ import annotations

import os

from nbgrader.converters import Autograde, GenerateFeedback
from nbgrader.preprocessors import Execute, LimitOutput

from .audit import AuditSubmission, ReviewRun
from .feedback import HideHiddenTests
from .outputs import OutputBudget, RequireCheckWitnesses, SanitizeOutputs, TruncateOutputs
from .sandbox import SandboxedExecute
from .sanitize import RestoreStructure, guard_submission_copies
from .witnesses import VerifyWitnesses

COURSE_ID = "robustness-practicum"
# stderr that is noise, not failure: Python warnings and progress bars (tqdm).
STDERR_NOISE = r"\w*Warning: |\d+%\||\d+(?:\.\d+)?(?:it/s|s/it)\]"


def _default(cls, name: str) -> list:
    return list(cls.class_traits()[name].default())


def autograde_steps() -> list:
    """nbgrader's autograde preprocessors, sandboxed, with the witness check and output bounds."""
    steps = [SandboxedExecute if step is Execute else step for step in _default(Autograde, "autograde_preprocessors")]
    steps.insert(steps.index(SandboxedExecute) + 1, RequireCheckWitnesses)
    steps.insert(steps.index(SandboxedExecute) + 1, VerifyWitnesses)
    steps.insert(steps.index(RequireCheckWitnesses) + 1, ReviewRun)
    steps.insert(steps.index(LimitOutput) + 1, TruncateOutputs)
    return [*steps, SanitizeOutputs, OutputBudget]  # after the grades are saved: they never change them


def configure(
    c,
    root: str,
    *,
    cell_timeout: int = 120,
    notebook_time_limit: int = 900,
    memory_limit: str = "8G",
    cpu_time_limit: int = 1800,
    max_processes: int = 256,
    exchange_root: str | None = None,
) -> None:
    """Fill the nbgrader config ``c`` for the course whose directory is ``root``.

    ``cell_timeout`` (s) bounds each cell, ``notebook_time_limit`` (s) a whole notebook,
    ``memory_limit`` the address space of each kernel process, ``cpu_time_limit`` (s) its
    CPU time, ``max_processes`` its tasks. The exchange (used only by nbgrader's
    release/collect through JupyterHub) is ``exchange_root``, else ``$NBGRADER_EXCHANGE``,
    else ``ROOT/nbgrader_exchange``; it is created if missing.
    """
    root = os.path.abspath(root)
    c.CourseDirectory.root = root
    c.CourseDirectory.course_id = COURSE_ID
    c.CourseDirectory.source_directory = "solutions"
    c.CourseDirectory.release_directory = "exercises"
    c.Exchange.root = exchange_root or os.environ.get("NBGRADER_EXCHANGE") or os.path.join(root, "nbgrader_exchange")
    try:
        os.makedirs(c.Exchange.root, exist_ok=True)
    except OSError:
        pass  # a read-only checkout: only the exchange commands need it

    guard_submission_copies()
    c.Execute.timeout = cell_timeout
    c.Execute.iopub_timeout = 10
    c.IgnorePattern.enabled = True
    c.IgnorePattern.pattern = STDERR_NOISE
    c.OverwriteCells.add_missing_cells = True
    c.Autograde.sanitize_preprocessors = [
        RestoreStructure,
        AuditSubmission,
        *_default(Autograde, "sanitize_preprocessors"),
    ]
    c.Autograde.autograde_preprocessors = autograde_steps()
    c.SandboxedExecute.notebook_time_limit = notebook_time_limit
    c.SandboxedExecute.memory_limit = memory_limit
    c.SandboxedExecute.cpu_time_limit = cpu_time_limit
    c.SandboxedExecute.max_processes = max_processes

    # Sanitized and bounded again: notebooks graded before these steps existed.
    c.GenerateFeedback.preprocessors = [
        SanitizeOutputs,
        OutputBudget,
        HideHiddenTests,
        *_default(GenerateFeedback, "preprocessors"),
    ]
    c.Autograde.post_convert_hook = "grading.report.report_stock_run"
    c.ExportApp.plugin_class = "grading.export.StatusCsvExportPlugin"
    c.ZipCollectApp.extractor_plugin = "grading.collect.SafeExtractor"
    c.ZipCollectApp.collector_plugin = "grading.collect.SubmissionCollector"
    c.ExchangeFactory.collect = "grading.exchange.SafeExchangeCollect"
