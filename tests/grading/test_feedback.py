"""Feedback and the formgrader's views are safe to open, bounded, and tell students what failed.

The catalog's display cases (``FEEDBACK_CASES``: HTML, MIME types, markdown and raw cells
that try to run in a browser, 57 MB of images, a submission that prints the hidden tests)
are graded twice in one course, by ``python -m grading autograde`` and by stock ``nbgrader
autograde``, with a perfect and a wrong submission beside them; then feedback is generated
(``python -m grading feedback`` and stock ``nbgrader generate_feedback``). Every page, and
every autograded notebook rendered as the formgrader renders it, is parsed as a browser
parses it (html5lib): nothing in it can run or load beyond the template's own scripts, while
the submissions' text and images are still there. Without the kernels: the sanitizer's
allow-lists one payload at a time, the output budget, the hidden-test checks, the verdicts
of test cells (visible label and message, hidden ones neutral unless the instructor allows
labels), feedback built on the six real notebooks' tests, and ``validate``'s report.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import html
import logging
import re
import shutil

import html5lib
import nbformat
import pytest
from catalog import (
    ASSIGNMENT,
    CASES,
    FEEDBACK_CASES,
    HTML_ATTACKS,
    MARKDOWN_ATTACKS,
    PNG,
    SOURCE,
    WRONG,
    Context,
    write_catalog,
)
from course_tools import ROOT, grading, nbgrader, released_course, requires_sandbox
from nbconvert.exporters import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbformat.v4.nbbase import random_cell_id
from nbgrader.server_extensions.formgrader import handlers
from traitlets.config import Config

from grading.checks import WITNESS_MIME
from grading.feedback import (
    HIDDEN_FAILED,
    LEAK_NOTE,
    HiddenText,
    HideHiddenTests,
    check_labels,
    failing_line,
    hidden_line_numbers,
    leaked_lines,
    strip_hidden,
)
from grading.outputs import OutputBudget, SanitizeOutputs
from grading.safe_html import safe_markdown

# --- what a browser could run or load ----------------------------------------------------------
ACTIVE_TAGS = {
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "input", "button",
    "textarea", "select", "base", "meta", "link", "style", "svg", "math", "noscript", "template",
}  # fmt: skip
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "xlink:href", "poster", "background", "srcset"}
SAFE_URL = re.compile(r"(https?://|mailto:|#|data:image/(png|jpeg|gif);base64,)", re.I)


def active_parts(page: str) -> collections.Counter:
    """What in ``page`` could run, load or cover the page, parsed as a browser parses it:
    active elements, event handlers, URLs of other schemes, inline CSS that loads or positions."""
    found = collections.Counter()
    for element in html5lib.parse(page, namespaceHTMLElements=False).iter():
        tag = element.tag if isinstance(element.tag, str) else "?"
        if tag in ACTIVE_TAGS:
            found[(tag, tuple(sorted(element.attrib.items())), (element.text or "").strip()[:500])] += 1
        for name, value in element.attrib.items():
            name = name.lower()
            if (
                name.startswith("on")
                or (name in URL_ATTRIBUTES and not SAFE_URL.match(value))
                or (name == "style" and re.search(r"url|expression|position|@import", value, re.I))
            ):
                found[(tag, name, value[:200])] += 1
    return found


def formgrader_view(notebook) -> str:
    """``notebook`` (a path) rendered as the formgrader renders a submission for grading."""
    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {
        "assignment_id": ASSIGNMENT,
        "notebook_id": ASSIGNMENT,
        "submission_id": "id",
        "index": 0,
        "total": 1,
        "base_url": "",
        "student": "student",
        "last_name": None,
        "first_name": None,
        "notebook_path": "/notebook",
    }
    return HTMLExporter(config=config).from_filename(str(notebook), resources=resources)[0]


def page_text(page: str) -> str:
    return " ".join("".join(html5lib.parse(page, namespaceHTMLElements=False).itertext()).split())


# --- the display cases, graded both ways --------------------------------------------------------
BASELINES = [case for case in CASES if case.student in ("perfect", "wrong")]
OURS = [dataclasses.replace(case, student=f"py-{case.student}") for case in BASELINES + FEEDBACK_CASES]
STOCK = [dataclasses.replace(case, student=f"stock-{case.student}") for case in FEEDBACK_CASES]
# Labels of hidden checks found nowhere visible ("the zero vector stays zero" is also in a docstring).
HIDDEN_LABELS = ["signs are kept", "pixels stay in [0, 1]", "[0, 1] after the ball"]


@dataclasses.dataclass
class FeedbackCourse:
    course: object
    autograde: object
    stock_autograde: object
    feedback: object
    stock_feedback: object

    def path(self, step: str, student: str, suffix: str):
        return self.course / step / student / ASSIGNMENT / f"{ASSIGNMENT}.{suffix}"

    def page(self, student: str) -> str:
        return self.path("feedback", student, "html").read_text()

    def report(self, student: str) -> dict:
        import json

        return json.loads((self.course / "grading_reports" / ASSIGNMENT / f"{student}.json").read_text())


@pytest.fixture(scope="module")
def graded():
    requires_sandbox()
    course = released_course()
    ctx = Context(
        release=nbformat.read(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4),
        solution=nbformat.read(SOURCE, 4),
        course=course,
        port=0,
    )
    write_catalog(ctx, course / "submitted", OURS + STOCK)
    students = [arg for case in OURS for arg in ("--student", case.student)]
    ours = grading(course, "autograde", ASSIGNMENT, "--skip-preflight", "--workers", "2", *students)
    stock = nbgrader(course, "autograde", ASSIGNMENT, "--student", "stock-*")
    feedback = grading(course, "feedback", ASSIGNMENT, *students)
    stock_feedback = nbgrader(course, "generate_feedback", ASSIGNMENT, "--student", "stock-*")
    yield FeedbackCourse(course, ours, stock, feedback, stock_feedback)
    shutil.rmtree(course, ignore_errors=True)


def test_both_ways_grade_and_give_feedback_to_every_display_case(graded):
    assert graded.autograde.returncode == 0, graded.autograde.stdout + graded.autograde.stderr
    assert graded.stock_autograde.returncode == 0, graded.stock_autograde.stderr[-3000:]
    assert graded.feedback.returncode == 0, graded.feedback.stdout + graded.feedback.stderr
    assert graded.stock_feedback.returncode == 0, graded.stock_feedback.stderr[-3000:]
    for case in OURS + STOCK:
        assert graded.path("feedback", case.student, "html").exists(), case.student
    assert "6/8 (+2 graded by hand)" in graded.autograde.stdout


@pytest.mark.parametrize("student", [case.student for case in OURS + STOCK])
def test_feedback_runs_nothing_a_submission_put_there(graded, student):
    template_own = active_parts(graded.page("py-perfect"))
    assert active_parts(graded.page(student)) - template_own == collections.Counter()


@pytest.mark.parametrize("student", [case.student for case in OURS + STOCK])
def test_formgrader_view_runs_nothing_a_submission_put_there(graded, student):
    template_own = active_parts(formgrader_view(graded.path("autograded", "py-perfect", "ipynb")))
    view = formgrader_view(graded.path("autograded", student, "ipynb"))
    assert active_parts(view) - template_own == collections.Counter()


KEPT = {
    "hostile_html": ["html-text-kept", "table-text-kept", "stdout-text-kept <script>document.title='pwned'</script>"],
    "hostile_types": ["markdown-text-kept", "js fallback", "widget fallback"],
    "hostile_markdown": ["written-text-kept", "Markdown with raw HTML:", "overlay"],
}


@pytest.mark.parametrize("prefix", ["py-", "stock-"])
@pytest.mark.parametrize("case", sorted(KEPT))
def test_text_and_images_stay(graded, case, prefix):
    student = prefix + case
    for page in (graded.page(student), formgrader_view(graded.path("autograded", student, "ipynb"))):
        text = page_text(page)
        for kept in KEPT[case]:
            assert kept in text, f"{student}: {kept!r} is gone"
        images = [e.get("src") for e in html5lib.parse(page, namespaceHTMLElements=False).iter("img")]
        assert f"data:image/png;base64,{PNG}" in images, student


def test_a_submission_that_prints_the_hidden_tests_loses_that_output_only(graded):
    page = graded.page("py-leaks_hidden_tests")
    assert LEAK_NOTE.strip() in page_text(page)
    hidden = [line for cell in nbformat.read(SOURCE, 4).cells for line in strip_hidden(cell.source)[1]]
    assert leaked_lines(page, hidden) == [] and not any(label in page for label in HIDDEN_LABELS)
    assert re.search(r"py-leaks_hidden_tests: an output of cell \d+ showed hidden tests", graded.feedback.stdout)
    # the students after it got their feedback too, and its own outputs elsewhere stayed
    assert "feedback feedback/py-perfect/" in graded.feedback.stdout
    assert "\u2713 normalize([3, 4])" in page_text(page)
    stock = graded.page("stock-leaks_hidden_tests")
    assert LEAK_NOTE.strip() in page_text(stock) and leaked_lines(stock, hidden) == []


@pytest.mark.parametrize("student", ["py-huge_total", "stock-huge_total"])
def test_a_notebooks_total_output_is_bounded(graded, student):
    limit = OutputBudget().max_notebook_chars
    assert graded.path("autograded", student, "ipynb").stat().st_size < 1.1 * limit
    assert graded.path("feedback", student, "html").stat().st_size < 1.1 * limit
    notebook = nbformat.read(graded.path("autograded", student, "ipynb"), 4)
    assert any(note.startswith("outputs cut:") for note in notebook.metadata.grading.notes)
    assert "removed by the grader: the notebook's outputs passed" in graded.page(student)


def test_the_report_says_the_outputs_were_cut_and_cleaned(graded):
    assert any(n.startswith("outputs cut: ") for n in graded.report("py-huge_total")["notes"])
    assert "outputs cut:" in graded.autograde.stdout  # the summary line's messages column
    cleaned = graded.report("py-hostile_types")["notes"]
    assert any(re.match(r"cleaned for display: .*application/javascript", n) for n in cleaned), cleaned


def test_feedback_tells_which_visible_check_failed_and_hides_hidden_ones(graded):
    text = page_text(graded.page("py-wrong"))
    assert "normalize([3, 4]): 2 of 2 values differ" in text  # test_normalize: a visible check
    assert "half right: 1 of 1 values differ" in text
    assert HIDDEN_FAILED in text  # test_project: its visible checks pass, a hidden one fails
    assert "\u2713 points outside are clipped" in text
    assert not any(label in text for label in HIDDEN_LABELS)
    perfect = page_text(graded.page("py-perfect"))
    assert "\u2713 2 hidden checks passed" in perfect and not any(label in perfect for label in HIDDEN_LABELS)


# --- the sanitizer, one payload at a time -------------------------------------------------------
EXPORTER = HTMLExporter(template_name="classic")  # as GenerateFeedback's, without nbgrader's header


def rendered(nb) -> str:
    return EXPORTER.from_notebook_node(nb)[0]


def html_output(html: str):
    return new_output("display_data", data={"text/html": html, "text/plain": "fallback"})


def sanitized(nb):
    return SanitizeOutputs().preprocess(copy.deepcopy(nb), {})[0]


@pytest.mark.parametrize("payload", [p for p in HTML_ATTACKS if "&lt;" not in p])
def test_each_html_attack_runs_in_stock_rendering_and_not_once_sanitized(payload):
    nb, empty = new_notebook(cells=[new_code_cell("x", outputs=[html_output(payload)])]), new_notebook()
    baseline = active_parts(rendered(empty))
    assert active_parts(rendered(nb)) - baseline, "the payload is not an attack (the oracle would prove nothing)"
    assert active_parts(rendered(sanitized(nb))) - baseline == collections.Counter()


@pytest.mark.parametrize(
    "chunk", [c for c in MARKDOWN_ATTACKS.split("\n\n") if "attachment:" not in c and not c.startswith("[1]:")]
)
def test_each_markdown_attack_runs_in_stock_rendering_and_not_once_sanitized(chunk):
    source = chunk + ("\n\n[1]: data:text/html,x" if "[ref][1]" in chunk else "")
    nb, empty = new_notebook(cells=[new_markdown_cell(source)]), new_notebook()
    baseline = active_parts(rendered(empty))
    assert active_parts(rendered(nb)) - baseline, "the markdown is not an attack"
    assert active_parts(rendered(sanitized(nb))) - baseline == collections.Counter()


def test_safe_markdown_and_its_attachments_stay_as_written():
    source = "# Title\n\nSome *text*, $x^2$, [a link](https://example.org) and ![a figure](attachment:f.png)."
    assert safe_markdown(source, {"f.png": {"image/png": PNG}}) == (source, [])
    cell = new_markdown_cell(source, attachments={"f.png": {"image/png": PNG, "text/html": "PHNjcmlwdD4="}})
    nb = sanitized(new_notebook(cells=[cell]))
    assert nb.cells[0].source == source and nb.cells[0].attachments == {"f.png": {"image/png": PNG}}


def test_unsafe_markdown_becomes_one_html_block_that_renders_the_same_twice():
    source, unsafe = safe_markdown("Hi <b onclick=x()>there</b>\n\n```\n[a](javascript:alert(1))\n\nb\n```\n")
    assert unsafe and "\n" not in source and source.startswith("<div>") and "onclick" not in source
    again, _ = safe_markdown(source)
    once, twice = (rendered(new_notebook(cells=[new_markdown_cell(s)])) for s in (source, again))
    assert page_text(once) == page_text(twice) and "[a](javascript:alert(1))" in page_text(once)
    assert active_parts(once) == active_parts(twice) == active_parts(rendered(new_notebook()))


def test_output_types_outside_the_allow_list_go_and_images_and_text_stay():
    outputs = [
        new_output("display_data", data={"application/javascript": "alert(1)"}),
        new_output("display_data", data={"image/svg+xml": "<svg onload=alert(1)/>", "text/plain": "svg"}),
        new_output("display_data", data={"image/png": PNG}, metadata={"image/png": {"width": 3, "x": "y"}}),
        new_output("display_data", data={"image/jpeg": "not base64!"}),
        new_output("display_data", data={"text/latex": "$x$", "application/pdf": "JVBER"}),
        new_output("execute_result", data={"text/plain": "42"}, execution_count=3),
        new_output("stream", name="stdout", text="<script>stays text</script>"),
        new_output("error", ename="ValueError", evalue="bad", traceback=["ValueError: bad"]),
    ]
    nb = new_notebook(cells=[new_code_cell("x", outputs=outputs)], metadata={"widgets": {"state": {}}})
    cleaned = sanitized(nb)
    kept = cleaned.cells[0].outputs
    assert "widgets" not in cleaned.metadata
    assert [sorted(o.get("data", {})) for o in kept] == [
        ["text/plain"],
        ["text/plain"],
        ["image/png"],
        ["text/plain"],
        ["text/latex"],
        ["text/plain"],
        [],
        [],
    ]
    assert kept[0].data["text/plain"].startswith("[output removed by the grader")
    assert kept[2].metadata == {"image/png": {"width": 3}} and kept[5].execution_count == 3
    assert kept[6].text == outputs[6].text and kept[7].ename == "ValueError"  # errors (grades) stay
    assert cleaned.metadata.grading.notes == [
        "cleaned for display: 1 application/javascript, 1 application/pdf, 1 image/jpeg, 1 image/svg+xml"
    ]


def test_output_budget_keeps_errors_and_witnesses_and_says_what_it_cut():
    witness = new_output("display_data", data={WITNESS_MIME: {"check": "close", "label": "ok"}, "text/plain": "✓ ok"})
    big = new_output("display_data", data={"image/png": "A" * 400})
    error = new_output("error", ename="AssertionError", evalue="x" * 500, traceback=["y" * 500, "z" * 500])
    nb = new_notebook(cells=[new_code_cell("a", outputs=[big, big]), new_code_cell("b", outputs=[big, witness, error])])
    cut = OutputBudget(max_notebook_chars=1000, max_error_chars=300).preprocess(nb, {})[0]
    first, second = cut.cells[0].outputs, cut.cells[1].outputs
    assert first[:2] == [big, big] and len(first) == 2
    assert second[0] == witness and second[1].ename == "AssertionError" and len(second[1].evalue) == 300
    assert sum(map(len, second[1].traceback[:-1])) <= 300
    assert second[2].text.startswith("[1 output(s) removed by the grader")
    assert cut.metadata.grading.notes == [
        "outputs cut: the notebook's outputs passed 1,000 characters; 1 output(s) in 1 cell(s) were removed"
    ]


# --- test cells in feedback -----------------------------------------------------------------------
IPYTHON_FRAME = "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[{count}]\x1b[39m\x1b[32m, line {line}\x1b[39m\n"


def ipython_traceback(source: str, line: int, count: int, message: str) -> list[str]:
    """A traceback as IPython writes it for a cell, showing all of the cell's lines around ``line``."""
    context = "".join(
        f"{'---->' if number == line else '     '} {number} {text}\n"
        for number, text in enumerate(source.splitlines(), start=1)
    )
    return ["-" * 75, "AssertionError   Traceback (most recent call last)", IPYTHON_FRAME.format(count=count, line=line)
            + context, "File grading/checks.py:205, in Checks.close(...)", f"AssertionError: {message}"]  # fmt: skip


