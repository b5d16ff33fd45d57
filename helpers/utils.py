"""Seeds, devices, input validation and model-mode handling shared by the package."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

# Slack for pixel values that came through float arithmetic (e.g. 255 / 255).
RANGE_TOLERANCE = 1e-5


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's (CPU and CUDA) random number generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def best_device() -> torch.device:
    """CUDA when available, else the CPU. ``PRACTICUM_DEVICE`` overrides (e.g. ``cpu``)."""
    if "PRACTICUM_DEVICE" in os.environ:
        return torch.device(os.environ["PRACTICUM_DEVICE"])
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def check_images(x: torch.Tensor, name: str = "x") -> None:
    """Raise a clear error unless ``x`` is a float N x C x H x W batch with pixels in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{name} must be a batch of images N x C x H x W, got shape {tuple(x.shape)}; "
            "for a single image use x.unsqueeze(0)"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must hold floats in [0, 1], got dtype {x.dtype}; use x.float() / 255 for bytes")
    if x.numel() == 0:
        return
    low, high = x.min().item(), x.max().item()
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        hint = (
            "it looks normalized (mean/std); pass raw pixels, normalization is a layer inside the model"
            if low < 0
            else "it looks like 0-255 pixels; divide by 255"
        )
        raise ValueError(f"{name} must have pixels in [0, 1], found values in [{low:.3g}, {high:.3g}]: {hint}")


def check_labels(y: torch.Tensor, n: int, name: str = "y") -> None:
    """Raise a clear error unless ``y`` is an integer vector of length ``n``."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the images, got {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module of ``model`` in eval mode, and restore each one's mode on exit."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def batches(n: int, batch_size: int | None) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)``, ``batch_size`` long (all at once for None)."""
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size}")
    step = n if batch_size is None else batch_size
    for start in range(0, n, max(step, 1)):
        yield slice(start, min(start + step, n))
