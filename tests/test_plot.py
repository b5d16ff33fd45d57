"""Tests of helpers.plot: display transforms against NumPy, and what each figure shows."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from helpers import plot  # noqa: E402
from helpers.attacks import pgd  # noqa: E402
from helpers.models import MnistCNN  # noqa: E402
from helpers.train import History  # noqa: E402
from helpers.utils import set_seed  # noqa: E402

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LINEAR_NAMES = ("cat", "dog", "emu")  # the 3 classes of the conftest linear model


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def data(ax, layer: int = 0) -> np.ndarray:
    """The array an axes' ``layer``-th image shows."""
    return np.asarray(ax.images[layer].get_array())


# ---- display transforms ---------------------------------------------------------------


def test_saliency_image_abs_max_clips_at_the_percentile():
    s = np.random.default_rng(0).normal(size=(3, 10, 10)).astype(np.float32)
    reduced = np.abs(s).max(axis=0)
    expected = np.clip(reduced / np.percentile(reduced, 95), 0, 1)
    out = plot.saliency_image(torch.from_numpy(s), mode="abs", reduce="max", percentile=95)
    assert out.shape == (10, 10)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert (out == 1).sum() >= 5  # the top 5% of the 100 pixels are clipped to 1
    assert out.min() >= 0


def test_saliency_image_signed_mean_matches_numpy():
    s = np.random.default_rng(1).normal(size=(3, 8, 8)).astype(np.float32)
    mean = s.mean(axis=0)
    expected = np.clip(mean / np.percentile(np.abs(mean), 90), -1, 1)
    out = plot.saliency_image(s, mode="signed", reduce="mean", percentile=90)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.min() == -1 and out.max() == 1  # both tails of a symmetric map are clipped


def test_saliency_image_channel_reductions_by_hand():
    s = torch.tensor([[[1.0, -3.0]], [[-2.0, 2.0]]])  # 2 channels, 1 x 2 pixels
    np.testing.assert_allclose(plot.saliency_image(s, mode="abs", percentile=100), [[2 / 3, 1.0]])
    np.testing.assert_allclose(plot.saliency_image(s, mode="signed", percentile=100), [[-2 / 3, -1.0]])
    np.testing.assert_allclose(plot.saliency_image(s, mode="abs", reduce="mean", percentile=100), [[0.6, 1.0]])
    np.testing.assert_allclose(plot.saliency_image(s, mode="signed", reduce="mean", percentile=100), [[-1.0, -1.0]])


def test_saliency_image_accepts_grad_tensors_and_zero_maps():
    s = torch.randn(5, 5, requires_grad=True)
    np.testing.assert_allclose(
        plot.saliency_image(s, percentile=100), s.detach().abs().numpy() / s.abs().max().item(), rtol=1e-6
    )
    sparse = torch.zeros(20, 20)
    sparse[2, 3], sparse[5, 5] = -4.0, 2.0  # 99.5% zeros: the 99th percentile is 0
    np.testing.assert_allclose(plot.saliency_image(sparse), sparse.abs().numpy() / 4)
    zeros = plot.saliency_image(torch.zeros(1, 4, 4))
    assert zeros.shape == (4, 4) and not zeros.any()


@pytest.mark.parametrize("kwargs", [{"mode": "absolute"}, {"reduce": "sum"}, {"percentile": 0}, {"percentile": 101}])
def test_saliency_image_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        plot.saliency_image(torch.ones(1, 2, 2), **kwargs)


