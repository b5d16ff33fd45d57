"""Architectures and shipped checkpoints: weights-only loading, SHA-256, cards, accuracy bands."""

from __future__ import annotations

import functools
import json
import shutil

import pytest
import torch
from conftest import CIFAR_SUBSET

from helpers import attacks
from helpers.data import load_dataset
from helpers.models import (
    MODELS_DIR,
    CifarResNet,
    MnistCNN,
    build_model,
    list_pretrained,
    load_card,
    load_pretrained,
    save_checkpoint,
    sha256,
)
from helpers.utils import set_seed

SHIPPED = list_pretrained()
REQUIRED = {"mnist_standard", "mnist_standard_seed1", "mnist_linf_robust", "mnist_l2_robust"}


def test_required_checkpoints_are_shipped():
    assert REQUIRED <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoint_loads_weights_only_and_matches_its_card(name, mnist_test):
    card = load_card(name)
    path = MODELS_DIR / card["file"]
    assert sha256(path) == card["sha256"]
    assert path.stat().st_size < 5 * 2**20  # a few MB at most
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(isinstance(value, torch.Tensor) for value in state.values())
    for key in ("dataset", "architecture", "command", "clean_accuracy", "robust_accuracy", "training"):
        assert key in card, key
    assert card["command"].startswith("python -m helpers.train ")
    model = load_pretrained(name, device="cpu")
    assert not model.training
    if card["dataset"] == "mnist":
        x, y = mnist_test
    elif CIFAR_SUBSET.is_dir():
        x, y = load_dataset("cifar10", "test", root=CIFAR_SUBSET)
    else:
        pytest.skip("the shared CIFAR-10 subset is not beside the repo")
    assert card["test_images"] == len(y)
    assert attacks.accuracy(model, x, y) == pytest.approx(card["clean_accuracy"], abs=0.002)


def robust_accuracy(model, x, y, *, norm, eps, alpha, steps=40):
    set_seed(0)
    return attacks.accuracy(
        model, x, y, attack=functools.partial(attacks.pgd, eps=eps, alpha=alpha, steps=steps, norm=norm), batch_size=500
    )


def test_standard_model_band(mnist_test):
    model = load_pretrained("mnist_standard", device="cpu")
    assert attacks.accuracy(model, *mnist_test) >= 0.97


@pytest.mark.slow
def test_linf_robust_model_band(mnist_test):
    """Issue targets: >= 94% clean, >= 60% under PGD-40 (alpha 0.01) at eps 0.3, >= 88% at 0.1
    (robust accuracy on the first 500 test digits; its card, on 1,000: 93.3 % and 96.9 %)."""
    x, y = mnist_test
    model = load_pretrained("mnist_linf_robust", device="cpu")
    assert attacks.accuracy(model, x, y) >= 0.94
    assert robust_accuracy(model, x[:500], y[:500], norm="linf", eps=0.3, alpha=0.01) >= 0.60
    assert robust_accuracy(model, x[:500], y[:500], norm="linf", eps=0.1, alpha=0.01) >= 0.88


@pytest.mark.slow
def test_l2_robust_model_is_robust_where_the_standard_one_is_not(mnist_test):
    x, y = mnist_test[0][:500], mnist_test[1][:500]
    robust = load_pretrained("mnist_l2_robust", device="cpu")
    standard = load_pretrained("mnist_standard", device="cpu")
    robust_acc = robust_accuracy(robust, x, y, norm="l2", eps=2.0, alpha=0.1)
    standard_acc = robust_accuracy(standard, x, y, norm="l2", eps=2.0, alpha=0.1)
    assert attacks.accuracy(robust, x, y) >= 0.94
    assert robust_acc >= 0.5 and robust_acc > standard_acc + 0.3, (robust_acc, standard_acc)


def test_tampered_checkpoint_is_refused(tmp_path):
    for suffix in (".pt", ".json"):
        shutil.copy(MODELS_DIR / f"mnist_standard{suffix}", tmp_path / f"mnist_standard{suffix}")
    with open(tmp_path / "mnist_standard.pt", "r+b") as handle:
        handle.seek(-100, 2)
        byte = handle.read(1)
        handle.seek(-100, 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(RuntimeError, match="SHA-256"):
        load_pretrained("mnist_standard", device="cpu", directory=tmp_path)
    with pytest.raises(FileNotFoundError, match="available"):
        load_pretrained("no_such_model", directory=tmp_path)


def test_save_and_load_round_trip(tmp_path):
    set_seed(0)
    model = MnistCNN(width=4, rep_dim=8)
    save_checkpoint(
        model, "tiny", {"architecture": "mnist_cnn", "architecture_kwargs": {"width": 4, "rep_dim": 8}}, tmp_path
    )
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["sha256"] == sha256(tmp_path / "tiny.pt")
    loaded = load_pretrained("tiny", device="cpu", directory=tmp_path)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded(x), model.eval()(x))


@pytest.mark.parametrize(
    "architecture,shape,rep_dim",
    [
        ("mnist_cnn", (2, 1, 28, 28), 256),
        ("mnist_pool_cnn", (2, 1, 28, 28), 256),
        ("cifar_resnet", (2, 3, 32, 32), 128),
        ("cifar_pool_cnn", (2, 3, 32, 32), 256),
    ],
)
def test_models_normalize_inside_and_expose_their_representation(architecture, shape, rep_dim):
    set_seed(0)
    model = build_model(architecture).eval()
    x = torch.rand(shape)
    rep = model.representation(x)
    assert rep.shape == (2, rep_dim) and (rep >= 0).all()
    assert torch.allclose(model.head(rep), model(x))
    mean, std = model.normalize.mean, model.normalize.std
    assert torch.allclose(model.normalize(x), (x - mean) / std)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vgg")


def test_cifar_resnet_blocks_and_width():
    model = CifarResNet(width=8, blocks=2)
    assert model.head.in_features == 32
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR_SUBSET.is_dir(), reason="the shared CIFAR-10 subset is not beside the repo")
def test_cifar10_l2_robust_model_is_robust_where_the_standard_one_is_not():
    x, y = (t[:300] for t in load_dataset("cifar10", "test", root=CIFAR_SUBSET))
    robust = load_pretrained("cifar10_l2_robust", device="cpu")
    standard = load_pretrained("cifar10_standard", device="cpu")
    robust_acc = robust_accuracy(robust, x, y, norm="l2", eps=0.25, alpha=0.0625, steps=10)
    standard_acc = robust_accuracy(standard, x, y, norm="l2", eps=0.25, alpha=0.0625, steps=10)
    assert robust_acc >= 0.40 and robust_acc > standard_acc + 0.15, (robust_acc, standard_acc)
