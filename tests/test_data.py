"""Datasets: shapes, ranges, the embedded split, the CIFAR-10 ImageFolder path, clear errors."""

from __future__ import annotations

import pytest
import torch
from conftest import CIFAR_SUBSET

from helpers.data import CIFAR10_CLASSES, class_names, load_dataset


def test_embedded_mnist_split_is_stratified_disjoint_and_deterministic(mnist_train, mnist_test):
    (x, y), (xt, yt) = mnist_train, mnist_test
    assert x.shape == (4000, 1, 28, 28) and xt.shape == (1000, 1, 28, 28)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() == 0 and x.max() == 1
    assert torch.equal(y.bincount(), torch.full((10,), 400)) and torch.equal(yt.bincount(), torch.full((10,), 100))
    train_rows = {row.numpy().tobytes() for row in x.flatten(1)}
    assert not any(row.numpy().tobytes() in train_rows for row in xt.flatten(1))
    again, _ = load_dataset("mnist", "test")
    assert torch.equal(again, xt)
    assert len(set(yt[:20].tolist())) >= 6  # shuffled: the first images show a mix of classes


def test_load_dataset_returns_copies():
    x, _ = load_dataset("mnist", "test")
    x.zero_()
    assert load_dataset("mnist", "test")[0].max() == 1


@pytest.mark.skipif(not CIFAR_SUBSET.is_dir(), reason="the shared CIFAR-10 subset is not beside the repo")
@pytest.mark.parametrize("split,count", [("train", 1000), ("test", 200)])
def test_cifar10_image_folder_subset(split, count):
    x, y = load_dataset("cifar10", split, root=CIFAR_SUBSET)
    assert x.shape == (10 * count, 3, 32, 32) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1 and x.std() > 0.1
    assert torch.equal(y.bincount(), torch.full((10,), count))
    assert class_names("cifar10") == CIFAR10_CLASSES
    assert class_names("cifar10")[y[0]] in CIFAR10_CLASSES


def test_offline_without_local_data_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="ImageFolder"):
        load_dataset("cifar10", "train", root=tmp_path, download=False)
    with pytest.raises(RuntimeError, match="embedded"):
        load_dataset("mnist", "train", root=tmp_path, download=False)


def test_image_folder_with_other_classes_is_refused(tmp_path):
    from PIL import Image

    for name in ("cats", "dogs"):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(tmp_path / "train" / name / "0.png")
    with pytest.raises(ValueError, match="CIFAR-10 needs exactly"):
        load_dataset("cifar10", "train", root=tmp_path)


def test_bad_names_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="split"):
        load_dataset("mnist", "validation")
    assert class_names("mnist") == tuple("0123456789")
