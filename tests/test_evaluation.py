"""AutoAttack through ``helpers.evaluation``: exact on linear models, the same as the reference's
one call, the command line's choice of images, the card entry it writes, the report's table read
from the cards, and the cards' figures next to their PGD ones. Every AutoAttack run here is on a
linear model or a standard checkpoint (its digits fall to the first attack), so the module takes
seconds; the robust checkpoints' figures come from their cards."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from conftest import ROOT, LinearClassifier

from helpers.data import load_dataset
from helpers.evaluation import STANDARD_ATTACKS, add_to_card, autoattack_accuracy, main
from helpers.models import MODELS_DIR, list_pretrained, load_card, load_pretrained
from helpers.utils import set_seed

pytest.importorskip("pyautoattack")
ROBUST = ("mnist_l2_robust", "mnist_linf_robust", "cifar10_l2_robust")


@pytest.fixture
def linear_ten() -> tuple[LinearClassifier, torch.Tensor, torch.Tensor]:
    """A 10-class linear model and 60 images of 1 x 10 x 10 in [0.3, 0.7] (Square needs sides >= 5),
    labelled with its own predictions."""
    set_seed(0)
    model = LinearClassifier(torch.randn(10, 100) / 10, torch.zeros(10)).eval()
    x = 0.3 + 0.4 * torch.rand(60, 1, 10, 10)
    return model, x, model(x).argmax(1).detach()


def l2_margin_robust(model: LinearClassifier, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Exact L2 robustness of a linear model away from the box: every margin exceeds eps ||w_y - w_j||."""
    w, b = model.linear.weight.detach(), model.linear.bias.detach()
    logits = x.flatten(1) @ w.T + b
    margins = logits.gather(1, y.view(-1, 1)) - logits  # N x K
    norms = (w[y].unsqueeze(1) - w.unsqueeze(0)).norm(dim=2)  # N x K
    return ((margins > eps * norms) | (torch.arange(10) == y.view(-1, 1))).all(dim=1)


def test_autoattack_is_exact_on_a_linear_model(linear_ten):
    """Away from the box (pixels in [0.3, 0.7], the worst case moves each by <= eps) the minimal
    L2 perturbation has a closed form: AutoAttack must find every non-robust image and no more."""
    model, x, y = linear_ten
    eps = 0.15
    expected = l2_margin_robust(model, x, y, eps).float().mean().item()
    assert 0.2 < expected < 0.8  # both kinds of images, so the test can fail either way
    result = autoattack_accuracy(model, x, y, norm="l2", eps=eps, batch_size=32)
    assert result.clean_accuracy == 1.0 and result.images == 60
    assert result.accuracy == pytest.approx(expected, abs=1 / 60)
    assert list(result.after) == list(STANDARD_ATTACKS)
    assert list(result.after.values()) == sorted(result.after.values(), reverse=True)  # survivors only shrink
    assert result.after["square"] == result.accuracy
    delta = (result.x_adv - x).flatten(1).norm(dim=1)
    assert (delta <= eps + 1e-4).all() and result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    fooled = model(result.x_adv).argmax(1) != y
    assert fooled.float().mean().item() == pytest.approx(1 - result.accuracy)
    assert torch.equal(result.x_adv[~fooled], x[~fooled])  # untouched where every attack failed


def test_attack_by_attack_equals_the_reference_in_one_call(linear_ten):
    from pyautoattack import AutoAttack

    model, x, y = linear_ten
    x, y = x[:30], y[:30].clone()
    y[:4] = (y[:4] + 1) % 10  # a few misclassified images: not robust from the start
    ours = autoattack_accuracy(model, x, y, norm="linf", eps=0.02, batch_size=16)
    adversary = AutoAttack(model, norm="Linf", eps=0.02, version="standard", seed=0)
    _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=16)
    assert ours.clean_accuracy == pytest.approx(26 / 30)
    assert 0 < ours.accuracy < ours.clean_accuracy  # some images fall, some resist
    assert ours.accuracy == pytest.approx((y_adv == y).float().mean().item())


def test_inputs_and_modes_are_left_alone_and_bad_arguments_refused(linear_ten):
    model, x, y = linear_ten
    model.train()
    x_copy = x.clone()
    assert autoattack_accuracy(model, x[:8], y[:8], norm="linf", eps=0.5).accuracy == 0  # falls at once
    assert torch.equal(x, x_copy) and model.training
    with pytest.raises(ValueError, match="unknown norm"):
        autoattack_accuracy(model, x, y, norm="l1", eps=0.1)
    with pytest.raises(ValueError, match="eps"):
        autoattack_accuracy(model, x, y, norm="l2", eps=0)
    with pytest.raises(ValueError, match="pixels in"):
        autoattack_accuracy(model, x * 2, y, norm="l2", eps=0.1)


