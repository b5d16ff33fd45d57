"""Figures for the practicum: image grids, saliency maps, attacks and training curves.

Every figure function draws in the course's style (``STYLE``, applied with ``style()``):
one-channel images in gray and RGB images as they are, both on the fixed range [0, 1];
saliency magnitudes in ``SALIENCY_CMAP``; signed maps and perturbations in the diverging
``SIGNED_CMAP`` (red positive, blue negative, white zero). Tensors may live on any device
and may require grad. Every figure function returns its matplotlib Figure.

Figures are made with pyplot, so a notebook shows each one when its cell ends. A figure
that is also the value of the cell's last line is shown twice: end that line with ``;``
or assign the result (``fig = plot.show_images(x)``).

The display transforms of saliency maps (absolute value, channel reduction, clipping at
a percentile) live here, in ``saliency_image``: attribution functions return raw maps.
``imshow`` draws a display array on an axes or redraws it in place, so ``draw_attack``
and the explorers of ``helpers.widgets`` update their figures without making new ones.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import PercentFormatter
from torch import nn

from .attacks import predict
from .utils import check_images

IMAGE_CMAP = "gray"
SALIENCY_CMAP = "inferno"
SIGNED_CMAP = "RdBu_r"
# Colormap and value range of each kind of display array (see ``imshow``).
KINDS = {"image": (IMAGE_CMAP, 0.0, 1.0), "abs": (SALIENCY_CMAP, 0.0, 1.0), "signed": (SIGNED_CMAP, -1.0, 1.0)}
NORM_LABELS = {"linf": r" ($L_\infty$)", "l2": r" ($L_2$)", None: ""}
PANEL_INCHES = 1.6  # side of one image panel
OVERLAY_BASE = 0.5  # brightness of the gray image under an overlaid map
WRONG_COLOR = "#D55E00"  # titles of changed or wrong predictions
# Okabe & Ito's palette: told apart with every common colour-vision deficiency.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
STYLE = {
    "figure.dpi": 100,
    "figure.constrained_layout.use": True,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "figure.titlesize": 11,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.prop_cycle": cycler(color=COLORS),
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "image.interpolation": "nearest",
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Apply ``STYLE`` inside the block, then restore those settings (and only those).

    Every figure function here draws inside it. Unlike ``plt.rc_context``, it leaves the
    other settings alone: the inline backend, loaded by a notebook's first figure, turns
    on interactive mode, which must survive the block for figures to be shown.
    """
    saved = {key: plt.rcParams[key] for key in STYLE}
    plt.rcParams.update(STYLE)
    try:
        yield
    finally:
        plt.rcParams.update(saved)


def _styled(function):
    @functools.wraps(function)
    def styled(*args, **kwargs):
        with style():
            return function(*args, **kwargs)

    return styled


def _numpy(values) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like as a float NumPy array."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().float().numpy()
    return np.asarray(values, dtype=np.float32)


def image_array(image: torch.Tensor) -> np.ndarray:
    """Display array of one image, C x H x W in [0, 1]: H x W (C = 1) or H x W x 3 (C = 3)."""
    array = _numpy(image)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ValueError(f"an image must be C x H x W with 1 or 3 channels, got shape {array.shape}")
    return np.clip(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0), 0.0, 1.0)


def _gray(array: np.ndarray) -> np.ndarray:
    """H x W gray version of an image display array (RGB: the mean of the channels)."""
    return array.mean(axis=-1) if array.ndim == 3 else array


def saliency_image(saliency, *, mode: str = "abs", reduce: str = "max", percentile: float = 99.0) -> np.ndarray:
    """Display array of one raw saliency map: H x W in [0, 1] (``"abs"``) or [-1, 1] (``"signed"``).

    Args:
        saliency: one map, C x H x W or H x W (a tensor on any device, or an array).
        mode: ``"abs"`` shows magnitudes ``|s|``; ``"signed"`` keeps the sign.
        reduce: how the channels become one value per pixel: ``"max"``, the entry of
            largest magnitude (with its sign in ``"signed"`` mode); ``"mean"``, the mean
            (of the magnitudes in ``"abs"`` mode).
        percentile: the map is divided by this percentile of its magnitudes, then
            clipped, so that a few extreme pixels do not wash out the rest (100: divide
            by the maximum; so does a sparse map whose percentile is 0). A map of zeros
            comes back as zeros.
    """
    if mode not in ("abs", "signed"):
        raise ValueError(f"mode must be 'abs' or 'signed', got {mode!r}")
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    values = _numpy(saliency)
    if values.ndim == 2:
        values = values[None]
    if values.ndim != 3:
        raise ValueError(f"a saliency map must be C x H x W or H x W, got shape {values.shape}")
    if mode == "abs":
        values = np.abs(values)
    if reduce == "mean":
        reduced = values.mean(axis=0)
    else:
        largest = np.abs(values).argmax(axis=0)
        reduced = np.take_along_axis(values, largest[None], axis=0)[0]
    magnitudes = np.abs(reduced)
    scale = np.percentile(magnitudes, percentile) or magnitudes.max()  # the maximum for a sparse map
    if scale == 0:
        return np.zeros_like(reduced)
    return np.clip(reduced / scale, 0.0 if mode == "abs" else -1.0, 1.0)


