"""``benchmarks/gpu_check.py`` on the CPU: its dry run exercises every part and writes figures and
a REPORT section labelled as a dry run, never as GPU figures; a part that runs out of its share is
cut, stopped with what it started, and the rest still runs; without CUDA the real check refuses to
measure; the GPU section says "not measured on a GPU yet" without figures and names the device
with them."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import CIFAR_SUBSET, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402  (the standard library only, at import)

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
PARTS = ("setup", "tests", "notebooks", "training", "pgd", "report")
GRACE = 10  # seconds a stopped part may take to end after its deadline
DRY_MARK = "(dry run on the CPU, not GPU figures)"


def run_check(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRACTICUM_CIFAR_SUBSET": str(CIFAR_SUBSET)}
    env.pop("PRACTICUM_DEVICE", None)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def gpu_text(report: str) -> str:
    """REPORT.md's GPU section, heading included, up to the next level-2 heading."""
    start = report.index("## GPU: the course on CUDA\n")
    following = re.compile(r"^## ", re.MULTILINE).search(report, start + 5)
    return report[start : following.start() if following else len(report)]


def table_rows(text: str) -> list[list[str]]:
    rows = [line.strip("|").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows if not set("".join(row)) <= set("-| ")][1:]


@pytest.fixture(scope="module")
def report_module():
    """``benchmarks/report.py``, imported without leaving its thread setting behind."""
    before = os.environ.get("OMP_NUM_THREADS")
    import report

    if before is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    return report


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    if not (CIFAR_SUBSET / "train").is_dir():
        pytest.skip(f"the CIFAR-10 subset is not in {CIFAR_SUBSET}")
    out = tmp_path_factory.mktemp("gpu-check")
    shutil.copy2(ROOT / "REPORT.md", out / "REPORT.md")
    result = run_check("--dry-run", "--figures", str(out / "gpu.json"), "--report", str(out / "REPORT.md"))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    figures = json.loads((out / "gpu.json").read_text())
    return figures, (out / "REPORT.md").read_text(), result.stdout, out


def test_the_dry_run_exercises_every_part_within_its_share(dry_run):
    figures, _, stdout, _ = dry_run
    assert figures["dry_run"] is True and "DRY RUN" in figures["label"] and "not GPU figures" in figures["label"]
    assert figures["device"]["type"] == "cpu" and figures["device"]["cuda"] is False
    parts = figures["parts"]
    assert tuple(parts) == PARTS and {part["status"] for part in parts.values()} == {"ok"}
    budget = sum(share for _, share in gpu_check.DRY_RUN.shares)
    assert figures["budget_seconds"] == budget and figures["seconds"] <= budget + GRACE
    for name, share in gpu_check.DRY_RUN.shares:
        assert parts[name]["share"] == share and parts[name]["seconds"] <= share + GRACE, name
        assert re.search(rf"\[gpu-check +\d+ s of {budget}\] {name}: its share {share} s, until \d+ s\n", stdout)

    cuda, fast = parts["tests"]["runs"]
    assert cuda["name"] == "CUDA tests" and cuda["skipped"] >= 1 and cuda["passed"] == 0  # no CUDA here
    assert fast["passed"] > 0 and fast["failed"] == fast["errors"] == 0 and "-m not slow" in fast["command"]
    files = parts["tests"]["device_test_files"]
    assert "tests/test_attacks.py" in files and "tests/test_train.py" in files
    assert not {"tests/test_notebooks.py", "tests/test_setup.py", "tests/test_gpu_check.py"} & set(files)

    [notebook] = parts["notebooks"]["notebooks"]
    assert notebook["status"] == "ok" and notebook["seconds"] > 0 and notebook["stderr"] == notebook["errors"] == []

    training = parts["training"]
    per_class = gpu_check.DRY_RUN.subset_per_class
    assert training["train_images"] == training["test_images"] == 10 * per_class and training["epochs"] == 1
    assert 0 <= training["pgd20_accuracy"] <= 1 and 0 <= training["clean_accuracy"] <= 1
    assert training["pgd20"]["steps"] == 20 and training["pgd20"]["eps"] == pytest.approx(8 / 255, abs=1e-5)
    expected = round(training["training_seconds"] * 50_000 / training["train_images"], 1)
    assert training["projected_full_seconds"] == pytest.approx(expected, abs=0.1)

    [pgd] = parts["pgd"]["runs"]
    assert (pgd["batch"], pgd["steps"], pgd["repeats"]) == gpu_check.DRY_RUN.pgd_runs[0]
    for norm in ("linf", "l2"):
        assert pgd[norm]["ratio"] == pytest.approx(pgd[norm]["ours"] / pgd[norm]["torchattacks"])
        assert pgd[norm]["images_per_second"]["ours"] == pytest.approx(pgd["batch"] / pgd[norm]["ours"])