def test_add_to_card_replaces_the_same_budget_and_keeps_the_rest(tmp_path, linear_ten):
    for suffix in (".pt", ".json"):
        shutil.copy(MODELS_DIR / f"mnist_standard{suffix}", tmp_path / f"mnist_standard{suffix}")
    model, x, y = linear_ten
    pgd_entries = load_card("mnist_standard", tmp_path)["robust_accuracy"]
    result = autoattack_accuracy(model, x[:8], y[:8], norm="l2", eps=3.0)
    add_to_card("mnist_standard", result, command="python -m helpers.evaluation ...", device="cpu", directory=tmp_path)
    card = add_to_card(
        "mnist_standard", result, command="again", device="cpu", selection="the first 8", directory=tmp_path
    )
    assert card["robust_accuracy"] == pgd_entries and len(card["autoattack"]) == 1  # the same budget: replaced
    [entry] = card["autoattack"]
    assert entry["attack"] == "autoattack" and entry["command"] == "again" and entry["version"] == "standard"
    assert entry["selection"] == "the first 8" and entry["cpu_seconds"] >= 0 and entry["threads"] >= 1
    assert entry["accuracy"] == result.accuracy and entry["library"].startswith("pyautoattack ")
    assert json.loads((tmp_path / "mnist_standard.json").read_text()) == card
    load_pretrained("mnist_standard", device="cpu", directory=tmp_path)  # the sha256 still matches


def test_the_command_line_picks_the_first_or_a_random_sample(capsys):
    first = main(["mnist_standard", "--norm", "linf", "--eps", "0.3", "--limit", "3", "--device", "cpu", "--no-card"])
    sample = main(["mnist_standard", "--norm", "linf", "--eps", "0.3", "--sample", "3", "--device", "cpu", "--no-card"])
    x, _ = load_dataset("mnist", "test")
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:3]
    assert first.images == sample.images == 3 and first.accuracy == sample.accuracy == 0  # a standard model
    assert (first.x_adv - x[:3]).abs().max() <= 0.3 + 1e-6 and (sample.x_adv - x[pick]).abs().max() <= 0.3 + 1e-6
    assert not torch.equal(pick, torch.arange(3))
    assert "AutoAttack linf eps=0.3" in capsys.readouterr().out
    assert "autoattack" not in load_card("mnist_standard")  # --no-card: the card is left alone


def test_the_report_reads_autoattack_from_the_cards(monkeypatch):
    """``benchmarks/report.py``'s AutoAttack table: the card's figures next to its PGD ones, and
    "not measured" for a card without an AutoAttack entry at its training budget."""
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import report

    measured, bare = load_card("mnist_l2_robust"), load_card("cifar10_l2_robust")
    bare.pop("autoattack", None)
    entry = {
        "attack": "autoattack",
        "norm": "l2",
        "eps": 2.0,
        "images": 100,
        "clean_accuracy": 0.99,
        "accuracy": 0.63,
        "after": dict(zip(STANDARD_ATTACKS, (0.7, 0.64, 0.63, 0.63))),
        "seconds": 500.0,
        "cpu_seconds": 480.0,
        "threads": 2,
        "device": "cpu (x86_64)",
        "selection": "the first 100 test images",
        "command": "python -m helpers.evaluation mnist_l2_robust --norm l2 --eps 2.0 --limit 100",
    }
    measured["autoattack"] = [entry]
    measured["notes"] = ["overstated by PGD"]
    text = "\n".join(report.autoattack_lines({"mnist_l2_robust": measured, "cifar10_l2_robust": bare}))
    rows = {line.split(" | ")[0]: line.split(" | ") for line in text.splitlines() if line.startswith("| `")}
    pgd = next(r["accuracy"] for r in measured["robust_accuracy"] if (r["attack"], r["eps"]) == ("pgd", 2.0))
    assert rows["| `mnist_l2_robust`"][3].startswith("**63.0% ± 4.8** on the first 100 test images (clean 99.0%)")
    assert rows["| `mnist_l2_robust`"][4] == f"{100 * (0.63 - pgd):+.1f}" and "480 s of CPU" in text
    assert rows["| `mnist_l2_robust`"][5] == "70.0% / 64.0% / 63.0% / 63.0%"
    assert rows["| `cifar10_l2_robust`"][3:] == ["not measured", "—", "—", "— |"]
    assert f"`{entry['command']}`" in text and "- `mnist_l2_robust`: overstated by PGD" in text
    assert text.startswith(report.AUTOATTACK_HEADING) and "notebook 05" in text


@pytest.mark.parametrize("name", [n for n in ROBUST if n in list_pretrained()])
def test_every_robust_card_carries_autoattack_next_to_pgd(name):
    """Each robust checkpoint's card has AutoAttack at its training budget, at most its PGD figure
    at the same budget (AutoAttack includes stronger attacks) up to the sampling error."""
    card = load_card(name)
    budget = (card["training"]["norm"], card["training"]["eps"])
    auto = [r for r in card.get("autoattack", []) if (r["norm"], r["eps"]) == budget]
    pgd = [r for r in card["robust_accuracy"] if r["attack"] == "pgd" and (r["norm"], r["eps"]) == budget]
    assert auto and pgd, f"{name}: AutoAttack and PGD at {budget}"
    entry = auto[-1]
    assert entry["version"] == "standard" and list(entry["after"]) == list(STANDARD_ATTACKS)
    assert entry["seconds"] > 0 and entry["cpu_seconds"] > 0 and entry["images"] >= 100
    assert entry["command"].startswith("python -m helpers.evaluation ") and entry["selection"]
    standard_error = (entry["accuracy"] * (1 - entry["accuracy"]) / entry["images"]) ** 0.5
    assert entry["accuracy"] <= min(r["accuracy"] for r in pgd) + 2 * standard_error