def perturbation_image(delta: torch.Tensor) -> np.ndarray:
    """Display array of one perturbation ``x_adv - x`` (C x H x W), scaled to be visible.

    Divided by its largest magnitude: H x W in [-1, 1] for one channel (to show with
    ``kind="signed"``); H x W x 3 in [0, 1] for RGB, gray meaning zero. Zeros stay zeros.
    """
    values = _numpy(delta)
    if values.ndim != 3 or values.shape[0] not in (1, 3):
        raise ValueError(f"a perturbation must be C x H x W with 1 or 3 channels, got shape {values.shape}")
    largest = np.abs(values).max()
    scaled = values / largest if largest > 0 else values
    return scaled[0] if values.shape[0] == 1 else 0.5 + 0.5 * scaled.transpose(1, 2, 0)


def overlay_image(saliency: np.ndarray, *, mode: str = "abs") -> np.ndarray:
    """H x W x 4 RGBA layer of a display map (from ``saliency_image``) to draw over its image.

    Colour from the mode's colormap, opacity the magnitude: zero is transparent.
    """
    cmap, vmin, vmax = KINDS[mode]
    rgba = plt.get_cmap(cmap)((saliency - vmin) / (vmax - vmin))
    rgba[..., 3] = np.abs(saliency)
    return rgba


