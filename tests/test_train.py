"""Training: the schedule, the catastrophic-overfitting guard, learning, and the CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch
from conftest import CIFAR_SUBSET, ROOT

from helpers.models import MnistCNN, load_pretrained
from helpers.train import GUARD_DROP, History, TrainConfig, _Guard, augment_batch, one_cycle, robust_recipe, train
from helpers.utils import set_seed


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


def test_robust_recipe_is_few_step_pgd_with_an_eps_ramp():
    config = robust_recipe(0.3)
    assert (config.method, config.steps, config.eps, config.norm) == ("pgd", 2, 0.3, "linf")
    assert config.alpha == pytest.approx(0.375) and 0 < config.eps_warmup < config.epochs
    assert robust_recipe(2.0, "l2", epochs=10).epochs == 10 and robust_recipe(2.0, "l2").norm == "l2"


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
    history = train(
        model,
        x,
        y,
        TrainConfig(epochs=4, batch_size=32),
        x_val=mnist_test[0][:500],
        y_val=mnist_test[1][:500],
        progress=False,
    )
    assert [r["epoch"] for r in history.epochs] == [1, 2, 3, 4]
    assert history.epochs[-1]["val_accuracy"] >= 0.8
    assert not model.training


def test_cli_trains_a_tiny_model_end_to_end(tmp_path):
    command = [
        sys.executable,
        "-m",
        "helpers.train",
        "--name",
        "tiny",
        "--out",
        str(tmp_path),
        "--recipe",
        "robust",
        "--eps",
        "0.1",
        "--epochs",
        "1",
        "--width",
        "4",
        "--limit",
        "256",
        "--eval-limit",
        "100",
        "--eval-attack",
        "linf:0.1:0.02:5",
        "--device",
        "cpu",
        "--quiet",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["command"].startswith("python -m helpers.train --name tiny")
    assert card["train_images"] == 256 and card["test_images"] == 100
    assert card["training"] == asdict(robust_recipe(0.1, epochs=1))  # the recipe, with --epochs overriding it
    assert len(card["history"]) == 1
    assert card["robust_accuracy"][0]["eps"] == 0.1 and card["robust_accuracy"][0]["steps"] == 5
    model = load_pretrained("tiny", device="cpu", directory=tmp_path)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_mixed_precision_and_channels_last_training_learns_on_the_cpu(mnist_train, mnist_test):
    """The GPU options (bfloat16 autocast, NHWC layout) at a small size on the CPU: the model
    learns as in float32, autocast is in effect (the weights differ), the weights stay float32."""
    heads = []
    for gpu_options in (False, True):
        set_seed(0)
        model = MnistCNN(width=8, rep_dim=32)
        config = TrainConfig(epochs=3, batch_size=32, mixed_precision=gpu_options, channels_last=gpu_options)
        history = train(
            model,
            mnist_train[0][:1000],
            mnist_train[1][:1000],
            config,
            x_val=mnist_test[0][:300],
            y_val=mnist_test[1][:300],
            progress=False,
        )
        assert history.epochs[-1]["val_accuracy"] >= 0.7, gpu_options
        heads.append(model.head.weight.detach().clone())
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not torch.allclose(heads[0], heads[1], atol=1e-3)  # bfloat16 rounding changed the run


def test_channels_last_changes_the_layout_not_the_training(mnist_train):
    x, y = mnist_train[0][:256], mnist_train[1][:256]
    weights = []
    for channels_last in (False, True):
        set_seed(0)
        model = MnistCNN(width=8, rep_dim=32)
        train(
            model,
            x,
            y,
            TrainConfig(method="pgd", eps=0.1, steps=2, epochs=1, batch_size=64, channels_last=channels_last),
            progress=False,
        )
        weights.append([p.detach().clone() for p in model.parameters()])
    for plain, nhwc in zip(*weights):
        torch.testing.assert_close(nhwc, plain, rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(not CIFAR_SUBSET.is_dir(), reason="the shared CIFAR-10 subset is not beside the repo")
def test_cli_cifar10_gpu_recipe_runs_at_a_small_size_on_the_cpu(tmp_path):
    command = [
        sys.executable,
        "-m",
        "helpers.train",
        "--name",
        "tiny_cifar",
        "--out",
        str(tmp_path),
        "--recipe",
        "cifar10-fast",
        "--root",
        str(CIFAR_SUBSET),
        "--width",
        "8",
        "--blocks",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--limit",
        "64",
        "--eval-limit",
        "32",
        "--device",
        "cpu",
        "--quiet",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    card = json.loads((tmp_path / "tiny_cifar.json").read_text())
    assert card["dataset"] == "cifar10" and card["architecture_kwargs"] == {"width": 8, "blocks": 1}
    training = card["training"]
    assert training["mixed_precision"] and training["channels_last"] and training["method"] == "pgd"
    assert training["eps"] == pytest.approx(8 / 255) and training["epochs"] == 1 and training["batch_size"] == 32
    [attack] = card["robust_accuracy"]
    assert attack["eps"] == pytest.approx(8 / 255, abs=1e-6) and attack["steps"] == 20
    assert load_pretrained("tiny_cifar", device="cpu", directory=tmp_path)(torch.rand(2, 3, 32, 32)).shape == (2, 10)
