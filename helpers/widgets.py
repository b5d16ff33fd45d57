"""Interactive explorers for JupyterLab: controls above one figure that redraws in place.

Each explorer holds its controls (ipywidgets), one matplotlib ``figure`` made outside
pyplot (so nothing accumulates in ``plt`` and the inline backend never shows it on its
own) and an ``image`` widget showing that figure as a PNG. Any control change calls
``update()``, which recomputes what depends on the controls, redraws the figure's
artists in place (``helpers.plot.imshow``: new pixels and titles, same Figure and
Axes) and replaces the PNG. What does not depend on a control (predictions, gradients,
representations) is computed once. Show an explorer by making it the last value of a
cell, or with ``display(explorer)``:

    explorer = widgets.attack_explorer(model, x_test[:20], y_test[:20])
    explorer

Needs nothing beyond ipywidgets (no ``%matplotlib widget``). Sliders redraw when they
are released. Defaults are sized so that an update of an MNIST model takes a fraction
of a second on a CPU.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator, Sequence

import ipywidgets as ipw
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from . import plot
from .attacks import pgd, predict
from .utils import check_images, check_labels

BATCH_SIZE = 256  # images per pass when an explorer precomputes over all of x
# Per norm: (slider maximum, slider step, default eps), in pixel units.
EPS_RANGES = {"linf": (0.5, 0.01, 0.1), "l2": (6.0, 0.1, 1.5)}


class Explorer:
    """Controls, one Figure, and ``update()`` that redraws that Figure in place.

    Subclasses create ``figure`` and its axes (inside ``plot.style()``, outside pyplot) and
    their controls, then call ``Explorer.__init__`` with the controls, and implement ``draw()``.

    Attributes:
        figure: the one matplotlib Figure, redrawn by every update.
        image: ``ipywidgets.Image`` holding the figure's latest PNG.
        status: a label with the last update's duration.
        widget: the whole explorer (controls, figure, status) as one ipywidgets box.
    """

    def __init__(self, controls: Sequence[ipw.Widget]):
        self.image = ipw.Image(format="png")
        self.status = ipw.Label()
        self.widget = ipw.VBox(
            [ipw.HBox(list(controls), layout=ipw.Layout(flex_flow="row wrap")), self.image, self.status]
        )
        self._quiet = False
        for control in controls:
            control.observe(self._changed, names="value")
        self.update()

    def draw(self) -> None:
        """Redraw ``figure`` for the current control values (artists updated in place)."""
        raise NotImplementedError

    def update(self) -> None:
        """Redraw the figure for the current control values and show it.

        An error is also written in ``status``: a notebook shows errors raised in widget
        callbacks only in its log.
        """
        started = time.perf_counter()
        try:
            with plot.style():
                self.draw()
                buffer = io.BytesIO()
                self.figure.savefig(buffer, format="png")
        except Exception as error:
            self.status.value = f"{type(error).__name__}: {error}"
            raise
        self.image.value = buffer.getvalue()
        self.status.value = f"updated in {time.perf_counter() - started:.2f} s"

    @contextlib.contextmanager
    def _without_updates(self) -> Iterator[None]:
        """Change controls without a redraw for each change."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    def _changed(self, change) -> None:
        if not self._quiet:
            self.update()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _index_slider(n: int, value: int = 0) -> ipw.IntSlider:
    return ipw.IntSlider(value=value, min=0, max=n - 1, description="image", continuous_update=False)