def imshow(ax: Axes, array: np.ndarray, *, kind: str = "image", title: str | None = None, layer: int = 0) -> AxesImage:
    """Show a display array on ``ax``, or redraw in place the ``layer``-th image it already shows.

    ``kind`` picks the colormap and value range of a 2-D array: ``"image"`` (gray, [0, 1]),
    ``"abs"`` (``SALIENCY_CMAP``, [0, 1]) or ``"signed"`` (``SIGNED_CMAP``, [-1, 1]); RGB(A)
    arrays are shown as they are. Returns the AxesImage.
    """
    cmap, vmin, vmax = KINDS[kind]
    if layer < len(ax.images):
        artist = ax.images[layer]
        artist.set_data(array)
        artist.set_cmap(cmap)
        artist.set_clim(vmin, vmax)
    else:
        artist = ax.imshow(array, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
    if title is not None:
        ax.set_title(title)
    return artist


def caption(label: int | None = None, prob: float | None = None, class_names: Sequence[str] | None = None) -> str:
    """``"name (98%)"``: a class (its name, when ``class_names`` is given) and a confidence."""
    parts = []
    if label is not None:
        parts.append(class_names[label] if class_names is not None else str(label))
    if prob is not None:
        parts.append(f"({prob:.0%})" if parts else f"{prob:.0%}")
    return " ".join(parts)


def _values(values, n: int, name: str) -> list | None:
    """``values`` (a tensor, array or sequence of n numbers, or None) as a Python list."""
    if values is None:
        return None
    values = values.detach().cpu().tolist() if isinstance(values, torch.Tensor) else list(values)
    if len(values) != n:
        raise ValueError(f"{name} must hold one value per image ({n}), got {len(values)}")
    return values


def _panels(nrows: int, ncols: int, *, height: float = PANEL_INCHES) -> tuple[Figure, np.ndarray]:
    """A figure with an nrows x ncols array of axes, one image panel each."""
    return plt.subplots(nrows, ncols, figsize=(ncols * PANEL_INCHES, nrows * height), squeeze=False)


@_styled
def show_images(
    x: torch.Tensor,
    labels=None,
    *,
    class_names: Sequence[str] | None = None,
    probs=None,
    ncols: int = 8,
    title: str | None = None,
) -> Figure:
    """A grid of images, each titled with its class and confidence.

    Args:
        x: images, N x C x H x W in [0, 1] (C = 1: gray; C = 3: RGB).
        labels: (N,) classes to name in the titles (true or predicted), or None.
        class_names: names of the classes (e.g. ``helpers.data.class_names("cifar10")``);
            default: the class indices.
        probs: (N,) confidences in [0, 1] to show as percentages, or None.
        ncols: panels per row (at most N); the grid has ceil(N / ncols) rows and exactly
            N axes.
        title: the figure's title.
    """
    check_images(x)
    n = x.shape[0]
    if n == 0:
        raise ValueError("x holds no images")
    labels, probs = _values(labels, n, "labels"), _values(probs, n, "probs")
    ncols = max(1, min(ncols, n))
    fig, axes = _panels(math.ceil(n / ncols), ncols, height=PANEL_INCHES + 0.2)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.remove()
            continue
        imshow(
            ax,
            image_array(x[i]),
            title=caption(None if labels is None else labels[i], None if probs is None else probs[i], class_names),
        )
    if title is not None:
        fig.suptitle(title)
    return fig


@_styled
def compare_models(
    x: torch.Tensor | None,
    columns: Mapping[str, torch.Tensor],
    *,
    kind: str = "saliency",
    mode: str = "abs",
    reduce: str = "max",
    percentile: float = 99.0,
    overlay: bool = False,
    labels=None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Columns of maps or images side by side, one row per image: e.g. standard vs robust.

    Args:
        x: the images, N x C x H x W in [0, 1], shown in a first column ``"input"``
            (or under the maps, with ``overlay``); None: no input column.
        columns: column title -> N x C x H x W tensor: saliency maps (``kind="saliency"``,
            shown through ``saliency_image``) or images in [0, 1] (``kind="image"``, e.g.
            feature visualizations or adversarial examples).
        mode, reduce, percentile: the display transform of saliency maps (``saliency_image``).
        overlay: draw each map over its image, in dimmed gray, instead of beside it (the
            map's opacity is its magnitude: transparent where it is zero); needs ``x``.
        labels: (N,) classes to name at the left of each row; class_names: their names.
        title: the figure's title.
    """
    if kind not in ("saliency", "image"):
        raise ValueError(f"kind must be 'saliency' or 'image', got {kind!r}")
    if not columns:
        raise ValueError("columns must hold at least one tensor")
    if overlay and (x is None or kind != "saliency"):
        raise ValueError("overlay draws saliency maps over their images: it needs x and kind='saliency'")
    n = next(iter(columns.values())).shape[0]
    if x is not None:
        check_images(x)
        n = x.shape[0]
    for name, values in columns.items():
        if values.shape[0] != n:
            raise ValueError(f"column {name!r} holds {values.shape[0]} maps for {n} images")
    labels = _values(labels, n, "labels")
    input_column = x is not None and not overlay
    fig, axes = _panels(n, len(columns) + input_column)
    for i, row in enumerate(axes):
        panels = iter(row)
        if input_column:
            imshow(next(panels), image_array(x[i]), title="input" if i == 0 else None)
        for name, values in columns.items():
            ax = next(panels)
            if kind == "image":
                imshow(ax, image_array(values[i]))
            elif overlay:
                imshow(ax, OVERLAY_BASE * _gray(image_array(x[i])))
                imshow(
                    ax,
                    overlay_image(
                        saliency_image(values[i], mode=mode, reduce=reduce, percentile=percentile), mode=mode
                    ),
                    layer=1,
                )
            else:
                imshow(ax, saliency_image(values[i], mode=mode, reduce=reduce, percentile=percentile), kind=mode)
            if i == 0:
                ax.set_title(name)
        if labels is not None:
            row[0].set_ylabel(caption(labels[i], class_names=class_names))
    if title is not None:
        fig.suptitle(title)
    return fig


def show_saliency(
    x: torch.Tensor,
    maps: torch.Tensor | Mapping[str, torch.Tensor],
    *,
    mode: str = "abs",
    reduce: str = "max",
    percentile: float = 99.0,
    overlay: bool = False,
    labels=None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Images beside (or overlaid with) their saliency maps: rows = images, columns = methods.

    ``maps`` is one N x C x H x W tensor of raw maps (a column ``"saliency"``) or a dict
    method name -> maps; every other argument as in ``compare_models``.
    """
    columns = {"saliency": maps} if isinstance(maps, torch.Tensor) else maps
    return compare_models(
        x,
        columns,
        kind="saliency",
        mode=mode,
        reduce=reduce,
        percentile=percentile,
        overlay=overlay,
        labels=labels,
        class_names=class_names,
        title=title,
    )


def draw_attack(
    axes: Sequence[Axes],
    x: torch.Tensor,
    x_adv: torch.Tensor,
    probs,
    probs_adv,
    *,
    label: int | None = None,
    class_names: Sequence[str] | None = None,
) -> None:
    """Draw one attack on three axes, or redraw it in place: original, perturbation, adversarial.

    Args:
        axes: three axes.
        x, x_adv: one clean and one adversarial image, C x H x W in [0, 1].
        probs, probs_adv: the model's class probabilities (K,) for each.
        label: the true class, or None. The original's title turns orange when its
            prediction is wrong; the adversarial's when its prediction differs from the
            original's.
        class_names: names of the classes; default: their indices.
    """
    probs, probs_adv = _numpy(probs), _numpy(probs_adv)
    clean, adv = int(probs.argmax()), int(probs_adv.argmax())
    delta = _numpy(x_adv) - _numpy(x)
    linf, l2 = np.abs(delta).max(), np.sqrt(np.square(delta).sum())
    heading = "original" if label is None else f"original, label {caption(label, class_names=class_names)}"
    imshow(axes[0], image_array(x))
    axes[0].set_title(
        f"{heading}\n{caption(clean, probs[clean], class_names)}",
        color=WRONG_COLOR if label is not None and clean != label else "black",
    )
    imshow(
        axes[1],
        perturbation_image(delta),
        kind="signed",
        title="perturbation (scaled)\n" + rf"$\|\delta\|_\infty$ {linf:.3f}   $\|\delta\|_2$ {l2:.2f}",
    )
    imshow(axes[2], image_array(x_adv))
    axes[2].set_title(
        f"adversarial\n{caption(adv, probs_adv[adv], class_names)}", color=WRONG_COLOR if adv != clean else "black"
    )


@_styled
def attack_panel(
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    y: torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Original, perturbation and adversarial image with the model's predictions, one row per image.

    The perturbation ``x_adv - x`` is divided by its largest magnitude to be visible
    (``perturbation_image``); its L-inf and L2 norms (pixel units) are in its title.

    Args:
        model: the attacked classifier (predictions and confidences come from its softmax).
        x, x_adv: clean and adversarial images, N x C x H x W in [0, 1].
        y: (N,) true labels, or None. class_names: names of the classes.
        title: the figure's title.
    """
    check_images(x)
    check_images(x_adv, "x_adv")
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv must have x's shape {tuple(x.shape)}, got {tuple(x_adv.shape)}")
    n = x.shape[0]
    labels = _values(y, n, "y")
    probs = F.softmax(predict(model, torch.cat([x, x_adv.to(x.device)])), dim=1).cpu()
    fig, axes = _panels(n, 3, height=PANEL_INCHES + 0.35)
    for i, row in enumerate(axes):
        draw_attack(
            row,
            x[i],
            x_adv[i],
            probs[i],
            probs[n + i],
            label=None if labels is None else labels[i],
            class_names=class_names,
        )
    if title is not None:
        fig.suptitle(title)
    return fig


def _series(history) -> dict[str, list]:
    """A training history as metric -> values: from ``History``, a list of dicts or a dict of lists."""
    records = getattr(history, "epochs", history)
    if isinstance(records, Mapping):
        return {key: list(values) for key, values in records.items()}
    keys = [key for key in records[0] if all(key in record for record in records)] if records else []
    return {key: [record[key] for record in records] for key in keys}


@_styled
def training_curves(history, *, title: str | None = None) -> Figure:
    """Loss and accuracies per epoch of one training run.

    Args:
        history: a ``helpers.train.History`` (its ``epochs``: one dict per epoch), a list
            of such dicts, or a dict metric -> list of values. Metrics whose name contains
            ``loss`` go to the left panel, ``accuracy`` to the right one (in %); an
            ``epoch`` entry gives the x values (default 1, 2, ...); others are ignored.
        title: the figure's title.
    """
    series = _series(history)
    groups = {"loss": [k for k in series if "loss" in k], "accuracy": [k for k in series if "accuracy" in k]}
    groups = {name: keys for name, keys in groups.items() if keys}
    if not groups:
        raise ValueError(f"the history has no loss or accuracy values; it has {sorted(series)}")
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.0), squeeze=False)
    for ax, (name, keys) in zip(axes[0], groups.items()):
        for key in keys:
            epochs = series.get("epoch", range(1, len(series[key]) + 1))
            ax.plot(list(epochs), series[key], marker="o", label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        if name == "accuracy":
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.legend()
    if title is not None:
        fig.suptitle(title)
    return fig


@_styled
def accuracy_curve(
    eps_values: Sequence[float],
    accuracies: Mapping[str, Sequence[float]],
    *,
    norm: str | None = None,
    title: str | None = None,
) -> Figure:
    """Accuracy against the attack's eps, one line per model.

    Args:
        eps_values: the radii (pixel units), shared by every model.
        accuracies: model name -> accuracies in [0, 1], one per eps.
        norm: ``"linf"`` or ``"l2"``, named on the x axis, or None.
        title: the figure's title.
    """
    if norm not in NORM_LABELS:
        raise ValueError(f"norm must be 'linf', 'l2' or None, got {norm!r}")
    eps_values = list(eps_values)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for name, values in accuracies.items():
        values = [float(v) for v in values]
        if len(values) != len(eps_values):
            raise ValueError(f"{name!r} has {len(values)} accuracies for {len(eps_values)} eps values")
        ax.plot(eps_values, values, marker="o", label=name)
    ax.set_xlabel(f"eps{NORM_LABELS[norm]}, pixel units")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend()
    if title is not None:
        ax.set_title(title)
    return fig
