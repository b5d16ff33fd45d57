"""Shared fixtures: small deterministic models and the embedded MNIST splits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers.data import load_dataset
from helpers.utils import set_seed

ROOT = Path(__file__).resolve().parent.parent
CIFAR_SUBSET = Path(os.environ.get("PRACTICUM_CIFAR_SUBSET", ROOT.parent / "shared" / "data" / "cifar10-subset"))

torch.set_num_threads(1)  # the course models are small: a second thread mostly adds contention


class LinearClassifier(nn.Module):
    """logits = W flatten(x) + b: gradients and worst cases have closed forms."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


@pytest.fixture
def linear_model() -> LinearClassifier:
    """A 3-class linear classifier on 1 x 4 x 4 images, with fixed random weights."""
    set_seed(0)
    return LinearClassifier(torch.randn(3, 16), torch.randn(3))


@pytest.fixture
def images() -> torch.Tensor:
    """Eight random 1 x 4 x 4 images in [0, 1], some pixels exactly 0 or 1."""
    set_seed(1)
    x = torch.rand(8, 1, 4, 4)
    x[:, :, 0, 0] = 0.0
    x[:, :, 0, 1] = 1.0
    return x


@pytest.fixture(scope="session")
def mnist_train() -> tuple[torch.Tensor, torch.Tensor]:
    return load_dataset("mnist", "train")


@pytest.fixture(scope="session")
def mnist_test() -> tuple[torch.Tensor, torch.Tensor]:
    return load_dataset("mnist", "test")