class AttackExplorer(Explorer):
    """PGD on one image: original, perturbation, adversarial, and both class distributions.

    Controls: ``index`` (the image), ``norm`` (``"linf"`` / ``"l2"``; switching resets
    ``eps`` to that norm's range), ``eps`` and ``steps`` (step size ``alpha = 2.5 eps /
    steps``, Madry et al.'s rule), ``target`` (-1: untargeted; a class: targeted). The
    attack starts at the image (no random start), so the same settings give the same picture.
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        class_names: Sequence[str] | None = None,
        norm: str = "linf",
        eps: float | None = None,
        steps: int = 10,
    ):
        check_images(x)
        check_labels(y, x.shape[0])
        if norm not in EPS_RANGES:
            raise ValueError(f"norm must be one of {sorted(EPS_RANGES)}, got {norm!r}")
        self.model, self.x, self.y = model, x, y
        self.clean_probs = F.softmax(predict(model, x), dim=1).cpu()  # does not depend on a control
        num_classes = self.clean_probs.shape[1]
        self.class_names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
        maximum, step, default = EPS_RANGES[norm]
        self.index = _index_slider(x.shape[0])
        self.norm = ipw.Dropdown(options=[("L-inf", "linf"), ("L2", "l2")], value=norm, description="norm")
        self.eps = ipw.FloatSlider(
            value=default if eps is None else eps,
            min=0.0,
            max=maximum,
            step=step,
            description="eps",
            readout_format=".2f",
            continuous_update=False,
        )
        self.steps = ipw.IntSlider(value=steps, min=1, max=100, description="steps", continuous_update=False)
        targets = [("untargeted", -1)] + [(name, k) for k, name in enumerate(self.class_names)]
        self.target = ipw.Dropdown(options=targets, value=-1, description="target")
        self.norm.observe(self._norm_changed, names="value")  # before Explorer's observer: one redraw per switch
        with plot.style():
            self.figure = Figure(figsize=(9.0, 2.5))
            self.axes = self.figure.subplots(1, 4, width_ratios=[1, 1, 1, 1.7])
        self.x_adv = None
        super().__init__([self.index, self.norm, self.eps, self.steps, self.target])

    def _norm_changed(self, change) -> None:
        maximum, step, default = EPS_RANGES[change.new]
        with self._without_updates():
            self.eps.max, self.eps.step, self.eps.value = maximum, step, default

    def attack(self) -> torch.Tensor:
        """The adversarial image (1 x C x H x W) for the current controls."""
        i, target, steps = self.index.value, self.target.value, self.steps.value
        x = self.x[i : i + 1]
        goal = self.y[i : i + 1] if target < 0 else torch.tensor([target], device=self.y.device)
        return pgd(
            self.model,
            x,
            goal,
            eps=self.eps.value,
            alpha=2.5 * self.eps.value / steps,
            steps=steps,
            norm=self.norm.value,
            targeted=target >= 0,
            random_start=False,
        )

    def draw(self) -> None:
        i = self.index.value
        self.x_adv = self.attack()
        clean = self.clean_probs[i].numpy()
        adv = F.softmax(predict(self.model, self.x_adv), dim=1)[0].cpu().numpy()
        plot.draw_attack(
            self.axes[:3], self.x[i], self.x_adv[0], clean, adv, label=int(self.y[i]), class_names=self.class_names
        )
        ax = self.axes[3]
        if not ax.containers:
            positions = np.arange(len(clean))
            ax.barh(positions - 0.2, clean, height=0.4, label="original", color=plot.COLORS[0])
            ax.barh(positions + 0.2, adv, height=0.4, label="adversarial", color=plot.COLORS[1])
            ax.set_yticks(positions, self.class_names)
            ax.set_ylim(len(clean) - 0.5, -0.5)  # the first class on top
            ax.set_xlim(0, 1)
            ax.set_xlabel("probability")
            ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2)
        for bars, probs in zip(ax.containers, (clean, adv)):
            for bar, p in zip(bars, probs):
                bar.set_width(p)


class SmoothGradExplorer(Explorer):
    """Gradient and SmoothGrad maps of one image as the noise level and sample count change.

    Controls: ``index`` (the image), ``noise_level`` (sigma as a share of the [0, 1] pixel
    range), ``n`` (noisy samples), ``mode`` (``"abs"`` / ``"signed"`` display). Both maps
    explain the logit of the class the model predicts. Panels: the image; one noisy copy
    at the current sigma (a fixed noise pattern, clipped to [0, 1] for display only); the
    plain gradient (computed once per image); SmoothGrad (new noise at every update).
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        *,
        class_names: Sequence[str] | None = None,
        noise_level: float = 0.15,
        n: int = 25,
        mode: str = "abs",
        percentile: float = 99.0,
    ):
        from .saliency import gradient

        check_images(x)
        self.model, self.x, self.percentile = model, x, percentile
        probs = F.softmax(predict(model, x), dim=1).cpu()
        self.confidences, self.predictions = probs.max(dim=1)
        self.class_names = class_names
        self.gradients = gradient(model, x, self.predictions.to(x.device), batch_size=BATCH_SIZE)  # computed once
        self.noise = torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(0))
        self.index = _index_slider(x.shape[0])
        self.noise_level = ipw.FloatSlider(
            value=noise_level,
            min=0.0,
            max=0.5,
            step=0.01,
            description="sigma",
            readout_format=".2f",
            continuous_update=False,
        )
        self.n = ipw.IntSlider(value=n, min=1, max=100, description="n", continuous_update=False)
        self.mode = ipw.ToggleButtons(options=["abs", "signed"], value=mode, description="mode")
        with plot.style():
            self.figure = Figure(figsize=(7.0, 2.2))
            self.axes = self.figure.subplots(1, 4)
        self.smoothgrad = None
        super().__init__([self.index, self.noise_level, self.n, self.mode])

    def draw(self) -> None:
        from .saliency import smoothgrad

        i, sigma, mode = self.index.value, self.noise_level.value, self.mode.value
        x = self.x[i : i + 1]
        self.smoothgrad = smoothgrad(
            self.model, x, self.predictions[i : i + 1].to(x.device), noise_level=sigma, n=self.n.value
        )
        label = plot.caption(int(self.predictions[i]), float(self.confidences[i]), self.class_names)
        plot.imshow(self.axes[0], plot.image_array(x[0]), title=f"image\npredicted {label}")
        noisy = (x[0].cpu() + sigma * self.noise).clamp(0, 1)
        plot.imshow(self.axes[1], plot.image_array(noisy), title=f"one noisy copy\nsigma {sigma:.2f}")
        for ax, name, saliency in (
            (self.axes[2], "gradient", self.gradients[i]),
            (self.axes[3], f"SmoothGrad\nn {self.n.value}", self.smoothgrad[0]),
        ):
            plot.imshow(ax, plot.saliency_image(saliency, mode=mode, percentile=self.percentile), kind=mode, title=name)


