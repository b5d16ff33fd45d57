"""The course's models and their shipped checkpoints.

Every model takes images with pixels in [0, 1] and normalizes them with its own first
layer (``Normalize``), so attacks and attributions work in pixel space. Every model
exposes ``representation(x)``, the penultimate layer (after its ReLU / pooling), and
``head``, the final linear layer: ``model(x) == model.head(model.representation(x))``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from .utils import best_device

MODELS_DIR = Path(__file__).resolve().parent.parent / "data" / "models"
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` as a layer, so the model's input stays in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """A model made of ``normalize`` -> ``features`` [= representation] -> ``head`` [= logits];
    subclasses build the three modules."""

    normalize: Normalize
    features: nn.Module
    head: nn.Linear

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """N x C x H x W in [0, 1] -> N x D, the penultimate layer (see the class for D)."""
        return self.features(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.representation(x))


class MnistCNN(Classifier):
    """Small CNN for 1 x 28 x 28 digits.

    Normalize -> conv3x3(width) -> ReLU -> conv3x3(2 width, stride 2) -> ReLU
    -> conv3x3(2 width, stride 2) -> ReLU -> flatten (2 width x 7 x 7)
    -> linear(rep_dim) -> ReLU  [= representation, ``rep_dim`` values >= 0]
    -> linear(num_classes)  [= head, logits].
    """

    def __init__(self, num_classes: int = 10, width: int = 32, rep_dim: int = 256):
        super().__init__()
        self.normalize = Normalize(MNIST_MEAN, MNIST_STD)
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, rep_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(rep_dim, num_classes)


class PoolCNN(Classifier):
    """The classic small CNN: 5 x 5 convolutions and max pooling (as in Madry et al.'s MNIST
    challenge model, whose fully connected layer has 1024 units).

    Normalize -> conv5x5(width) -> ReLU -> maxpool 2 -> conv5x5(2 width) -> ReLU -> maxpool 2
    -> flatten (2 width x size/4 x size/4) -> linear(rep_dim) -> ReLU  [= representation]
    -> linear(num_classes)  [= head, logits].

    Notebook 04's source and fresh models: measured with standard training without
    augmentation, a fresh model of this design learns the features that targeted attacks plant
    where the course's strided ``MnistCNN`` and the batch-normalized ``CifarResNet`` mostly
    learn the visible image (MNIST D_det, 2,000 digits: 46% against 32%; cats vs dogs on the
    shared CIFAR-10 subset: 64% against 52%).
    """

    def __init__(self, mean, std, size: int, num_classes: int = 10, width: int = 32, rep_dim: int = 256):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(len(mean), width, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * (size // 4) ** 2, rep_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(rep_dim, num_classes)


class MnistPoolCNN(PoolCNN):
    """``PoolCNN`` for 1 x 28 x 28 digits (``"mnist_pool_cnn"``)."""

    def __init__(self, num_classes: int = 10, width: int = 32, rep_dim: int = 256):
        super().__init__(MNIST_MEAN, MNIST_STD, 28, num_classes, width, rep_dim)


class CifarPoolCNN(PoolCNN):
    """``PoolCNN`` for 3 x 32 x 32 CIFAR-10 images (``"cifar_pool_cnn"``)."""

    def __init__(self, num_classes: int = 10, width: int = 32, rep_dim: int = 256):
        super().__init__(CIFAR10_MEAN, CIFAR10_STD, 32, num_classes, width, rep_dim)


class PreActBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016): BN-ReLU-conv, twice, plus a shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if not isinstance(self.shortcut, nn.Identity) else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class CifarResNet(Classifier):
    """Small pre-activation ResNet for 3 x 32 x 32 images.

    Normalize -> conv3x3(width) -> stages of ``blocks`` residual blocks with width,
    2 width, 4 width channels at 32, 16, 8 pixels -> BN -> ReLU -> global average pool
    [= representation, 4 width values >= 0] -> linear(num_classes) [= head].
    """

    def __init__(self, num_classes: int = 10, width: int = 32, blocks: int = 1):
        super().__init__()
        self.normalize = Normalize(CIFAR10_MEAN, CIFAR10_STD)
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1, bias=False)]
        channels = width
        for stage, out_channels in enumerate((width, 2 * width, 4 * width)):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(PreActBlock(channels, out_channels, stride))
                channels = out_channels
        layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "mnist_cnn": MnistCNN,
    "mnist_pool_cnn": MnistPoolCNN,
    "cifar_resnet": CifarResNet,
    "cifar_pool_cnn": CifarPoolCNN,
}
DEFAULT_ARCHITECTURE = {"mnist": "mnist_cnn", "cifar10": "cifar_resnet"}


def build_model(architecture: str, **kwargs) -> nn.Module:
    """A freshly initialized model: ``"mnist_cnn"``, ``"mnist_pool_cnn"``, ``"cifar_resnet"`` or
    ``"cifar_pool_cnn"`` (kwargs go to its class)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](**kwargs)


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(model: nn.Module, name: str, card: dict, directory: str | Path = MODELS_DIR) -> Path:
    """Write ``name.pt`` (the state_dict only) and ``name.json`` (the card, with the sha256).

    ``card`` must hold ``architecture`` and may hold ``architecture_kwargs``; the
    file's size and SHA-256 are added. Returns the checkpoint's path.
    """
    if "architecture" not in card:
        raise ValueError("the card must name the model's architecture")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pt"
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    torch.save(state, path)
    card = {"name": name, **card, "file": path.name, "size_bytes": path.stat().st_size, "sha256": sha256(path)}
    (directory / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return path


def list_pretrained(directory: str | Path = MODELS_DIR) -> list[str]:
    """Names of the checkpoints that have a card in ``directory``."""
    return sorted(path.stem for path in Path(directory).glob("*.json"))


def load_card(name: str, directory: str | Path = MODELS_DIR) -> dict:
    """The JSON card of a shipped checkpoint: dataset, architecture, command, accuracies, sha256."""
    path = Path(directory) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint named {name!r} in {directory}; available: {list_pretrained(directory)}")
    return json.loads(path.read_text())


def load_pretrained(
    name: str, *, device: str | torch.device | None = None, directory: str | Path = MODELS_DIR
) -> nn.Module:
    """A shipped checkpoint, verified against its card's SHA-256, in eval mode.

    Args:
        name: e.g. ``"mnist_standard"``, ``"mnist_linf_robust"``, ``"mnist_l2_robust"``
            (see ``list_pretrained()``).
        device: where to put the model; default ``best_device()`` (CUDA when present).
    """
    card = load_card(name, directory)
    path = Path(directory) / card["file"]
    digest = sha256(path)
    if digest != card["sha256"]:
        raise RuntimeError(
            f"{path} has SHA-256 {digest}, but its card says {card['sha256']}: the file is corrupt or "
            "was replaced (a Git LFS pointer?); restore it with `git checkout -- data/models`"
        )
    model = build_model(card["architecture"], **card.get("architecture_kwargs", {}))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device if device is not None else best_device()).eval()
