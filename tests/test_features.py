"""Feature visualization and inversion: closed forms on a one-layer representation, invariants,
and the semantic change of large adversarial perturbations of a robust model."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT
from torch import nn

from helpers.attacks import pgd, predict
from helpers.features import invert_representation, maximize_neuron, noise_like, representation, top_activating
from helpers.models import MnistCNN, load_pretrained
from helpers.utils import set_seed

MODELS = ROOT / "data" / "models"


class OneLayerNet(nn.Module):
    """representation = ReLU(W flatten(x) + b) (6 neurons), head = linear: closed forms for small moves."""

    def __init__(self):
        super().__init__()
        set_seed(0)
        self.encoder = nn.Linear(16, 6)
        self.head = nn.Linear(6, 3)
        with torch.no_grad():
            self.encoder.bias.fill_(5.0)  # every neuron active on [0, 1] images: the map is affine there
        self.dropout = nn.Dropout(0.5)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.encoder(self.dropout(x.flatten(1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.representation(x))


def mnist_cnn() -> MnistCNN:
    set_seed(0)
    return MnistCNN(width=8, rep_dim=32).eval()


def pretrained(name: str) -> nn.Module:
    if not (MODELS / f"{name}.json").exists():
        pytest.skip(f"checkpoint {name} is not in {MODELS}")
    return load_pretrained(name, device="cpu")


def test_representation_is_the_models_and_independent_of_batch_size(mnist_test):
    model, x = mnist_cnn().train(), mnist_test[0][:10]
    whole = representation(model, x)
    assert model.training  # mode restored
    assert whole.shape == (10, 32) and (whole >= 0).all() and not whole.requires_grad
    assert torch.allclose(representation(model, x, batch_size=3), whole, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(model.eval().representation(x), whole)


def test_noise_like_is_seeded_uniform_and_leaves_the_global_state_alone(images):
    state = torch.get_rng_state()
    first, second = noise_like(images, seed=1), noise_like(images, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, second) and not torch.equal(first, noise_like(images, seed=2))
    assert first.shape == images.shape and first.dtype == images.dtype
    assert 0 <= first.min() and first.max() <= 1


def test_maximize_neuron_moves_along_the_weight_row_in_closed_form():
    # While the neuron stays active, its gradient is the constant W[k]: L2 ascent reaches start + eps W[k]/|W[k]|.
    model = OneLayerNet().train()
    start, eps = torch.full((2, 1, 4, 4), 0.5), 0.3
    result = maximize_neuron(model, 4, start, eps=eps, alpha=0.1, steps=6)
    row = model.encoder.weight.detach()[4]
    assert torch.allclose(result, (start + eps * row.view(1, 4, 4) / row.norm()).expand_as(start), atol=1e-5)
    assert model.training and model.dropout.training
    gain = representation(model, result)[:, 4] - representation(model, start)[:, 4]
    assert torch.allclose(gain, torch.full((2,), eps * row.norm().item()), atol=1e-4)


def test_maximize_neuron_accepts_one_neuron_per_image():
    model, start = OneLayerNet(), torch.full((2, 1, 4, 4), 0.5)
    both = maximize_neuron(model, torch.tensor([1, 3]), start, eps=0.3, alpha=0.1, steps=6)
    assert torch.allclose(both[0], maximize_neuron(model, 1, start[:1], eps=0.3, alpha=0.1, steps=6)[0], atol=1e-6)
    assert torch.allclose(both[1], maximize_neuron(model, 3, start[1:], eps=0.3, alpha=0.1, steps=6)[0], atol=1e-6)


@pytest.mark.parametrize("norm, eps", [("l2", 2.0), ("linf", 0.1)])
def test_maximize_neuron_raises_the_activation_within_the_ball(mnist_test, norm, eps):
    model = mnist_cnn()
    start = torch.cat([mnist_test[0][:3], noise_like(mnist_test[0][:1], seed=0)])
    original = start.clone()
    neuron = int(representation(model, start).amin(dim=0).argmax())  # active on every start: a gradient to climb
    before = representation(model, start)[:, neuron]
    result = maximize_neuron(model, neuron, start, eps=eps, alpha=eps / 4, steps=10, norm=norm)
    after = representation(model, result)[:, neuron]
    assert torch.equal(start, original)
    assert (before > 0).all() and (after > 1.5 * before).all()
    assert result.min() >= 0 and result.max() <= 1
    distance = (result - start).flatten(1).norm(dim=1) if norm == "l2" else (result - start).flatten(1).abs().amax(1)
    assert (distance <= eps + 1e-5).all()


def test_invert_representation_reduces_the_distance(mnist_test):
    model = mnist_cnn()
    target, start = mnist_test[0][:4], mnist_test[0][4:8]
    before = (representation(model, start) - representation(model, target)).norm(dim=1)
    result = invert_representation(model, target, start, eps=10.0, alpha=0.1, steps=30, batch_size=3)
    after = (representation(model, result) - representation(model, target)).norm(dim=1)
    assert (after < 0.5 * before).all()
    assert result.min() >= 0 and result.max() <= 1


def test_invert_representation_of_the_start_itself_stays_put(mnist_test):
    x = mnist_test[0][:3]
    assert torch.equal(invert_representation(mnist_cnn(), x, x.clone(), eps=1.0, alpha=0.1, steps=5), x)


def test_top_activating_matches_a_brute_force_sort(mnist_test):
    model, x = mnist_cnn(), mnist_test[0][:64]
    indices, activations = top_activating(model, x, 7, k=5, batch_size=10)
    with torch.no_grad():
        brute = model.representation(x)[:, 7]
    assert torch.allclose(activations, brute.sort(descending=True).values[:5])
    assert torch.allclose(brute[indices], activations)
    assert len(set(indices.tolist())) == 5


def test_bad_arguments_raise_clear_errors(mnist_test):
    model, x = mnist_cnn(), mnist_test[0][:4]
    with pytest.raises(ValueError, match="32 neurons"):
        maximize_neuron(model, 32, x, eps=1.0, alpha=0.1, steps=1)
    with pytest.raises(TypeError, match="neuron"):
        maximize_neuron(model, 1.5, x, eps=1.0, alpha=0.1, steps=1)
    with pytest.raises(ValueError, match="k must"):
        top_activating(model, x, 0, k=5)
    with pytest.raises(ValueError, match="32 neurons"):
        top_activating(model, x, -1, k=2)
    with pytest.raises(ValueError, match="same shape"):
        invert_representation(model, x, x[:2], eps=1.0, alpha=0.1, steps=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        invert_representation(model, x, x * 255, eps=1.0, alpha=0.1, steps=1)


@pytest.mark.slow
def test_large_attacks_on_a_robust_model_change_what_the_digit_looks_like(mnist_test):
    """A robust model's large targeted perturbations draw the target digit (Tsipras et al. 2019):
    another robust model, which ignores non-robust features, sees the target class in them far
    more often than in a standard model's, although the standard model is fooled more often.

    The judge is ``mnist_linf_robust`` (trained independently, for another threat model). A
    standard judge (``mnist_standard_seed1``) would not separate the two: standard models share
    non-robust features, so the standard model's examples transfer to it (measured at eps 4:
    0.875 of them labelled as the target, against 0.585 for the robust model's).
    Measured: judged as the target 0.70 (robust model's) vs 0.37 (standard model's); the
    attacks fool their own model 0.69 / 0.975 of the time.
    """
    x, y = mnist_test[0][:200], mnist_test[1][:200]
    target = (y + 1) % 10
    judge = pretrained("mnist_linf_robust")
    judged_target, fooled = {}, {}
    for name in ("mnist_l2_robust", "mnist_standard"):
        model = pretrained(name)
        adversarial = pgd(model, x, target, eps=4.0, alpha=0.4, steps=40, norm="l2", targeted=True, random_start=False)
        fooled[name] = (predict(model, adversarial).argmax(1) == target).float().mean().item()
        judged_target[name] = (predict(judge, adversarial).argmax(1) == target).float().mean().item()
    assert fooled["mnist_standard"] > fooled["mnist_l2_robust"]
    assert judged_target["mnist_l2_robust"] > 0.55
    assert judged_target["mnist_l2_robust"] > judged_target["mnist_standard"] + 0.2