class NeuronExplorer(Explorer):
    """One representation neuron: images that maximize it, and the images that excite it most.

    Controls: ``neuron`` (index into ``model.representation``; default: the one with the
    highest mean activation on ``x``, since many neurons are never active) and ``index``
    (the start image). Panels, top: the start image, its neuron-maximizing version, a fixed noise
    start, its maximizing version (``helpers.features.maximize_neuron`` with ``eps``,
    ``alpha``, ``steps``, ``norm``), each titled with the neuron's activation; bottom: the
    ``k`` images of ``x`` with the highest activations (representations computed once).
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        *,
        neuron: int | None = None,
        k: int = 6,
        eps: float = 10.0,
        alpha: float = 0.5,
        steps: int = 20,
        norm: str = "l2",
    ):
        from .features import noise_like, representation

        check_images(x)
        if not 1 <= k <= x.shape[0]:
            raise ValueError(f"k must be in [1, {x.shape[0]}] (the number of images), got {k!r}")
        self.model, self.x, self.k = model, x, k
        self.settings = {"eps": eps, "alpha": alpha, "steps": steps, "norm": norm}
        self.activations = representation(model, x, batch_size=BATCH_SIZE).cpu()  # N x D, computed once
        self.noise = noise_like(x[:1], seed=0)
        if neuron is None:
            neuron = int(self.activations.mean(dim=0).argmax())
        self.neuron = ipw.IntSlider(
            value=neuron, min=0, max=self.activations.shape[1] - 1, description="neuron", continuous_update=False
        )
        self.index = _index_slider(x.shape[0])
        with plot.style():
            self.figure = Figure(figsize=(max(6.0, 1.3 * k), 3.9))
            top, self.bottom = self.figure.subfigures(2, 1, height_ratios=[1.15, 1])
            self.axes = top.subplots(1, 4)
            self.top_axes = self.bottom.subplots(1, k)
        self.visualizations = None
        super().__init__([self.neuron, self.index])

    def draw(self) -> None:
        from .features import maximize_neuron, representation

        neuron, i = self.neuron.value, self.index.value
        starts = torch.cat([self.x[i : i + 1], self.noise])
        self.visualizations = maximize_neuron(self.model, neuron, starts, **self.settings)
        before = representation(self.model, starts)[:, neuron].tolist()
        after = representation(self.model, self.visualizations)[:, neuron].tolist()
        panels = zip(
            self.axes,
            (starts[0], self.visualizations[0], starts[1], self.visualizations[1]),
            ("image", "maximized", "noise", "maximized"),
            (before[0], after[0], before[1], after[1]),
        )
        for ax, image, name, activation in panels:
            plot.imshow(ax, plot.image_array(image), title=f"{name}\nactivation {activation:.2f}")
        values, indices = self.activations[:, neuron].topk(self.k)
        self.bottom.suptitle(
            f"the {self.k} images of x that excite neuron {neuron} most"
            if values[0] > 0
            else f"neuron {neuron} is 0 on every image of x (a dead ReLU)"
        )
        for ax, index, value in zip(self.top_axes, indices.tolist(), values.tolist()):
            plot.imshow(ax, plot.image_array(self.x[index]), title=f"#{index}\n{value:.2f}")


# Function-style names for the notebooks: ``widgets.attack_explorer(model, x, y)``.
attack_explorer = AttackExplorer
smoothgrad_explorer = SmoothGradExplorer
neuron_explorer = NeuronExplorer