def test_image_and_perturbation_arrays():
    gray, rgb = torch.rand(1, 4, 5), torch.rand(3, 4, 5)
    np.testing.assert_array_equal(plot.image_array(gray), gray[0].numpy())
    np.testing.assert_array_equal(plot.image_array(rgb), rgb.permute(1, 2, 0).numpy())
    delta = torch.tensor([[[0.1, -0.2], [0.05, 0.0]]])
    np.testing.assert_allclose(plot.perturbation_image(delta), [[0.5, -1.0], [0.25, 0.0]], rtol=1e-6)
    rgb_delta = plot.perturbation_image(torch.full((3, 2, 2), -0.1))
    np.testing.assert_allclose(rgb_delta, np.zeros((2, 2, 3)))  # -max is black, zero is mid gray
    np.testing.assert_array_equal(plot.perturbation_image(torch.zeros(1, 2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError):
        plot.image_array(torch.rand(2, 4, 4))


def test_style_restores_only_its_own_settings():
    was_interactive, font_size = matplotlib.is_interactive(), plt.rcParams["font.size"]
    try:
        with plot.style():
            assert plt.rcParams["font.size"] == plot.STYLE["font.size"]
            matplotlib.interactive(True)  # as the inline backend does when a notebook's first figure loads it
        assert matplotlib.is_interactive()  # else a notebook shows no figure after the first
        assert plt.rcParams["font.size"] == font_size
    finally:
        matplotlib.interactive(was_interactive)


def test_imshow_redraws_in_place():
    fig, ax = plt.subplots()
    first = plot.imshow(ax, np.zeros((3, 3)), title="a")
    second = plot.imshow(ax, np.ones((3, 3)), kind="signed", title="b")
    assert second is first and len(ax.images) == 1
    np.testing.assert_array_equal(data(ax), np.ones((3, 3)))
    assert first.get_cmap().name == plot.SIGNED_CMAP and first.get_clim() == (-1, 1)
    assert ax.get_title() == "b"


# ---- figures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits(mnist_test):
    x, y = mnist_test
    return x[:10], y[:10]


def test_show_images_titles_classes_and_confidences(digits):
    x, _ = digits
    set_seed(0)
    model = MnistCNN().eval()
    with torch.no_grad():
        confidences, predictions = F.softmax(model(x), dim=1).max(dim=1)
    before = len(plt.get_fignums())
    fig = plot.show_images(x, predictions, class_names=DIGIT_NAMES, probs=confidences, ncols=4)
    assert isinstance(fig, Figure) and len(plt.get_fignums()) == before + 1
    assert len(fig.axes) == 10  # 3 rows of 4, the two empty cells removed
    assert {ax.get_subplotspec().rowspan.start for ax in fig.axes} == {0, 1, 2}
    for ax, image, label, confidence in zip(fig.axes, x, predictions.tolist(), confidences.tolist()):
        assert DIGIT_NAMES[label] in ax.get_title()
        assert f"({round(100 * confidence)}%)" in ax.get_title()
        np.testing.assert_array_equal(data(ax), image[0].numpy())
        assert ax.images[0].get_cmap().name == "gray" and ax.images[0].get_clim() == (0, 1)


def test_show_images_rgb_labels_and_validation():
    x = torch.rand(3, 3, 8, 8)
    fig = plot.show_images(x, torch.tensor([2, 0, 1]), class_names=LINEAR_NAMES, title="three")
    assert [ax.get_title() for ax in fig.axes] == ["emu", "cat", "dog"]
    assert fig.get_suptitle() == "three"
    np.testing.assert_array_equal(data(fig.axes[1]), x[1].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="one value per image"):
        plot.show_images(x, [0, 1])
    with pytest.raises(ValueError, match="255"):
        plot.show_images(x * 255)


def test_figures_use_the_style_and_leave_rcparams_alone(digits):
    x, y = digits
    font_size = plt.rcParams["font.size"]
    fig = plot.show_saliency(x[:2], torch.randn(2, 1, 28, 28), mode="signed")
    assert plt.rcParams["font.size"] == font_size
    assert fig.axes[0].title.get_fontsize() == plot.STYLE["axes.titlesize"]
    assert fig.get_layout_engine() is not None  # constrained layout
    signed = fig.axes[1].images[0]
    assert signed.get_cmap().name == plot.SIGNED_CMAP and signed.get_clim() == (-1, 1)
    assert signed.get_interpolation() == "nearest"


def test_attack_panel_shows_the_perturbation_and_predictions(linear_model, images):
    x, y = images[:3], torch.tensor([0, 1, 2])
    x_adv = pgd(linear_model, x, y, eps=0.2, alpha=0.05, steps=5)
    with torch.no_grad():
        probs, probs_adv = F.softmax(linear_model(x), dim=1), F.softmax(linear_model(x_adv), dim=1)
    fig = plot.attack_panel(linear_model, x, x_adv, y=y, class_names=LINEAR_NAMES)
    assert len(fig.axes) == 9
    for i in range(3):
        original, perturbation, adversarial = fig.axes[3 * i : 3 * i + 3]
        delta = (x_adv[i] - x[i])[0].numpy()
        np.testing.assert_allclose(data(perturbation), delta / np.abs(delta).max(), rtol=1e-5, atol=1e-7)
        assert f"{np.abs(delta).max():.3f}" in perturbation.get_title()
        assert f"{np.sqrt((delta**2).sum()):.2f}" in perturbation.get_title()
        np.testing.assert_array_equal(data(original), x[i, 0].numpy())
        np.testing.assert_array_equal(data(adversarial), x_adv[i, 0].numpy())
        for ax, p in ((original, probs[i]), (adversarial, probs_adv[i])):
            assert f"{LINEAR_NAMES[p.argmax()]} ({round(100 * p.max().item())}%)" in ax.get_title()
        assert f"label {LINEAR_NAMES[i]}" in original.get_title()
        changed = probs_adv[i].argmax() != probs[i].argmax()
        assert adversarial.title.get_color() == (plot.WRONG_COLOR if changed else "black")


def test_attack_panel_rejects_mismatched_shapes(linear_model, images):
    with pytest.raises(ValueError, match="shape"):
        plot.attack_panel(linear_model, images[:3], images[:2])


def test_show_saliency_beside_and_overlaid(images):
    x = images[:2]
    maps = {"gradient": torch.randn(2, 1, 4, 4), "smoothgrad": torch.randn(2, 1, 4, 4)}
    fig = plot.show_saliency(x, maps, labels=[1, 2], class_names=LINEAR_NAMES, percentile=90)
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[:3]] == ["input", "gradient", "smoothgrad"]
    assert [fig.axes[0].get_ylabel(), fig.axes[3].get_ylabel()] == ["dog", "emu"]
    for i in range(2):
        for j, values in enumerate(maps.values()):
            np.testing.assert_allclose(data(fig.axes[3 * i + 1 + j]), plot.saliency_image(values[i], percentile=90))
    fig = plot.show_saliency(x, maps["gradient"], overlay=True, mode="signed")
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "saliency"
    for ax, image, values in zip(fig.axes, x, maps["gradient"]):
        assert len(ax.images) == 2
        np.testing.assert_allclose(data(ax), plot.OVERLAY_BASE * image[0].numpy())
        np.testing.assert_allclose(data(ax, 1)[..., 3], np.abs(plot.saliency_image(values, mode="signed")))


def test_compare_models_images_without_an_input_column(images):
    columns = {"standard": images[:3], "robust": images[3:6]}
    fig = plot.compare_models(None, columns, kind="image")
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[:2]] == ["standard", "robust"]
    np.testing.assert_array_equal(data(fig.axes[5]), images[5, 0].numpy())
    with pytest.raises(ValueError, match="maps for"):
        plot.compare_models(images[:2], columns)
    with pytest.raises(ValueError, match="overlay"):
        plot.compare_models(None, columns, overlay=True)


