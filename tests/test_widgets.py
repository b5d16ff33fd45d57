"""Tests of helpers.widgets: each control change redraws the same Figure in place, correctly."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from helpers import plot, widgets  # noqa: E402
from helpers.attacks import pgd  # noqa: E402
from helpers.features import representation  # noqa: E402
from helpers.models import MnistCNN  # noqa: E402
from helpers.saliency import gradient  # noqa: E402
from helpers.utils import set_seed  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def model() -> MnistCNN:
    """An MnistCNN with random (seeded) weights."""
    set_seed(0)
    return MnistCNN().eval()


@pytest.fixture(scope="module")
def digits(mnist_test):
    x, y = mnist_test
    return x[:8], y[:8]


def data(ax, layer: int = 0) -> np.ndarray:
    return np.asarray(ax.images[layer].get_array()).copy()


def count_draws(explorer) -> list:
    """Record each call of ``explorer.draw`` (the redraw) in the returned list."""
    calls, draw = [], explorer.draw

    def counted():
        calls.append(1)
        draw()

    explorer.draw = counted
    return calls


def probs_caption(model, x) -> str:
    with torch.no_grad():
        p = F.softmax(model(x), dim=1)[0]
    return plot.caption(int(p.argmax()), p.max().item())


def test_attack_explorer_redraws_the_same_figure(model, digits):
    x, y = digits
    figures = plt.get_fignums()
    explorer = widgets.attack_explorer(model, x, y, steps=3)
    figure, png = explorer.figure, explorer.image.value
    perturbation = explorer.axes[1]
    delta_before, title_before = data(perturbation), perturbation.get_title()
    draws = count_draws(explorer)

    explorer.eps.value = 0.2
    assert len(draws) == 1
    assert explorer.figure is figure and explorer.axes[1] is perturbation and len(perturbation.images) == 1
    assert bytes(explorer.image.value) != bytes(png) and bytes(explorer.image.value).startswith(b"\x89PNG")
    assert perturbation.get_title() != title_before and "0.200" in perturbation.get_title()
    assert not np.array_equal(data(perturbation), delta_before)
    assert plt.get_fignums() == figures  # the explorer never goes through pyplot

    x_adv = pgd(
        model,
        x[:1],
        y[:1],
        eps=0.2,
        alpha=2.5 * 0.2 / explorer.steps.value,
        steps=explorer.steps.value,
        random_start=False,
    )
    np.testing.assert_allclose(data(perturbation), plot.perturbation_image((x_adv - x[:1])[0]), atol=1e-6)
    np.testing.assert_allclose(data(explorer.axes[2]), x_adv[0, 0].numpy(), atol=1e-6)
    assert probs_caption(model, x_adv) in explorer.axes[2].get_title()
    with torch.no_grad():
        adv_probs = F.softmax(model(x_adv), dim=1)[0].numpy()
    bars = [bar.get_width() for bar in explorer.axes[3].containers[1]]
    np.testing.assert_allclose(bars, adv_probs, atol=1e-6)


def test_attack_explorer_index_target_and_norm(model, digits):
    x, y = digits
    explorer = widgets.attack_explorer(model, x, y, steps=3)
    draws = count_draws(explorer)

    explorer.index.value = 3
    np.testing.assert_array_equal(data(explorer.axes[0]), x[3, 0].numpy())
    assert f"label {int(y[3])}" in explorer.axes[0].get_title()

    explorer.target.value = 2
    x_adv = pgd(
        model,
        x[3:4],
        torch.tensor([2]),
        eps=explorer.eps.value,
        alpha=2.5 * explorer.eps.value / 3,
        steps=3,
        targeted=True,
        random_start=False,
    )
    np.testing.assert_allclose(explorer.x_adv, x_adv, atol=1e-6)

    explorer.norm.value = "l2"  # resets eps to the L2 range: one redraw, not one per changed control
    assert len(draws) == 3
    assert (explorer.eps.max, explorer.eps.value) == widgets.EPS_RANGES["l2"][::2]
    delta = explorer.x_adv - x[3:4]
    assert delta.norm().item() <= explorer.eps.value + 1e-4
    assert delta.abs().max().item() > explorer.eps.value / 28  # an L2 step, not capped like an L-inf one


def test_explorer_displays_as_its_widget(model, digits):
    explorer = widgets.attack_explorer(model, *digits, steps=1)
    bundle = explorer._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id
    assert explorer.image in explorer.widget.children and explorer.status.value.startswith("updated in")


def test_explorer_reports_errors_in_its_status(model, digits):
    explorer = widgets.attack_explorer(model, *digits, steps=1)

    def fail():
        raise RuntimeError("out of memory")

    explorer.draw = fail
    with pytest.raises(RuntimeError):
        explorer.steps.value = 2
    assert explorer.status.value == "RuntimeError: out of memory"


def test_smoothgrad_explorer(model, digits):
    x, _ = digits
    explorer = widgets.smoothgrad_explorer(model, x, n=4)
    figure, draws = explorer.figure, count_draws(explorer)
    expected_gradient = plot.saliency_image(gradient(model, x[:1])[0])
    np.testing.assert_allclose(data(explorer.axes[2]), expected_gradient, atol=1e-5)

    explorer.noise_level.value = 0.3
    assert explorer.figure is figure and len(draws) == 1
    assert "0.30" in explorer.axes[1].get_title()
    np.testing.assert_allclose(data(explorer.axes[1]), (x[0] + 0.3 * explorer.noise).clamp(0, 1)[0].numpy())
    np.testing.assert_allclose(data(explorer.axes[3]), plot.saliency_image(explorer.smoothgrad[0]))

    explorer.noise_level.value = 0.0  # SmoothGrad without noise is the gradient
    np.testing.assert_allclose(data(explorer.axes[3]), expected_gradient, atol=1e-5)

    explorer.mode.value = "signed"
    signed = explorer.axes[2].images[0]
    assert signed.get_cmap().name == plot.SIGNED_CMAP and data(explorer.axes[2]).min() < 0

    explorer.index.value = 5
    np.testing.assert_array_equal(data(explorer.axes[0]), x[5, 0].numpy())
    np.testing.assert_allclose(
        data(explorer.axes[2]), plot.saliency_image(gradient(model, x[5:6])[0], mode="signed"), atol=1e-5
    )
    assert plt.get_fignums() == [] and len(draws) == 4


def test_neuron_explorer(model, digits):
    x, _ = digits
    explorer = widgets.neuron_explorer(model, x, k=3, steps=5)
    figure, draws = explorer.figure, count_draws(explorer)
    activations = representation(model, x)
    most_active, second = activations.mean(dim=0).topk(2).indices.tolist()
    assert explorer.neuron.value == most_active  # the default: many neurons are never active

    explorer.neuron.value = second
    assert explorer.figure is figure and len(draws) == 1 and len(figure.axes) == 7
    values, indices = activations[:, second].topk(3)
    for ax, index, value in zip(explorer.top_axes, indices.tolist(), values.tolist()):
        np.testing.assert_array_equal(data(ax), x[index, 0].numpy())
        assert f"#{index}" in ax.get_title() and f"{value:.2f}" in ax.get_title()
    before = representation(model, torch.cat([x[:1], explorer.noise]))[:, second]
    after = representation(model, explorer.visualizations)[:, second]
    assert (after > before).all()  # ascent excites the neuron, from the image and from noise
    np.testing.assert_allclose(data(explorer.axes[1]), explorer.visualizations[0, 0].numpy())
    assert f"{after[1].item():.2f}" in explorer.axes[3].get_title()
    assert f"neuron {second} most" in explorer.bottom.get_suptitle()

    dead = int((activations.amax(dim=0) == 0).nonzero()[0])
    explorer.neuron.value = dead
    assert "dead" in explorer.bottom.get_suptitle()
    assert plt.get_fignums() == [] and len(draws) == 2