def test_the_dry_runs_section_is_labelled_and_matches_its_figures(dry_run):
    figures, report, _, _ = dry_run
    section = gpu_text(report)
    assert report.count("## GPU: the course on CUDA\n") == 1
    assert report.replace(section, "") == (ROOT / "REPORT.md").read_text().replace(gpu_text_or_empty(), "")
    assert report.index("## GPU: the course on CUDA") < report.index("## Cost of this report")
    assert "**Dry run on the CPU at tiny sizes: these are not GPU figures**" in section
    label = section.splitlines()[2]
    assert "Measured by" not in section and "CUDA" not in label and "on cpu," in label
    subheadings = [line for line in section.splitlines() if line.startswith("### ")]
    assert len(subheadings) == 4 and all(line.endswith(DRY_MARK) for line in subheadings)
    for word in ("nan", "None", "{", "}"):
        assert word not in section, word

    rows = table_rows(section)
    assert [row[:2] for row in rows[:5]] == [[name, "ok"] for name in PARTS[:5]]
    pgd = figures["parts"]["pgd"]["runs"][0]
    pgd_rows = [row for row in rows if row[2:3] in (["linf"], ["l2"])]
    assert [row[5] for row in pgd_rows] == [f"{pgd[norm]['ratio']:.2f}×" for norm in ("linf", "l2")]
    training = figures["parts"]["training"]
    assert f"**{training['training_seconds']:.1f} s**" in section
    assert (
        "**Projection, not a measurement:**" in section and f"**{training['projected_full_seconds']:.0f} s" in section
    )


def gpu_text_or_empty() -> str:
    """The committed REPORT.md's GPU section, if it has one yet."""
    text = (ROOT / "REPORT.md").read_text()
    return gpu_text(text) if "## GPU: the course on CUDA\n" in text else "\0"


def test_a_part_out_of_its_share_is_cut_and_the_rest_still_runs(dry_run, tmp_path):
    _, _, _, out = dry_run
    for name in ("gpu.json", "REPORT.md"):
        shutil.copy2(out / name, tmp_path / name)
    figures_path, report_path = tmp_path / "gpu.json", tmp_path / "REPORT.md"
    result = run_check(
        "--dry-run",
        "--parts",
        "pgd",
        "--share",
        "pgd=0.5",
        "--figures",
        str(figures_path),
        "--report",
        str(report_path),
    )
    assert result.returncode == 1, result.stdout[-3000:]
    parts = json.loads(figures_path.read_text())["parts"]
    assert parts["pgd"]["status"] == "cut" and parts["pgd"]["runs"] == []
    assert parts["pgd"]["seconds"] <= 0.5 + GRACE
    assert parts["report"]["status"] == "ok" and parts["setup"]["status"] == "ok"
    assert all(parts[name]["status"] == "ok" for name in ("tests", "notebooks", "training"))  # kept from the first run
    section = gpu_text(report_path.read_text())
    assert ["pgd", "cut"] in [row[:2] for row in table_rows(section)]
    assert "**cut** before its first measurement" in section
    leftovers = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(word.endswith(b"gpu_check.py") for word in words) and b"--child" in words:
            leftovers.append(b" ".join(words).decode(errors="replace"))
    assert leftovers == [], leftovers


def test_without_cuda_the_check_refuses_to_measure(tmp_path):
    result = run_check("--parts", "pgd", "--figures", str(tmp_path / "gpu.json"), "--report", str(tmp_path / "R.md"))
    assert result.returncode == 1
    figures = json.loads((tmp_path / "gpu.json").read_text())
    assert figures["dry_run"] is False and list(figures["parts"]) == ["setup"]
    assert figures["parts"]["setup"]["status"] == "failed" and "no CUDA device" in " ".join(
        figures["parts"]["setup"]["note"]
    )
    assert not (tmp_path / "R.md").exists()