def test_training_curves_from_history_and_dict():
    epochs = [
        {
            "epoch": e,
            "loss": 1 / e,
            "train_accuracy": 0.5 + 0.1 * e,
            "val_accuracy": 0.4 + 0.1 * e,
            "guard_pgd_accuracy": 0.1 * e,
            "eps": 0.3,
        }
        for e in (1, 2, 3)
    ]
    fig = plot.training_curves(History(epochs=epochs))
    assert len(fig.axes) == 2
    loss, accuracy = fig.axes
    assert [line.get_label() for line in loss.lines] == ["loss"]
    assert [line.get_label() for line in accuracy.lines] == ["train accuracy", "val accuracy", "guard pgd accuracy"]
    np.testing.assert_allclose(accuracy.lines[1].get_ydata(), [0.5, 0.6, 0.7])
    np.testing.assert_allclose(accuracy.lines[1].get_xdata(), [1, 2, 3])
    fig = plot.training_curves({"val_accuracy": [0.2, 0.9]})
    assert len(fig.axes) == 1
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xdata(), [1, 2])
    with pytest.raises(ValueError, match="no loss or accuracy"):
        plot.training_curves({"eps": [0.1]})


def test_accuracy_curve_one_line_per_model():
    eps = [0.0, 0.1, 0.3]
    fig = plot.accuracy_curve(
        eps, {"standard": [0.99, 0.4, 0.0], "robust": torch.tensor([0.98, 0.95, 0.9])}, norm="linf"
    )
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["standard", "robust"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.98, 0.95, 0.9], rtol=1e-6)
    np.testing.assert_allclose(ax.lines[0].get_xdata(), eps)
    assert "L_\\infty" in ax.get_xlabel()
    with pytest.raises(ValueError, match="3 eps values"):
        plot.accuracy_curve(eps, {"standard": [0.9, 0.5]})
    with pytest.raises(ValueError, match="norm"):
        plot.accuracy_curve(eps, {"standard": [1, 1, 1]}, norm="l1")