def witness(label: str):
    return new_output(
        "display_data", data={WITNESS_MIME: {"check": "close", "label": label}, "text/plain": f"✓ {label}"}
    )


def graded_test_cell(cell, fail_at: str | None, count: int = 7):
    """``cell`` with the outputs of a run where every check passes up to the one labelled ``fail_at``."""
    cell = copy.deepcopy(cell)
    cell.id = random_cell_id()
    cell.execution_count, cell.outputs = count, [new_output("stream", name="stdout", text="a student's print\n")]
    for first, _, label in sorted(check_labels(cell.source)):
        if label == fail_at:
            message = f"{label}: 3 of 784 values outside [0.0, 1.0] (range found: -0.1 to 1.2)"
            traceback = ipython_traceback(cell.source, first, count, message)
            cell.outputs.append(new_output("error", ename="AssertionError", evalue=message, traceback=traceback))
            break
        cell.outputs.append(witness(label))
    return cell


def demo_test_cell(grade_id: str):
    return next(
        c for c in nbformat.read(SOURCE, 4).cells if (c.metadata.get("nbgrader") or {}).get("grade_id") == grade_id
    )


@pytest.mark.parametrize(
    ("fail_at", "shown"),
    [
        (None, ["✓ points inside stay", "✓ points outside are clipped", "✓ 2 hidden checks passed"]),
        (
            "points outside are clipped",
            ["✓ points inside stay", "AssertionError: points outside are clipped: 3 of 784"],
        ),
        ("pixels stay in [0, 1]", ["✓ points outside are clipped", "AssertionError: " + HIDDEN_FAILED]),
    ],
)
def test_a_test_cell_shows_visible_labels_and_neutral_hidden_lines(fail_at, shown):
    cell = graded_test_cell(demo_test_cell("test_project"), fail_at)
    HideHiddenTests().rebuild_test_cell(cell)
    text = "\n".join(
        o.get("text") or o.get("data", {}).get("text/plain") or "\n".join(o.traceback) for o in cell.outputs
    )
    assert all(line in text for line in shown), text
    assert "pixels stay" not in text and "after the ball" not in text and "a student's print" not in text
    assert "BEGIN HIDDEN" not in cell.source and "check.between" not in cell.source


