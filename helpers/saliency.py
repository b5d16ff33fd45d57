"""Saliency maps: gradients, SmoothGrad, integrated gradients, and two ways to judge them.

A saliency map attributes a classifier's score for one class to the input pixels. Every
map here explains the *logit* of a target class (by default the class the model predicts
for the clean input) and is signed, with the input's shape N x C x H x W: display
transforms (absolute value, maximum over channels, clipping at a percentile) belong to
the plotting code.

- ``gradient``: d logit / d x (Simonyan et al. 2014);
- ``smoothgrad``: gradients averaged over noisy copies of the input (Smilkov et al. 2017);
- ``integrated_gradients``: gradients averaged along the straight path from a baseline,
  times ``x - baseline`` (Sundararajan et al. 2017);
- ``sanity_check``: the model-parameter randomization test (Adebayo et al. 2018): a map
  that barely changes when the weights are re-initialized does not explain the model;
- ``foreground_share``: how much of a map's mass falls on the digit strokes.

The target of every method is ``None`` (the predicted class), an ``int`` (that class for
every image) or an int64 tensor of shape (N,) (one class per image).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from .attacks import predict
from .utils import batches, check_images, check_labels, eval_mode, model_device

Target = int | torch.Tensor | None
SaliencyMethod = Callable[[nn.Module, torch.Tensor, Target], torch.Tensor]


def resolve_targets(model: nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
    """The class whose logit each image's map explains: int64 (N,) on ``x``'s device.

    ``None``: the model's predicted class; an ``int``: that class for every image; a
    tensor: one class per image (returned as a copy).
    """
    check_images(x)
    if target is None:
        return predict(model, x).argmax(dim=1)
    if isinstance(target, int) and not isinstance(target, bool):
        targets = torch.full((x.shape[0],), target, dtype=torch.int64, device=x.device)
    elif isinstance(target, torch.Tensor):
        check_labels(target, x.shape[0], name="target")
        targets = target.to(device=x.device, dtype=torch.int64, copy=True)
    else:
        raise TypeError(f"target must be None, an int or an int64 tensor of shape (N,), got {type(target).__name__}")
    if targets.numel() and targets.min().item() < 0:
        raise ValueError(f"target classes must be >= 0, got {targets.min().item()}")
    return targets


def gradient(
    model: nn.Module, x: torch.Tensor, target: Target = None, *, batch_size: int | None = None
) -> torch.Tensor:
    """Vanilla gradient saliency: the derivative of the target logit with respect to each pixel.

    Args:
        model: classifier on N x C x H x W images in [0, 1] (eval mode during the call,
            every module's mode restored afterwards).
        x: images, N x C x H x W in [0, 1] (not modified).
        target: None (predicted class), an int, or int64 (N,) classes.
        batch_size: images per forward/backward pass (None: all at once).

    Returns:
        ``d logit_target(x) / d x``, signed, with ``x``'s shape, on ``x``'s device.
    """
    targets = resolve_targets(model, x, target)
    return _gradients(model, x, targets, batch_size)


def smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    noise_level: float = 0.15,
    n: int = 50,
    batch_size: int | None = None,
    squared: bool = False,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """SmoothGrad: the gradient averaged over ``n`` noisy copies ``x + N(0, sigma^2)``.

    ``sigma = noise_level * (value_range[1] - value_range[0])``: 0.15 on [0, 1] images,
    the middle of the 10-20% that Smilkov et al. (2017) recommend. The noisy copies are
    not clamped to the image range (clamping would bias the noise at black and white
    pixels). The target is fixed from the clean input.

    Args:
        model, x, target: as in ``gradient``.
        noise_level: noise standard deviation as a share of the value range (>= 0).
        n: number of noisy copies per image (>= 1).
        batch_size: noisy copies per forward/backward pass (None: all ``n * N`` at once).
            The noise is drawn all at once before any pass (``n`` times ``x``'s memory),
            so the result does not depend on ``batch_size``.
        squared: average the squared gradients (SmoothGrad-Squared) instead.
        value_range: the range of the pixel values, (low, high).

    Returns:
        The mean (squared) gradient, with ``x``'s shape, on ``x``'s device. Seed with
        ``helpers.utils.set_seed`` for a reproducible map.
    """
    _check_positive_int("n", n)
    low, high = value_range
    if not (math.isfinite(noise_level) and noise_level >= 0):
        raise ValueError(f"noise_level must be a finite number >= 0, got {noise_level!r}")
    if not high > low:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    targets = resolve_targets(model, x, target)
    sigma = noise_level * (high - low)
    noisy = x.unsqueeze(0) + sigma * torch.randn((n, *x.shape), dtype=x.dtype, device=x.device)
    grads = _gradients(model, noisy.flatten(0, 1), targets.repeat(n), batch_size).view(n, *x.shape)
    return (grads.square() if squared else grads).mean(dim=0)


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    baseline: torch.Tensor | None = None,
    steps: int = 50,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Integrated gradients: ``(x - baseline)`` times the gradient averaged along the path.

    The path integral ``int_0^1 grad f(baseline + a (x - baseline)) da`` is taken with the
    midpoint rule at ``a = (k + 1/2) / steps``, k = 0 .. steps - 1. The attributions then
    satisfy completeness: for each image they sum to ``f(x) - f(baseline)`` (target logit)
    up to the rule's error, which falls like ``1 / steps^2`` for a smooth model.

    Args:
        model, x, target: as in ``gradient``.
        baseline: the reference input ("absence of signal"), in [0, 1], broadcastable to
            ``x`` (e.g. 1 x C x H x W); default: black images (zeros).
        steps: number of points on the path (>= 1).
        batch_size: path points per forward/backward pass (None: all ``steps * N`` at once).

    Returns:
        Attributions with ``x``'s shape, on ``x``'s device.
    """
    _check_positive_int("steps", steps)
    targets = resolve_targets(model, x, target)
    if baseline is None:
        baseline = torch.zeros_like(x)
    check_images(baseline, "baseline")
    try:
        baseline = baseline.to(x.device).expand_as(x)
    except RuntimeError as error:
        raise ValueError(
            f"baseline of shape {tuple(baseline.shape)} does not broadcast to x's {tuple(x.shape)}"
        ) from error
    fractions = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
    path = baseline + fractions.view(-1, 1, 1, 1, 1) * (x - baseline)  # steps x N x C x H x W
    grads = _gradients(model, path.flatten(0, 1), targets.repeat(steps), batch_size).view(steps, *x.shape)
    return (x - baseline) * grads.mean(dim=0)


def _gradients(model: nn.Module, points: torch.Tensor, targets: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    """Gradients of the target logits at ``points`` (M x C x H x W), batch by batch, on ``points``' device."""
    device = model_device(model)
    grads = torch.empty_like(points)
    with eval_mode(model), torch.enable_grad():
        for chunk in batches(points.shape[0], batch_size):
            xb = points[chunk].detach().to(device).requires_grad_(True)
            logits = model(xb)
            tb = targets[chunk].to(device)
            if tb.numel() and tb.max().item() >= logits.shape[1]:
                raise ValueError(f"target class {tb.max().item()} is out of range for {logits.shape[1]} classes")
            (grad,) = torch.autograd.grad(logits.gather(1, tb.unsqueeze(1)).sum(), xb)
            grads[chunk] = grad.to(points.device)
    return grads


@dataclass(frozen=True)
class RandomizationRecord:
    """One step of the cascading randomization test.

    ``layer``: the module just re-initialized (every layer above it already is);
    ``spearman`` / ``spearman_abs``: rank correlation between the trained model's maps and
    the randomized model's, signed / of absolute values, per image, averaged over images
    (1: the map did not change; near 0: unrelated); ``saliency``: the randomized model's maps.
    """

    layer: str
    spearman: float
    spearman_abs: float
    saliency: torch.Tensor = field(repr=False)


def cascade_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters and can re-initialize them, top layer first.

    The order is the reverse of the modules' registration order; for the course's models
    that runs from ``head`` down to the first convolution.
    """
    return [
        name
        for name, module in reversed(list(model.named_modules()))
        if hasattr(module, "reset_parameters") and list(module.parameters(recurse=False))
    ]


def sanity_check(
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    method: SaliencyMethod = gradient,
    layers: Sequence[str] | None = None,
) -> list[RandomizationRecord]:
    """Model-parameter randomization test (Adebayo et al. 2018), cascading from the top.

    On a deep copy of ``model`` (the caller's model is untouched), re-initializes the
    layers one after another, from the head downwards (each with its own
    ``reset_parameters``, so seed with ``set_seed`` for reproducible weights), and after
    each one compares the maps of the randomized copy with those of the trained model by
    Spearman rank correlation. A trustworthy method's maps decorrelate quickly; maps that
    stay similar reflect the input (e.g. edges) rather than what the model learned. For
    ``gradient`` on ``mnist_standard`` (50 test digits) the signed / absolute correlations
    fall to 0.08 / 0.57 after the head alone, and to -0.01 / 0.12 after every layer.

    Args:
        model, x, target: as in ``gradient``; the targets are fixed from the trained model,
            so every map explains the same class.
        method: ``method(model, x, target) -> map`` (``x``'s shape), e.g. ``gradient`` or
            ``functools.partial(smoothgrad, n=20)``.
        layers: module names to randomize, in cascade order; default ``cascade_layers(model)``.

    Returns:
        One ``RandomizationRecord`` per layer, in cascade order.
    """
    check_images(x)
    names = cascade_layers(model) if layers is None else list(layers)
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules or not hasattr(modules[name], "reset_parameters"):
            raise ValueError(
                f"{name!r} is not a module of the model with reset_parameters; choose from {cascade_layers(model)}"
            )
    targets = resolve_targets(model, x, target)
    original = method(model, x, targets)
    randomized = copy.deepcopy(model)
    records = []
    for name in names:
        randomized.get_submodule(name).reset_parameters()
        maps = method(randomized, x, targets)
        records.append(
            RandomizationRecord(name, mean_spearman(original, maps), mean_spearman(original.abs(), maps.abs()), maps)
        )
    return records


def mean_spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation between ``a[i]`` and ``b[i]`` (flattened), averaged over i.

    NaN when a map is constant (its ranks are undefined).
    """
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.detach().flatten(1).cpu().numpy(), b.detach().flatten(1).cpu().numpy()
    return float(np.mean([spearmanr(u, v).statistic for u, v in zip(a, b)]))


def foreground_share(
    saliency: torch.Tensor, x: torch.Tensor, *, threshold: float = 0.1, relative: bool = False
) -> torch.Tensor:
    """Share of each map's absolute mass that falls on the foreground (the digit's strokes).

    The foreground is the pixels where some channel of ``x`` exceeds ``threshold`` (the
    default 0.1 keeps the strokes' soft edges); a map's mass at a pixel is the sum over
    channels of ``|saliency|``. Chance level is the foreground's share of the pixels
    (0.18 on average for MNIST digits at threshold 0.1; 0.13 at 0.5): the share that a
    map spread evenly, or at random, over the image would get. Human-aligned maps
    concentrate on the strokes and score well above it; e.g. on 200 embedded MNIST test
    digits the gradients of ``mnist_l2_robust`` put 0.70 of their mass on the strokes
    (4.3 times chance), those of ``mnist_standard`` 0.46 (2.7 times chance).
    Integrated gradients from a black baseline score high by construction: they are
    ``x`` times an average gradient, so zero wherever the image is black.

    Args:
        saliency: maps, N x C x H x W (any sign), e.g. from ``gradient``.
        x: the images they explain, N x C x H x W in [0, 1].
        threshold: pixel value above which a pixel is foreground.
        relative: divide by chance level (1: chance; 2: twice as concentrated as chance).

    Returns:
        (N,) shares in [0, 1] (or ratios to chance when ``relative``), on ``saliency``'s
        device; NaN for a map that is zero everywhere (or an image without foreground,
        when ``relative``).
    """
    check_images(x)
    if saliency.shape != x.shape:
        raise ValueError(f"saliency must have x's shape {tuple(x.shape)}, got {tuple(saliency.shape)}")
    mass = saliency.detach().abs().sum(dim=1).flatten(1)  # N x (H W)
    foreground = (x.amax(dim=1) > threshold).flatten(1).to(mass.device, mass.dtype)
    share = (mass * foreground).sum(dim=1) / mass.sum(dim=1)
    return share / foreground.mean(dim=1) if relative else share


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
