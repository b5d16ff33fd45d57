"""``benchmarks/report.py --quick`` writes a complete report: every section, numbers from this
run in every table, the figures it links, and raw measurements that match the text."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import CIFAR_SUBSET, ROOT

SECTIONS = (
    "## Science: our figures next to the published ones",
    "## Performance: ratios measured side by side",
    "### PGD against torchattacks",
    "### SmoothGrad against captum's NoiseTunnel",
    "### Robust training against the textbook PGD-7 loop",
    "### Autograding: one by one against in parallel",
    "### Notebooks: execution time on this CPU",
    "## Scale: how cost grows",
    "## Cost of this report",
)
PUBLISHED = ("89.6%", "≈ 71%", "2.8%", "63%", "44%", "84% / 48%", "88% / 0%", "78%", "σ 10–20%, n ≈ 50")
PERCENT = re.compile(r"\d+\.\d%")
RATIO = re.compile(r"\d+\.\d\d×")


def section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split()[0]
    body = text.split(heading + "\n", 1)[1]
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", body, flags=re.MULTILINE)]
    return body[: ends[0]] if ends else body


def table_rows(text: str) -> list[list[str]]:
    """Cells of each table row in ``text`` (header and separator rows dropped)."""
    rows = [line.strip("|").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows if not set("".join(row)) <= set("-| ")][1:]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    if not (CIFAR_SUBSET / "train").is_dir():
        pytest.skip(f"the CIFAR-10 subset is not in {CIFAR_SUBSET}")
    out = tmp_path_factory.mktemp("report")
    env = {**os.environ, "PRACTICUM_DEVICE": "cpu", "PRACTICUM_CIFAR_SUBSET": str(CIFAR_SUBSET)}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "report.py"),
            "--quick",
            "--report",
            str(out / "REPORT.md"),
            "--figures",
            str(out / "figures"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return (out / "REPORT.md").read_text(), out


@pytest.mark.slow
def test_the_quick_report_has_every_section_with_numbers(quick_report):
    text, out = quick_report
    positions = [text.index(heading + "\n") for heading in SECTIONS]
    assert positions == sorted(positions)
    for word in ("nan", "None", "TODO", "{", "}"):
        assert word not in text, word
    header = text[: positions[0]]
    assert f"| torch | {torch.__version__} |" in header and "| torch threads | 1 |" in header
    assert re.search(r"\| date \| \d{4}-\d\d-\d\d \d\d:\d\d UTC \|", header)
    assert "| device | cpu (1 thread) |" in header and "| GPU | none: no GPU was available" in header

    science = table_rows(section(text, SECTIONS[0]))
    comparisons = [row for row in science if len(row) == 6]
    assert [row[1] for row in comparisons] == list(PUBLISHED)
    for result, _published, ours, setting, device, why in comparisons:
        assert PERCENT.search(ours) or re.search(r"n = \d+", ours), result
        assert device == "cpu (1 thread)" and len(setting) > 20 and why.endswith(".")
    curve = [row for row in science if row[0].startswith("`mnist_")]
    assert len(curve) == 3 and all(PERCENT.fullmatch(cell) for row in curve for cell in row[1:])

    for heading in SECTIONS[2:4]:
        rows = table_rows(section(text, heading))
        assert rows and all(RATIO.search(" ".join(row)) for row in rows), heading
    training = section(text, SECTIONS[4])
    assert len(table_rows(training)) == 2 and re.search(r"Time ratio .*\*\*\d+\.\d\d×\*\*", training)
    assert "Not run in quick mode" in section(text, SECTIONS[5])
    notebooks = table_rows(section(text, SECTIONS[6]))
    assert notebooks[0][0] == "`grading_demo`" and float(notebooks[0][1]) > 0

    scale = table_rows(section(text, SECTIONS[7]))
    assert [row[0].split(":")[0] for row in scale] == ["images", "steps", "model size"]
    for row in scale:
        times = [float(v) for v in row[2].split(", ")]
        assert len(times) >= 3 and all(t > 0 for t in times) and re.fullmatch(r"-?\d+\.\d\d", row[3])
    costs = dict(table_rows(section(text, SECTIONS[8])))
    assert float(costs["total"]) > 0 and len(costs) == 13


@pytest.mark.slow
def test_the_figures_and_measurements_match_the_report(quick_report):
    text, out = quick_report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 3
    for link in links:
        assert (out / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    measured = json.loads((out / "figures" / "measurements.json").read_text())
    assert measured["quick"] is True
    pgd = table_rows(section(text, SECTIONS[2]))
    assert pgd[0][3] == f"{measured['pgd']['linf']['ratio']:.2f}×"
    assert f"{100 * measured['challenge']['after_restarts'][-1]:.1f}%" in table_rows(section(text, SECTIONS[0]))[0][2]
    assert 0.0 <= measured["pets"]["relabelled"] <= 1.0 and measured["pets"]["images"] == 32