def test_the_section_says_not_measured_without_figures(report_module, tmp_path):
    assert report_module.read_gpu_figures(tmp_path / "absent.json") is None
    section = "\n".join(report_module.gpu_section(None))
    assert section.startswith("## GPU: the course on CUDA\n") and "**Not measured on a GPU yet**" in section


def test_real_figures_name_the_device_and_are_not_called_a_dry_run(report_module, dry_run):
    figures = copy.deepcopy(dry_run[0])
    figures.update(dry_run=False, check="python3 benchmarks/gpu_check.py")
    figures["device"].update(type="cuda", cuda=True, name="NVIDIA H200", memory_gib=139.8, cpu_cores=16)
    section = "\n".join(report_module.gpu_section(figures))
    assert "Measured by `python3 benchmarks/gpu_check.py` on **NVIDIA H200 (139.8 GiB), torch" in section
    assert "dry run" not in section.lower() and "not GPU figures" not in section
    assert "`PRACTICUM_DEVICE=cuda`" in section and "**Projection, not a measurement:**" in section


def test_notebook_error_output_and_stderr_are_caught(tmp_path, monkeypatch):
    """A notebook's parameters (``PRACTICUM_*`` it reads) are dropped from its kernel's environment
    unless the plan sets them; stderr and errors fail it."""
    monkeypatch.setenv("PRACTICUM_DEVICE", "cpu")
    monkeypatch.setenv("PRACTICUM_LEAK", "from the caller")
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "import os, sys\n"
                "assert os.environ['PRACTICUM_DEVICE'] == 'cpu' and os.environ['PRACTICUM_X'] == 'set'\n"
                "assert os.environ.get('PRACTICUM_LEAK') is None"
            ),
            nbformat.v4.new_code_cell("sys.stderr.write('a warning\\n')"),
            nbformat.v4.new_code_cell("1 / 0"),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    records = []
    spec = {"notebooks": [str(path)], "environment": {"PRACTICUM_X": "set"}, "cell_timeout": 60}
    gpu_check.execute_notebooks(spec, records.append)
    [record] = records
    assert record["notebook"] == "broken" and record["status"] == "failed"
    assert record["stderr"] == ["cell 1: a warning"] and "ZeroDivisionError" in record["errors"][0]
    executed = nbformat.read(path, as_version=4)  # the notebook file itself is left as it was
    assert all(not cell.get("outputs") for cell in executed.cells)


def test_the_pytest_runs_and_their_counts(tmp_path):
    command = gpu_check.pytest_command(
        ["tests/test_data.py"], tmp_path / "j.xml", keyword="cuda", marker=None, workers=8
    )
    assert command[1:3] == ["-m", "pytest"] and command[command.index("-k") + 1] == "cuda" and "-m" not in command[3:]
    assert ("-n" in command) == (gpu_check.importlib.util.find_spec("xdist") is not None)
    assert "-n" not in gpu_check.pytest_command([], tmp_path / "j.xml", keyword=None, marker="not slow", workers=0)
    (tmp_path / "j.xml").write_text(
        '<testsuites><testsuite tests="5" failures="1" errors="1" skipped="1">'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_a" name="test_broken"><error message="y"/></testcase>'
        "</testsuite></testsuites>"
    )
    assert gpu_check.junit_counts(tmp_path / "j.xml") == {
        "passed": 2,
        "failed": 1,
        "errors": 1,
        "skipped": 1,
        "failing": ["tests.test_a::test_bad", "tests.test_a::test_broken"],
    }


def test_the_section_replaces_itself_and_goes_before_the_cost():
    heading = "## GPU: the course on CUDA"
    text = "# R\n\n## Scale\n\nx\n\n## Cost of this report\n\n| a |\n"
    once = gpu_check.replace_section(text, heading, [heading, "", "first"])
    assert once == "# R\n\n## Scale\n\nx\n\n## GPU: the course on CUDA\n\nfirst\n\n## Cost of this report\n\n| a |\n"
    twice = gpu_check.replace_section(once, heading, [heading, "", "second", ""])
    assert twice == once.replace("first", "second")
    assert gpu_check.replace_section("# R\n", heading, [heading]) == "# R\n\n## GPU: the course on CUDA\n\n"
