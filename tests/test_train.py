"""Training: the schedule, the catastrophic-overfitting guard, learning, and the CLI end to end."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from helpers import attacks
from helpers.models import MnistCNN, load_pretrained
from helpers.train import GUARD_DROP, History, TrainConfig, _Guard, augment_batch, one_cycle, train
from helpers.utils import set_seed

from conftest import ROOT


def test_one_cycle_schedule_rises_then_falls_to_zero():
    total = 100
    factors = [one_cycle(step, total) for step in range(total + 1)]
    assert factors[0] == 0 and max(factors) == 1 and factors[25] == 1 and factors[-1] == 0
    assert factors[:26] == sorted(factors[:26]) and factors[25:] == sorted(factors[25:], reverse=True)


def test_augmentation_shifts_by_at_most_two_pixels():
    set_seed(0)
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1
    shifted = augment_batch(x, flip=False)
    assert shifted.shape == x.shape and shifted.sum() == x.sum()  # the square never leaves the image
    rows = shifted[0, 0].sum(1).nonzero().flatten()
    assert 8 <= rows.min() <= 12


def test_config_defaults_and_validation():
    assert TrainConfig(method="fgsm", eps=0.3).alpha == pytest.approx(0.375)
    assert TrainConfig(method="pgd", eps=0.3, steps=10).alpha == pytest.approx(0.075)
    with pytest.raises(ValueError, match="eps > 0"):
        TrainConfig(method="pgd")
    with pytest.raises(ValueError, match="unknown method"):
        TrainConfig(method="trades")


def test_guard_detects_a_collapse_and_restores_the_best_weights(mnist_test):
    model = load_pretrained("mnist_linf_robust", device="cpu")
    x, y = mnist_test[0][:128], mnist_test[1][:128]
    guard = _Guard(model, x, y, TrainConfig(method="fgsm", eps=0.3))
    history = History()
    set_seed(0)
    healthy = guard.check(0, 0.3, history)
    good_state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([100.0] + [0.0] * 9))  # predicts "0" for everything
    collapsed = guard.check(1, 0.3, history)
    assert collapsed < healthy - GUARD_DROP and guard.collapsed and len(history.events) == 1
    assert all(torch.equal(v, good_state[k]) for k, v in model.state_dict().items())


def test_standard_training_learns(mnist_train, mnist_test):
    set_seed(0)
    model = MnistCNN(width=8, rep_dim=32)
    x, y = mnist_train[0][:2000], mnist_train[1][:2000]
    history = train(model, x, y, TrainConfig(epochs=4, batch_size=32), x_val=mnist_test[0][:500],
                    y_val=mnist_test[1][:500], progress=False)
    assert [r["epoch"] for r in history.epochs] == [1, 2, 3, 4]
    assert history.epochs[-1]["val_accuracy"] >= 0.8
    assert not model.training


def test_cli_trains_a_tiny_model_end_to_end(tmp_path):
    command = [sys.executable, "-m", "helpers.train", "--name", "tiny", "--out", str(tmp_path), "--method", "fgsm",
               "--eps", "0.1", "--epochs", "1", "--width", "4", "--limit", "256", "--eval-limit", "100",
               "--eval-attack", "linf:0.1:0.02:5", "--device", "cpu", "--quiet"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["command"].startswith("python -m helpers.train --name tiny")
    assert card["train_images"] == 256 and card["test_images"] == 100
    assert card["training"]["method"] == "fgsm" and len(card["history"]) == 1
    assert card["robust_accuracy"][0]["eps"] == 0.1 and card["robust_accuracy"][0]["steps"] == 5
    model = load_pretrained("tiny", device="cpu", directory=tmp_path)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