def test_the_instructor_can_allow_hidden_labels():
    steps = HideHiddenTests(show_hidden_labels=True)
    failed = graded_test_cell(demo_test_cell("test_project"), "pixels stay in [0, 1]")
    steps.rebuild_test_cell(failed)
    assert "AssertionError: hidden check 'pixels stay in [0, 1]' failed" in failed.outputs[-2].traceback[0]
    assert "3 of 784" not in str(failed.outputs)  # a hidden check's message shows its inputs: never shown
    passed = graded_test_cell(demo_test_cell("test_project"), None)
    steps.rebuild_test_cell(passed)
    assert "✓ [0, 1] after the ball (hidden check)" in [o.data["text/plain"] for o in passed.outputs if "data" in o]


def test_a_failure_that_cannot_be_placed_counts_as_hidden():
    cell = graded_test_cell(demo_test_cell("test_project"), "points outside are clipped")
    cell.outputs[-1].traceback = ["AssertionError: no frame of the cell"]  # e.g. a traceback display replaced
    HideHiddenTests().rebuild_test_cell(cell)
    assert [o.traceback for o in cell.outputs if o.output_type == "error"] == [["AssertionError: " + HIDDEN_FAILED]]
    assert failing_line([IPYTHON_FRAME.format(count=3, line=4)], execution_count=5) is None


