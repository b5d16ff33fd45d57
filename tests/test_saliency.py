"""Saliency maps against closed forms (linear and quadratic models), invariants, and the shipped models."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import ROOT, LinearClassifier
from scipy.stats import spearmanr
from torch import nn

from helpers.models import MnistCNN, load_pretrained
from helpers.saliency import (
    cascade_layers,
    foreground_share,
    gradient,
    integrated_gradients,
    mean_spearman,
    resolve_targets,
    sanity_check,
    smoothgrad,
)
from helpers.utils import set_seed

MODELS = ROOT / "data" / "models"


def small_cnn(activation: type[nn.Module] = nn.Softplus) -> nn.Sequential:
    """A 3-class CNN on 1 x 4 x 4 images, its logits varying by a few units over them;
    Softplus makes it smooth (IG's midpoint rule then converges fast)."""
    set_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        activation(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(64, 8),
        activation(),
        nn.Linear(8, 3),
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3.0)
    return model


class HalfSquaredNorm(nn.Module):
    """Two logits: 0.5 ||x||^2 (gradient x) and 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = 0.5 * x.flatten(1).square().sum(dim=1)
        return torch.stack([energy, torch.zeros_like(energy)], dim=1)


def weight_rows(model: LinearClassifier, targets: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return model.linear.weight.detach()[targets].view_as(like)


@pytest.fixture
def varied_images(linear_model, images) -> torch.Tensor:
    """The fixture's images (all of class 1) plus one image per class: the signs of its weights."""
    patterns = (linear_model.linear.weight.detach() > 0).float().view(3, 1, 4, 4)
    return torch.cat([images, patterns])


def pretrained(name: str) -> nn.Module:
    if not (MODELS / f"{name}.json").exists():
        pytest.skip(f"checkpoint {name} is not in {MODELS}")
    return load_pretrained(name, device="cpu")


# --- gradient ---------------------------------------------------------------------------------------------------


def test_gradient_of_linear_model_is_the_target_weight_row(linear_model, images):
    targets = torch.arange(8) % 3
    assert torch.allclose(gradient(linear_model, images, targets), weight_rows(linear_model, targets, images))
    assert torch.allclose(gradient(linear_model, images, 2), weight_rows(linear_model, torch.full((8,), 2), images))


def test_default_target_is_the_predicted_class(linear_model, varied_images):
    predicted = linear_model(varied_images).argmax(dim=1)
    assert len(predicted.unique()) == 3
    assert torch.equal(resolve_targets(linear_model, varied_images), predicted)
    assert torch.allclose(gradient(linear_model, varied_images), weight_rows(linear_model, predicted, varied_images))


def test_gradient_is_signed_and_matches_finite_differences(images):
    model = small_cnn()
    model.eval()
    grad = gradient(model, images, 1).double()
    assert (grad < 0).any() and (grad > 0).any()
    step = 1e-3
    direction = torch.randn_like(images)
    with torch.no_grad():
        slope = (model(images + step * direction)[:, 1] - model(images - step * direction)[:, 1]) / (2 * step)
    assert torch.allclose((grad * direction).flatten(1).sum(1).float(), slope, atol=1e-3)


def test_gradient_uses_eval_mode_restores_modes_and_leaves_input_alone(images):
    model = small_cnn().train()
    model[2].eval()  # a mixed state must be restored module by module
    modes = [m.training for m in model.modules()]
    original = images.clone()
    with torch.no_grad():  # the attribution must still get gradients
        first, second = gradient(model, images, 0), gradient(model, images, 0)
    assert torch.equal(first, second)  # dropout off
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(images, original) and not images.requires_grad
    assert torch.allclose(gradient(model, images, 0, batch_size=3), first, atol=1e-6)


def test_bad_arguments_raise_clear_errors(linear_model, images):
    with pytest.raises(ValueError, match="out of range"):
        gradient(linear_model, images, 3)
    with pytest.raises(ValueError, match=">= 0"):
        gradient(linear_model, images, -1)
    with pytest.raises(ValueError, match="shape"):
        gradient(linear_model, images, torch.zeros(5, dtype=torch.int64))
    with pytest.raises(TypeError, match="target"):
        gradient(linear_model, images, 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gradient(linear_model, images * 255)
    with pytest.raises(ValueError, match="n must"):
        smoothgrad(linear_model, images, n=0)
    with pytest.raises(ValueError, match="noise_level"):
        smoothgrad(linear_model, images, noise_level=-0.1)
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(linear_model, images, steps=0)
    with pytest.raises(ValueError, match="broadcast"):
        integrated_gradients(linear_model, images, baseline=torch.zeros(1, 1, 2, 2))


# --- SmoothGrad -------------------------------------------------------------------------------------------------


def test_smoothgrad_of_linear_model_is_the_gradient_for_any_noise(linear_model, varied_images):
    targets = resolve_targets(linear_model, varied_images)
    expected = weight_rows(linear_model, targets, varied_images)
    set_seed(0)
    smooth = smoothgrad(linear_model, varied_images, noise_level=3.0, n=20)  # copies change class; target stays
    assert torch.allclose(smooth, expected, atol=1e-6)
    squared = smoothgrad(linear_model, varied_images, noise_level=3.0, n=20, squared=True)
    assert torch.allclose(squared, expected.square(), atol=1e-6)


def test_smoothgrad_with_vanishing_noise_is_the_gradient(images):
    model = small_cnn()
    assert torch.allclose(smoothgrad(model, images, noise_level=1e-8, n=4), gradient(model, images), atol=1e-6)


def test_smoothgrad_noise_has_the_stated_scale_and_is_not_clamped(images):
    # Gradient of 0.5 ||x||^2 is x + noise: the mean is x, the mean square x^2 + sigma^2.
    model, sigma = HalfSquaredNorm(), 0.15 * 2.0
    set_seed(0)
    mean = smoothgrad(model, images, 0, n=2000, value_range=(-1.0, 1.0))
    set_seed(0)
    mean_square = smoothgrad(model, images, 0, n=2000, value_range=(-1.0, 1.0), squared=True)
    assert (mean - images).abs().max() < 5 * sigma / 2000**0.5
    assert abs((mean_square - images.square()).mean().item() - sigma**2) < 0.005


def test_smoothgrad_is_reproducible_and_independent_of_batch_size(images):
    model = small_cnn()
    set_seed(3)
    whole = smoothgrad(model, images, n=10)
    set_seed(3)
    chunked = smoothgrad(model, images, n=10, batch_size=7)
    set_seed(4)
    other_seed = smoothgrad(model, images, n=10)
    assert torch.allclose(whole, chunked, atol=1e-6)
    assert not torch.allclose(whole, other_seed, atol=1e-4)


# --- integrated gradients ---------------------------------------------------------------------------------------


def test_integrated_gradients_of_linear_model_is_input_times_weights(linear_model, images):
    targets = resolve_targets(linear_model, images)
    baseline = torch.full((1, 1, 4, 4), 0.5)
    expected = (images - baseline) * weight_rows(linear_model, targets, images)
    assert torch.allclose(integrated_gradients(linear_model, images, baseline=baseline, steps=3), expected, atol=1e-6)
    assert torch.allclose(
        integrated_gradients(linear_model, images, steps=1),
        images * weight_rows(linear_model, targets, images),
        atol=1e-6,
    )


@pytest.mark.parametrize("activation, steps, tolerance", [(nn.Softplus, 32, 1e-4), (nn.ReLU, 256, 5e-3)])
def test_integrated_gradients_are_complete(images, activation, steps, tolerance):
    model = small_cnn(activation).eval()
    attributions = integrated_gradients(model, images, 2, steps=steps, batch_size=1000)  # black baseline
    with torch.no_grad():
        difference = model(images)[:, 2] - model(torch.zeros_like(images))[:, 2]
    assert difference.abs().min() > 0.2  # a non-trivial check
    assert torch.allclose(attributions.flatten(1).sum(1), difference, atol=tolerance * difference.abs().max().item())


def test_integrated_gradients_are_independent_of_batch_size(images):
    model = small_cnn()
    assert torch.allclose(
        integrated_gradients(model, images, steps=10),
        integrated_gradients(model, images, steps=10, batch_size=6),
        atol=1e-6,
    )


# --- sanity check -----------------------------------------------------------------------------------------------


def test_cascade_runs_from_the_head_down():
    assert cascade_layers(MnistCNN()) == ["head", "features.7", "features.4", "features.2", "features.0"]


def test_sanity_check_on_linear_model_matches_the_reinitialized_weights(linear_model, images):
    state, targets = copy.deepcopy(linear_model.state_dict()), resolve_targets(linear_model, images)
    linear_model.train()
    set_seed(5)
    (record,) = sanity_check(linear_model, images)
    set_seed(5)
    fresh = copy.deepcopy(linear_model)
    fresh.linear.reset_parameters()
    old, new = linear_model.linear.weight.detach()[targets], fresh.linear.weight.detach()[targets]
    assert record.layer == "linear"
    assert record.spearman == pytest.approx(sum(spearmanr(a, b).statistic for a, b in zip(old, new)) / 8)
    assert record.spearman_abs == pytest.approx(
        sum(spearmanr(a, b).statistic for a, b in zip(old.abs(), new.abs())) / 8
    )
    assert torch.allclose(record.saliency, new.view_as(images))
    assert all(torch.equal(value, state[key]) for key, value in linear_model.state_dict().items())
    assert linear_model.training


class WithUnusedLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = small_cnn()
        self.unused = nn.Linear(3, 3)  # registered last: randomized first, changes nothing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_sanity_check_gives_one_for_a_layer_the_output_ignores(images):
    model = WithUnusedLayer()
    assert cascade_layers(model) == ["unused", "net.6", "net.4", "net.0"]
    records = sanity_check(model, images)
    assert [r.layer for r in records] == cascade_layers(model)
    assert records[0].spearman == pytest.approx(1.0) and records[0].spearman_abs == pytest.approx(1.0)
    assert records[-1].spearman < 0.5


def test_sanity_check_rejects_unknown_layers(images):
    with pytest.raises(ValueError, match="reset_parameters"):
        sanity_check(small_cnn(), images, layers=["nope"])


def test_mean_spearman_is_one_for_monotone_maps():
    a = torch.randn(4, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    assert mean_spearman(a, a.exp()) == pytest.approx(1.0)
    assert mean_spearman(a, -a) == pytest.approx(-1.0)


# --- foreground share -------------------------------------------------------------------------------------------


def test_foreground_share_against_hand_computed_values():
    x = torch.zeros(2, 1, 2, 2)
    x[:, 0, 0, 0] = 1.0  # one foreground pixel of four: chance 0.25
    saliency = torch.tensor([[1.0, -1.0], [1.0, 1.0]]).expand(2, 1, 2, 2).clone()
    saliency[1, 0, 0, 0] = -5.0
    share = foreground_share(saliency, x)
    assert torch.allclose(share, torch.tensor([0.25, 5 / 8]))
    assert torch.allclose(foreground_share(saliency, x, relative=True), torch.tensor([1.0, 2.5]))
    assert torch.allclose(foreground_share(saliency, x, threshold=1.0), torch.zeros(2))


# --- the shipped models -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_robust_gradients_are_more_aligned_with_the_digits(mnist_test):
    # Measured on these 200 digits: mnist_l2_robust 0.70 of the mass on the strokes (4.3 x chance),
    # mnist_standard 0.46 (2.7 x chance); chance is 0.18.
    x = mnist_test[0][:200]
    share_standard = foreground_share(gradient(pretrained("mnist_standard"), x), x).mean().item()
    share_robust = foreground_share(gradient(pretrained("mnist_l2_robust"), x), x).mean().item()
    chance = (x > 0.1).float().mean().item()
    assert share_standard > chance  # even a standard model's gradient is not noise on MNIST
    assert share_robust > 0.6
    assert share_robust > share_standard + 0.15


@pytest.mark.slow
def test_randomizing_the_trained_model_decorrelates_its_gradients(mnist_test):
    # Measured (50 digits): head 0.08 signed / 0.57 absolute; after every layer -0.01 / 0.12.
    x = mnist_test[0][:50]
    model = pretrained("mnist_standard")
    set_seed(0)
    records = sanity_check(model, x)
    assert [r.layer for r in records] == cascade_layers(model)
    assert records[0].spearman < 0.3  # re-initializing the head alone already scrambles the signs
    assert records[-1].spearman < 0.2 and records[-1].spearman_abs < 0.4
