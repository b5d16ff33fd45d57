"""FGSM and PGD under L-inf and L2 threat models, and clean / robust accuracy.

One PGD loop serves every attack in the course. A threat model is three small pieces:
a random start inside the ball, a step direction of unit norm, and a projection back
onto the ball. The loop ascends a per-example objective (cross-entropy by default, any
``loss_fn`` otherwise), clamps every iterate to the image range [0, 1], and keeps, over
restarts, each example's worst case. ``helpers.features`` reuses it for feature
visualization and representation inversion.

Images are N x C x H x W with pixels in [0, 1]; ``eps`` and ``alpha`` are in pixel units.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .utils import batches, check_images, check_labels, eval_mode, model_device

# loss_fn(model, x, y) -> one value per example (shape N) that the attack ascends.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor]
Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _norms(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norms of an N x ... tensor, shaped N x 1 x ... x 1 for broadcasting."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


@dataclass(frozen=True)
class LinfBall:
    """The L-inf ball ``max_i |delta_i| <= eps``."""

    def random_start(self, x: torch.Tensor, eps: float) -> torch.Tensor:
        """Uniform in the box [-eps, eps]^d."""
        return torch.empty_like(x).uniform_(-eps, eps)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        """Steepest ascent direction of unit L-inf norm: the sign of the gradient."""
        return grad.sign()

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        """Nearest point of the ball: clip each coordinate to [-eps, eps]."""
        return delta.clamp(-eps, eps)


@dataclass(frozen=True)
class L2Ball:
    """The L2 ball ``||delta||_2 <= eps`` (per example)."""

    def random_start(self, x: torch.Tensor, eps: float) -> torch.Tensor:
        """Uniform in the ball: a uniform direction times a radius eps * U^(1/d)."""
        direction = torch.randn_like(x)
        direction = direction / _norms(direction).clamp_min(1e-12)
        dims = x[0].numel()
        radius = eps * torch.rand(x.shape[0], device=x.device, dtype=x.dtype).pow(1.0 / dims)
        return direction * radius.view(-1, *([1] * (x.dim() - 1)))

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        """Steepest ascent direction of unit L2 norm: the normalized gradient."""
        return grad / _norms(grad).clamp_min(1e-12)

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        """Nearest point of the ball: rescale deltas longer than eps to length eps."""
        return delta * (eps / _norms(delta).clamp_min(1e-12)).clamp(max=1.0)


THREAT_MODELS = {"linf": LinfBall(), "l2": L2Ball()}


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy of the model's logits against labels ``y`` (shape N)."""
    return F.cross_entropy(model(x), y, reduction="none")


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    *,
    eps: float,
    alpha: float,
    steps: int,
    norm: str = "linf",
    targeted: bool = False,
    random_start: bool = True,
    restarts: int = 1,
    loss_fn: LossFn | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Projected gradient descent (Madry et al. 2018) in the ``norm`` ball of radius ``eps``.

    Each step moves ``alpha`` along the threat model's steepest-ascent direction of the
    objective, projects the perturbation onto the ball and clamps the image to [0, 1].

    Args:
        model: classifier taking N x C x H x W images in [0, 1]; put in eval mode during
            the attack, every module's mode restored afterwards.
        x: clean images, N x C x H x W in [0, 1] (not modified).
        y: int64 labels (N,): the true classes, or the target classes if ``targeted``.
            May be None with a ``loss_fn`` that ignores it.
        eps: radius of the ball, in pixel units (L-inf: per pixel; L2: per image).
        alpha: step length in the same units.
        steps: number of gradient steps (0 returns the random start).
        norm: ``"linf"`` or ``"l2"``.
        targeted: descend the objective (towards the targets ``y``) instead of ascending it.
        random_start: start uniformly at random in the ball rather than at ``x``.
        restarts: independent runs; each example keeps its worst case (a successful attack
            first, then the highest objective).
        loss_fn: ``loss_fn(model, x_adv, y) -> (N,)`` per-example objective; default:
            cross-entropy of the logits.
        batch_size: attack this many examples at a time (None: all at once).
        progress: show a progress bar over batches.

    Returns:
        ``x_adv`` with ``x``'s shape, dtype and device, pixels in [0, 1] and
        ``||x_adv - x|| <= eps`` in the chosen norm.
    """
    check_images(x)
    if y is None and loss_fn is None:
        raise ValueError("y (labels or targets) is required unless a loss_fn is given")
    if y is not None:
        check_labels(y, x.shape[0])
    if norm not in THREAT_MODELS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {sorted(THREAT_MODELS)}")
    _check_number("eps", eps)
    _check_number("alpha", alpha)
    _check_count("steps", steps, minimum=0)
    _check_count("restarts", restarts, minimum=1)
    threat = THREAT_MODELS[norm]
    device = model_device(model)
    sign = -1.0 if targeted else 1.0
    objective = loss_fn or cross_entropy
    x_adv = torch.empty_like(x)
    chunks = list(batches(x.shape[0], batch_size))
    with eval_mode(model), torch.enable_grad():
        for chunk in tqdm(chunks, desc="PGD", disable=not progress, leave=False):
            xb = x[chunk].to(device)
            yb = y[chunk].to(device) if y is not None else None
            x_adv[chunk] = _pgd_restarts(
                model,
                xb,
                yb,
                threat,
                float(eps),
                float(alpha),
                steps,
                sign,
                random_start,
                restarts,
                objective,
                track_success=loss_fn is None,
            )
    return x_adv


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    targeted: bool = False,
    loss_fn: LossFn | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): ``clamp(x + eps * sign(grad), 0, 1)``.

    One L-inf step of length ``eps`` from ``x`` (no random start); arguments as in ``pgd``.
    """
    return pgd(
        model,
        x,
        y,
        eps=eps,
        alpha=eps,
        steps=1,
        norm="linf",
        targeted=targeted,
        random_start=False,
        loss_fn=loss_fn,
        batch_size=batch_size,
    )