def test_hidden_text_is_what_only_the_hidden_parts_hold():
    test = new_code_cell(
        "torch.manual_seed(0)\ncheck.close(f(x), y, label='visible label')\n### BEGIN HIDDEN TESTS\n"
        "torch.manual_seed(0)\nwith torch.no_grad():\n"
        "    check.close(f(secret_input), 42.0, label='the secret label')\n"
        "check.close(student_wrote_this(1), 2, label='visible label')\n### END HIDDEN TESTS"
    )
    test.metadata.nbgrader = {"grade": True, "locked": True, "solution": False, "grade_id": "t", "points": 1}
    student = new_code_cell("with torch.no_grad():\n    check.close(student_wrote_this(1), 2, label='visible label')")
    nb = new_notebook(cells=[student, test])
    secret = HiddenText.of(nb)
    assert secret.lines == ["check.close(f(secret_input),42.0,label='thesecretlabel')"]
    assert secret.strings == ["thesecretlabel"]
    assert HiddenText.of(nb, labels_shown=True).strings == []
    assert secret.found_in("x: the secret label") and not secret.found_in("torch.manual_seed(0)")
    assert hidden_line_numbers(test.source) == {3, 4, 5, 6, 7, 8}


# --- the six real notebooks: feedback for right and wrong answers flags nothing -------------------
REAL = sorted(ROOT.glob("solutions/*/*.ipynb"))


