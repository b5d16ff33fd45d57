"""Oracles for FGSM / PGD: closed forms on linear models, invariants, argument checks."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from conftest import LinearClassifier
from torch import nn

from helpers import attacks
from helpers.models import MnistCNN, load_pretrained
from helpers.utils import set_seed

NORMS = ("linf", "l2")


def norm_of(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


@pytest.fixture
def cnn() -> MnistCNN:
    set_seed(0)
    return MnistCNN(width=4, rep_dim=16)


@pytest.fixture(scope="module")
def standard() -> nn.Module:
    return load_pretrained("mnist_standard", device="cpu")


# --- closed forms on linear models -------------------------------------------------------


def test_fgsm_matches_closed_form_on_linear_model(linear_model, images):
    y = torch.arange(len(images)) % 3
    weight, bias = linear_model.linear.weight, linear_model.linear.bias
    with torch.no_grad():
        probs = F.softmax(images.flatten(1) @ weight.T + bias, dim=1)
        grad = (probs - F.one_hot(y, 3).float()) @ weight  # d CE / d x for a linear model
        expected = (images + 0.1 * grad.sign().view_as(images)).clamp(0, 1)
    x_adv = attacks.fgsm(linear_model, images, y, eps=0.1)
    assert torch.allclose(x_adv, expected, atol=1e-6)


def two_class_model() -> tuple[LinearClassifier, torch.Tensor]:
    """Two classes: the cross-entropy of class 0 grows with d . x, d = w1 - w0."""
    set_seed(3)
    weight = torch.randn(2, 16)
    return LinearClassifier(weight, torch.zeros(2)), weight[1] - weight[0]


def test_pgd_linf_reaches_the_box_corner_on_linear_model(images):
    model, d = two_class_model()
    y = torch.zeros(len(images), dtype=torch.long)
    # The maximizer of d . x over the box and [0, 1] moves every pixel by eps along sign(d), clipped.
    expected = (images + 0.2 * d.sign().view(1, 1, 4, 4)).clamp(0, 1)
    x_adv = attacks.pgd(model, images, y, eps=0.2, alpha=0.05, steps=10, norm="linf")
    assert torch.allclose(x_adv, expected, atol=1e-6)


def test_pgd_l2_reaches_the_sphere_along_the_weight_direction():
    model, d = two_class_model()
    x = torch.full((4, 1, 4, 4), 0.5)  # far enough from 0 and 1 that clamping never binds
    y = torch.zeros(4, dtype=torch.long)
    expected = x + 0.3 * (d / d.norm()).view(1, 1, 4, 4)
    x_adv = attacks.pgd(model, x, y, eps=0.3, alpha=0.1, steps=10, norm="l2", random_start=False)
    assert torch.allclose(x_adv, expected, atol=1e-5)


def test_targeted_pgd_descends_towards_the_target(images):
    model, d = two_class_model()
    target = torch.ones(len(images), dtype=torch.long)
    # Lowering CE(target = 1) raises d . x: the same corner as the untargeted attack on class 0.
    expected = (images + 0.2 * d.sign().view(1, 1, 4, 4)).clamp(0, 1)
    x_adv = attacks.pgd(model, images, target, eps=0.2, alpha=0.05, steps=10, targeted=True)
    assert torch.allclose(x_adv, expected, atol=1e-6)


def test_custom_loss_fn_is_ascended(images):
    model, _ = two_class_model()
    x_adv = attacks.pgd(
        model, images, None, eps=0.2, alpha=0.05, steps=10, loss_fn=lambda m, x, y: -m(x)[:, 1]
    )  # push the class-1 logit down
    w1 = model.linear.weight[1].detach()  # its gradient is -w1 everywhere
    expected = (images - 0.2 * w1.sign().view(1, 1, 4, 4)).clamp(0, 1)
    assert torch.allclose(x_adv, expected, atol=1e-6)


# --- invariants --------------------------------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("eps", [0.05, 0.3, 2.0])
def test_perturbation_stays_in_ball_and_image_range(cnn, mnist_test, norm, eps):
    x, y = mnist_test[0][:16], mnist_test[1][:16]
    x_adv = attacks.pgd(cnn, x, y, eps=eps, alpha=eps / 4, steps=5, norm=norm, restarts=2)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (norm_of(x_adv - x, norm) <= eps * (1 + 1e-5) + 1e-6).all()


@pytest.mark.parametrize("norm", NORMS)
def test_eps_zero_changes_nothing(cnn, mnist_test, norm):
    x, y = mnist_test[0][:8], mnist_test[1][:8]
    x_adv = attacks.pgd(cnn, x, y, eps=0.0, alpha=0.1, steps=3, norm=norm, restarts=2)
    assert torch.equal(x_adv, x)
    assert torch.equal(attacks.fgsm(cnn, x, y, eps=0), x)


@pytest.mark.parametrize("norm", NORMS)
def test_random_start_is_uniform_in_the_ball(norm):
    set_seed(0)
    x = torch.full((4000, 1, 2, 2), 0.5)
    delta = attacks.THREAT_MODELS[norm].random_start(x, 0.4)
    radii = norm_of(delta, norm)
    assert (radii <= 0.4 + 1e-6).all()
    if norm == "linf":  # each coordinate U(-eps, eps): mean 0, variance eps^2 / 3
        assert abs(delta.mean().item()) < 0.01
        assert delta.var().item() == pytest.approx(0.4**2 / 3, rel=0.05)
    else:  # uniform in a 4-d ball: P(radius <= r) = (r / eps)^4
        assert (radii <= 0.4 * 0.5**0.25).float().mean().item() == pytest.approx(0.5, abs=0.03)


def test_iterate_is_clamped_not_only_the_forward_input():
    """With pixels saturated at 1 and a gradient pushing further up, the iterate stays at 1
    and the other pixels still move (clamping inside the forward pass would zero their gradient)."""
    model, d = two_class_model()
    x = torch.ones(2, 1, 4, 4)
    y = torch.zeros(2, dtype=torch.long)
    x_adv = attacks.pgd(model, x, y, eps=0.3, alpha=0.1, steps=5, random_start=False)
    expected = (x + 0.3 * d.sign().view(1, 1, 4, 4)).clamp(0, 1)
    assert torch.allclose(x_adv, expected, atol=1e-6)


def test_inputs_are_not_mutated_and_model_mode_is_restored(cnn, mnist_test):
    x, y = mnist_test[0][:8].clone(), mnist_test[1][:8].clone()
    x_copy, y_copy = x.clone(), y.clone()
    seen_modes = []
    cnn.features.register_forward_hook(lambda module, inputs, output: seen_modes.append(module.training))
    cnn.train()
    cnn.head.eval()  # a mixed state must come back exactly
    attacks.pgd(cnn, x, y, eps=0.1, alpha=0.02, steps=3)
    attacks.accuracy(cnn, x, y)
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy)
    assert seen_modes and not any(seen_modes)  # eval mode during the attack
    assert cnn.training and cnn.features.training and not cnn.head.training
    assert all(p.grad is None for p in cnn.parameters())  # no gradients left on the weights


def test_pgd_works_inside_no_grad(cnn, mnist_test):
    x, y = mnist_test[0][:4], mnist_test[1][:4]
    set_seed(0)
    expected = attacks.pgd(cnn, x, y, eps=0.1, alpha=0.05, steps=2)
    set_seed(0)
    with torch.no_grad():
        assert torch.equal(attacks.pgd(cnn, x, y, eps=0.1, alpha=0.05, steps=2), expected)


@pytest.mark.parametrize("norm", NORMS)
def test_chunked_equals_unchunked(cnn, mnist_test, norm):
    x, y = mnist_test[0][:10], mnist_test[1][:10]
    kwargs = dict(eps=0.5, alpha=0.1, steps=4, norm=norm, random_start=False)
    whole = attacks.pgd(cnn, x, y, **kwargs)
    chunked = attacks.pgd(cnn, x, y, batch_size=3, **kwargs)
    assert torch.allclose(whole, chunked, atol=1e-6)
    assert attacks.accuracy(cnn, x, y, batch_size=3) == attacks.accuracy(cnn, x, y, batch_size=10)


def test_accuracy_matches_a_direct_count(linear_model, images):
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    expected = (linear_model(images).argmax(1) == y).float().mean().item()
    assert attacks.accuracy(linear_model, images, y, batch_size=3) == pytest.approx(expected)


# --- behaviour on the shipped standard model ------------------------------------------------


@pytest.mark.parametrize("norm,eps_values", [("linf", [0.0, 0.05, 0.1, 0.2, 0.3]), ("l2", [0.0, 0.5, 1.0, 2.0, 3.0])])
def test_robust_accuracy_falls_as_eps_grows(standard, mnist_test, norm, eps_values):
    x, y = mnist_test[0][:200], mnist_test[1][:200]
    accs = []
    for eps in eps_values:
        set_seed(0)
        attack = functools.partial(attacks.pgd, eps=eps, alpha=eps / 8, steps=20, norm=norm)
        accs.append(attacks.accuracy(standard, x, y, attack=attack))
    assert accs[0] == attacks.accuracy(standard, x, y)
    assert all(later <= earlier + 0.01 for earlier, later in zip(accs, accs[1:])), accs
    assert accs[-1] < accs[0] - 0.5, accs  # large perturbations break a standard model


def test_robust_accuracy_falls_with_more_steps(standard, mnist_test):
    x, y = mnist_test[0][:200], mnist_test[1][:200]
    accs = []
    for steps in (1, 5, 20):
        set_seed(0)
        accs.append(
            attacks.accuracy(standard, x, y, attack=functools.partial(attacks.pgd, eps=0.1, alpha=0.025, steps=steps))
        )
    assert accs[0] >= accs[1] - 0.01 and accs[1] >= accs[2] - 0.01, accs
    assert accs[2] < accs[0], accs


@pytest.mark.parametrize("norm", NORMS)
def test_restarts_are_never_weaker_than_one_start(standard, mnist_test, norm):
    x, y = mnist_test[0][:200], mnist_test[1][:200]
    eps = 0.08 if norm == "linf" else 1.0
    kwargs = dict(eps=eps, alpha=eps / 4, steps=5, norm=norm)
    set_seed(0)
    single = attacks.pgd(standard, x, y, **kwargs)
    set_seed(0)  # the first restart replays the single run exactly
    several = attacks.pgd(standard, x, y, restarts=4, **kwargs)
    fooled_single = attacks.predict(standard, single).argmax(1) != y
    fooled_several = attacks.predict(standard, several).argmax(1) != y
    assert (fooled_several | ~fooled_single).all()  # every success of one start is kept
    assert fooled_several.sum() >= fooled_single.sum()


@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("l2", 4.0)])
def test_targeted_attacks_reach_the_target_on_the_standard_model(standard, mnist_test, norm, eps):
    x, y = mnist_test[0][:100], mnist_test[1][:100]
    target = (y + 1) % 10
    set_seed(0)
    x_adv = attacks.pgd(standard, x, target, eps=eps, alpha=eps / 10, steps=40, norm=norm, targeted=True)
    reached = (attacks.predict(standard, x_adv).argmax(1) == target).float().mean().item()
    assert reached >= 0.9, reached


# --- argument checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(eps=-0.1), ValueError, "eps"),
        (dict(eps=float("nan")), ValueError, "eps"),
        (dict(alpha=-1.0), ValueError, "alpha"),
        (dict(steps=2.5), ValueError, "steps"),
        (dict(restarts=0), ValueError, "restarts"),
        (dict(norm="l1"), ValueError, "norm"),
    ],
)
def test_bad_attack_arguments_raise_clear_errors(linear_model, images, kwargs, error, match):
    settings = dict(eps=0.1, alpha=0.01, steps=2) | kwargs
    with pytest.raises(error, match=match):
        attacks.pgd(linear_model, images, torch.zeros(len(images), dtype=torch.long), **settings)


def test_bad_inputs_raise_clear_errors(linear_model, images):
    y = torch.zeros(len(images), dtype=torch.long)
    with pytest.raises(ValueError, match="normalized"):
        attacks.pgd(linear_model, (images - 0.5) / 0.2, y, eps=0.1, alpha=0.01, steps=1)
    with pytest.raises(ValueError, match="255"):
        attacks.fgsm(linear_model, images * 255, y, eps=0.1)
    with pytest.raises(ValueError, match="N x C x H x W"):
        attacks.fgsm(linear_model, images[0], y, eps=0.1)
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        attacks.fgsm(linear_model, images, y[:3], eps=0.1)
    with pytest.raises(TypeError, match="integer class indices"):
        attacks.fgsm(linear_model, images, y.float(), eps=0.1)
    with pytest.raises(ValueError, match="loss_fn"):
        attacks.pgd(linear_model, images, None, eps=0.1, alpha=0.01, steps=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_with_cpu_inputs_returns_cpu_tensors(mnist_test):
    model = load_pretrained("mnist_standard", device="cuda")
    x, y = mnist_test[0][:32], mnist_test[1][:32]
    x_adv = attacks.pgd(model, x, y, eps=0.1, alpha=0.02, steps=5)
    assert x_adv.device == x.device
    assert (norm_of(x_adv - x, "linf") <= 0.1 + 1e-6).all()