def _pgd_restarts(model, x, y, threat, eps, alpha, steps, sign, random_start, restarts, objective, track_success):
    best = None
    for _ in range(restarts):
        candidate = _pgd_run(model, x, y, threat, eps, alpha, steps, sign, random_start, objective)
        if restarts == 1:
            return candidate
        with torch.no_grad():
            score = sign * objective(model, candidate, y)
            if track_success:
                predictions = model(candidate).argmax(dim=1)
                success = predictions == y if sign < 0 else predictions != y
                score = score + success.to(score.dtype) * 1e6  # any success beats any failure
        if best is None:
            best, best_score = candidate, score
        else:
            better = score > best_score
            best = torch.where(better.view(-1, *([1] * (x.dim() - 1))), candidate, best)
            best_score = torch.maximum(score, best_score)
    return best


def _pgd_run(model, x, y, threat, eps, alpha, steps, sign, random_start, objective):
    x_adv = (x + threat.random_start(x, eps)).clamp_(0, 1) if random_start else x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = objective(model, x_adv, y)
        (grad,) = torch.autograd.grad(loss.sum(), x_adv)
        with torch.no_grad():
            x_adv = x_adv + (sign * alpha) * threat.direction(grad)
            x_adv = (x + threat.project(x_adv - x, eps)).clamp_(0, 1)
    return x_adv.detach()


def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """Logits (N x classes, on ``x``'s device) of ``model`` in eval mode, computed batch by batch."""
    check_images(x)
    device = model_device(model)
    with eval_mode(model), torch.no_grad():
        return torch.cat([model(x[chunk].to(device)).to(x.device) for chunk in batches(x.shape[0], batch_size)])


def accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    attack: Attack | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> float:
    """Share of examples classified correctly, clean or under ``attack``.

    ``attack(model, x, y) -> x_adv`` is any attack, e.g.
    ``functools.partial(pgd, eps=0.3, alpha=0.01, steps=40)`` for robust accuracy.
    Batches of ``batch_size`` examples are moved to the model's device one at a time.
    """
    check_images(x)
    check_labels(y, x.shape[0])
    device = model_device(model)
    correct = 0
    with eval_mode(model):
        for chunk in tqdm(list(batches(x.shape[0], batch_size)), desc="accuracy", disable=not progress, leave=False):
            xb, yb = x[chunk].to(device), y[chunk].to(device)
            if attack is not None:
                xb = attack(model, xb, yb)
            with torch.no_grad():
                correct += (model(xb).argmax(dim=1) == yb).sum().item()
    return correct / max(x.shape[0], 1)


def _check_number(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (in pixel units), got {value!r}")


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