def is_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader") or {}
    return cell.cell_type == "code" and meta.get("grade") and not meta.get("solution")


def feedback_page(nb, log_records: list) -> str:
    """``nb`` through the course's feedback steps, rendered as ``generate_feedback`` renders it."""
    handler = ListHandler(log_records)
    for step in (SanitizeOutputs(), OutputBudget(), HideHiddenTests()):
        step.log.addHandler(handler)
        try:
            nb = step.preprocess(nb, {})[0]
        finally:
            step.log.removeHandler(handler)
    return rendered(nb)


class ListHandler(logging.Handler):
    def __init__(self, records: list):
        super().__init__()
        self.records = records

    def emit(self, record):
        self.records.append(record.getMessage())


@pytest.mark.parametrize("path", REAL, ids=[p.stem for p in REAL])
def test_feedback_on_a_real_notebook_shows_failed_visible_labels_and_no_hidden_test(path):
    """Each test cell three times: every check passes; the last visible check fails; the first
    hidden check fails (with tracebacks that show the whole cell, as IPython's can)."""
    source = nbformat.read(path, 4)
    secret = HiddenText.of(source)
    tests = "\n".join(cell.source for cell in source.cells if is_test(cell))
    assert secret.lines and secret.found_in(tests), "the hidden tests hold lines to look for"
    nb, expected = copy.deepcopy(source), ["All tests of this cell passed.", HIDDEN_FAILED]
    cells = []
    for index, cell in enumerate(nb.cells):
        if not is_test(cell):
            cells.append(cell)
            continue
        hidden = hidden_line_numbers(cell.source)
        calls = sorted(check_labels(cell.source))
        visible = [label for first, _, label in calls if first not in hidden]
        hidden_only = [label for first, _, label in calls if first in hidden and label not in visible]
        assert visible and hidden_only, "a test cell with visible and hidden checks"
        for fail_at in (None, visible[-1], hidden_only[0]):
            cells.append(graded_test_cell(cell, fail_at, count=index))
        expected.append(f"{visible[-1]}: 3 of 784 values outside")
    nb.cells = cells
    log: list[str] = []
    page = feedback_page(nb, log)
    assert [line for line in log if "showed hidden tests" in line] == []
    assert leaked_lines(page, secret.lines + secret.strings) == []
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert all(line in text for line in expected), [line for line in expected if line not in text]


# --- validate ---------------------------------------------------------------------------------------
def test_validate_reports_each_test_cell_and_the_scores(tmp_path):
    wrong = nbformat.read(SOURCE, 4)
    for cell in wrong.cells:
        if (cell.metadata.get("nbgrader") or {}).get("grade_id") == "project":
            cell.source = WRONG["project"]
    path = tmp_path / "wrong.ipynb"
    nbformat.write(wrong, path)
    result = grading(ROOT, "validate", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: FAILED 1 of 3 test cells"
    assert re.fullmatch(r"  test_normalize\s+passed  2/2", lines[1])
    assert re.fullmatch(
        r"  test_project\s+FAILED  0/3  AssertionError: pixels stay in \[0, 1\]: 2 of 2 values outside .*", lines[2]
    )
    assert lines[-1] == "  automatic score 3/6; 2 point(s) graded by hand"
    assert "without encryption" not in result.stdout + result.stderr and result.stderr == ""
