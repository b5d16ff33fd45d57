"""The datasets of Ilyas et al. (2019): targets, relabelling, bookkeeping, and that non-robust
features generalize (a model trained on D_det beats chance on the real test set)."""

from __future__ import annotations

import pytest
import torch
from conftest import CIFAR_SUBSET, ROOT, LinearClassifier
from torch import nn

from helpers.attacks import accuracy, pgd, predict
from helpers.data import class_names, load_dataset
from helpers.features import representation
from helpers.models import MnistCNN, MnistPoolCNN, build_model, load_pretrained
from helpers.nonrobust import make_d_det, make_d_rand, make_nonrobust_dataset, make_robust_dataset
from helpers.train import TrainConfig, train
from helpers.utils import set_seed

MODELS = ROOT / "data" / "models"


def pretrained(name: str) -> nn.Module:
    if not (MODELS / f"{name}.json").exists():
        pytest.skip(f"checkpoint {name} is not in {MODELS}")
    return load_pretrained(name, device="cpu")


@pytest.fixture
def ten_class_model() -> LinearClassifier:
    set_seed(0)
    return LinearClassifier(torch.randn(10, 16), torch.zeros(10))


@pytest.fixture
def labelled() -> tuple[torch.Tensor, torch.Tensor]:
    set_seed(2)
    return torch.rand(40, 1, 4, 4), torch.arange(40) % 10


def test_d_det_targets_the_next_class(ten_class_model, labelled):
    x, y = labelled
    data = make_d_det(ten_class_model, x, y, eps=0.5, alpha=0.1, steps=10, progress=False)
    assert torch.equal(data.y, (y + 1) % 10) and torch.equal(data.original_y, y)
    assert torch.equal(data.index, torch.arange(40)) and len(data) == 40
    assert ((data.x - x).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all()
    assert torch.equal(data.succeeded, predict(ten_class_model, data.x).argmax(1) == data.y)
    assert data.success_rate == pytest.approx(data.succeeded.float().mean().item())


def test_d_rand_targets_are_uniform_over_the_other_classes(ten_class_model):
    y = torch.arange(9000) % 10
    x = torch.zeros(9000, 1, 4, 4)
    data = make_d_rand(ten_class_model, x, y, eps=0.1, alpha=0.1, steps=0, progress=False, seed=1)
    assert (data.y != y).all() and data.y.min() >= 0 and data.y.max() <= 9
    counts = torch.bincount((data.y - y) % 10, minlength=10)  # shift 1 .. 9, 1000 each expected
    assert counts[0] == 0 and counts[1:].min() > 880 and counts[1:].max() < 1120
    for label in range(10):  # and every class is a target for every other class
        assert set(data.y[y == label].tolist()) == set(range(10)) - {label}
    again = make_d_rand(ten_class_model, x, y, eps=0.1, alpha=0.1, steps=0, progress=False, seed=1)
    other = make_d_rand(ten_class_model, x, y, eps=0.1, alpha=0.1, steps=0, progress=False, seed=2)
    assert torch.equal(again.y, data.y) and not torch.equal(other.y, data.y)


def test_keep_successful_drops_exactly_the_failures(ten_class_model, labelled):
    x, y = labelled
    everything = make_d_rand(ten_class_model, x, y, eps=0.3, alpha=0.1, steps=5, progress=False)
    kept = make_d_rand(ten_class_model, x, y, eps=0.3, alpha=0.1, steps=5, progress=False, keep_successful=True)
    assert 0 < everything.success_rate < 1  # some of each, so the filter is exercised
    assert kept.success_rate == everything.success_rate and kept.succeeded.all()
    assert torch.equal(kept.index, everything.index[everything.succeeded])
    assert torch.equal(kept.x, everything.x[everything.succeeded])
    assert torch.equal(kept.y, everything.y[everything.succeeded])
    assert torch.equal(kept.original_y, y[kept.index])


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder, self.dropout, self.head = nn.Linear(16, 8), nn.Dropout(0.5), nn.Linear(8, 10)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.dropout(self.encoder(x.flatten(1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.representation(x))


def test_inputs_and_modes_are_left_alone(labelled):
    x, y = labelled
    set_seed(0)
    model = TinyNet().train()
    x_copy, y_copy = x.clone(), y.clone()
    first = make_d_det(model, x, y, eps=0.5, alpha=0.1, steps=3, progress=False, batch_size=7)
    again = make_d_det(model, x, y, eps=0.5, alpha=0.1, steps=3, progress=False)
    assert torch.allclose(first.x, again.x, atol=1e-6)  # dropout was off
    make_robust_dataset(model, x, y, eps=0.5, alpha=0.1, steps=3, progress=False, batch_size=7)
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy)
    assert all(module.training for module in model.modules())


def test_representation_datasets_start_from_another_image_and_keep_labels(mnist_test):
    set_seed(0)
    model = MnistCNN(width=8, rep_dim=32).eval()
    x, y = mnist_test[0][:12], mnist_test[1][:12]
    starts, labels = make_robust_dataset(model, x, y, eps=5.0, alpha=0.1, steps=0, progress=False, seed=3)
    assert torch.equal(labels, y) and labels is not y
    matches = [(starts[i] == x).flatten(1).all(dim=1).nonzero().flatten().tolist() for i in range(12)]
    assert all(len(m) == 1 and m[0] != i for i, m in enumerate(matches))  # another image of the set
    inverted, _ = make_nonrobust_dataset(model, x, y, eps=5.0, alpha=0.1, steps=20, progress=False, seed=3)
    before = (representation(model, starts) - representation(model, x)).norm(dim=1)
    after = (representation(model, inverted) - representation(model, x)).norm(dim=1)
    assert (after < 0.7 * before).all()


def test_bad_arguments_raise_clear_errors(ten_class_model, labelled):
    x, y = labelled
    with pytest.raises(ValueError, match=r"range\(5\)"):
        make_d_det(ten_class_model, x, y, eps=0.5, alpha=0.1, steps=1, num_classes=5, progress=False)
    with pytest.raises(ValueError, match="num_classes"):
        make_d_rand(ten_class_model, x, y * 0, eps=0.5, alpha=0.1, steps=1, num_classes=1, progress=False)
    with pytest.raises(ValueError, match="shape"):
        make_d_det(ten_class_model, x, y[:5], eps=0.5, alpha=0.1, steps=1, progress=False)
    with pytest.raises(ValueError, match="at least 2"):
        make_robust_dataset(ten_class_model, x[:1], y[:1], eps=0.5, alpha=0.1, steps=1, progress=False)


def train_fresh_model(x: torch.Tensor, y: torch.Tensor) -> MnistCNN:
    set_seed(0)
    model = MnistCNN()
    train(model, x, y, TrainConfig(epochs=20, augment=False), progress=False)
    return model


@pytest.mark.slow
def test_a_model_trained_on_d_rand_generalizes_to_the_real_test_set(mnist_train, mnist_test):
    """D_rand at an eps where the digits still look like their original class: the new labels
    are random to a human, yet a model that learns them classifies the real test set.

    "Look like" is judged by ``mnist_linf_robust``, which ignores non-robust features.
    Measured (1,000 training digits, L2 eps 2.5, 20 steps; 63.2% of the attacks succeed and
    only those are kept): the robust judge gives 0.88 of them their original label (0.10 the
    new one), while the standard ``mnist_standard_seed1`` gives 0.63 the new one (non-robust
    features transfer); test accuracy 0.446 (0.34 to 0.45 over training seeds 0-3; paper,
    CIFAR-10: 63%).
    """
    x, y = mnist_train[0][:1000], mnist_train[1][:1000]
    data = make_d_rand(
        pretrained("mnist_standard"), x, y, eps=2.5, alpha=0.3, steps=20, keep_successful=True, progress=False
    )
    looks_original = (predict(pretrained("mnist_linf_robust"), data.x).argmax(1) == data.original_y).float().mean()
    test_accuracy = accuracy(train_fresh_model(data.x, data.y), *mnist_test)
    assert 0.4 < data.success_rate < 0.9
    assert looks_original > 0.75
    assert test_accuracy > 0.25


@pytest.mark.slow
def test_a_model_trained_on_d_det_generalizes_to_the_real_test_set(mnist_train, mnist_test):
    """D_det: every label is shifted to the next class, yet a model that learns them classifies
    the real test set above chance.

    On MNIST this needs a large eps, and the test documents the caveat: at L2 eps <= 3 the
    fresh model learns the shifted shapes and scores at or below chance (0.06 at eps 3); at
    eps 8 it generalizes, but the attacks also redraw the digit: ``mnist_linf_robust`` labels
    0.92 of the images as the new class. D_rand (above) is the clean demonstration.
    Measured (1,000 training digits, L2 eps 8, 20 steps; 99.9% succeed): test accuracy 0.345
    (0.35 to 0.39 over training seeds 0-3; paper, CIFAR-10: 44%).
    """
    x, y = mnist_train[0][:1000], mnist_train[1][:1000]
    data = make_d_det(pretrained("mnist_standard"), x, y, eps=8.0, alpha=1.0, steps=20, progress=False)
    test_accuracy = accuracy(train_fresh_model(data.x, data.y), *mnist_test)
    assert data.success_rate > 0.95
    assert test_accuracy > 0.25


@pytest.mark.slow
def test_notebook_04_defaults_beat_their_control(mnist_train, mnist_test):
    """Notebook 04's MNIST setting on a quarter of its digits: ``mnist_standard_pool`` as the
    source, targeted L-inf PGD eps 0.3 from the clean image (10 steps of 0.06, every image
    kept), a fresh ``MnistPoolCNN`` trained 4 epochs without augmentation; the control is
    D_det at eps 0 (the clean digits labelled y + 1), which can only teach "a 3 means 4".

    Measured (first 1,000 training digits): D_det 29.6%, D_rand 81.8%; the control
    1.1%, predicting y + 1 for 88.7% of the test digits. The notebook's 4,000 digits give
    D_det 52.1%, D_rand 87.0%, the control 0.2% (issue 13's goals: 45% and 60%), checked on the executed notebook by
    ``tests/test_notebooks.py``.
    """
    source = pretrained("mnist_standard_pool")
    x, y = mnist_train[0][:1000], mnist_train[1][:1000]
    attack = dict(eps=0.3, alpha=0.06, steps=10, norm="linf", progress=False)
    fresh = {
        "D_det": make_d_det(source, x, y, **attack),
        "D_rand": make_d_rand(source, x, y, **attack),
    }
    models = {name: fit_as_notebook_04(data.x, data.y) for name, data in fresh.items()}
    models["control"] = fit_as_notebook_04(x, (y + 1) % 10)
    test_x, test_y = mnist_test
    predicted = {name: predict(model, test_x).argmax(1) for name, model in models.items()}
    share = {name: (p == test_y).float().mean().item() for name, p in predicted.items()}
    next_share = (predicted["control"] == (test_y + 1) % 10).float().mean().item()
    assert share["D_det"] > 0.2  # chance 10%; the control shows what the visible digits give
    assert share["D_rand"] > 0.6
    assert share["control"] < 0.05 and next_share > 0.8


def fit_as_notebook_04(x: torch.Tensor, y: torch.Tensor) -> MnistPoolCNN:
    """A fresh ``MnistPoolCNN`` trained as notebook 04 trains it on MNIST (seed 0, 4 epochs, no augmentation)."""
    set_seed(0)
    model = MnistPoolCNN()
    train(model, x, y, TrainConfig(epochs=4, augment=False), progress=False)
    return model


@pytest.mark.slow
def test_cats_vs_dogs_relabelled_by_attacks_beat_chance():
    """Notebook 04's cats vs dogs on the shared CIFAR-10 subset (its CIFAR-10 path, the practicum
    authors' version) on the first 1,000 of its 2,000 training cats and dogs: a binary
    ``cifar_pool_cnn`` source (8 epochs, augmented), untargeted L2 PGD eps 1 (20 steps of
    0.1), the flips kept and labelled with the new prediction, a fresh one trained on them
    without augmentation, tested on the subset's 400 test cats and dogs (chance 50%).

    Measured: 78% of the attacks flip the source; the fresh model 63.5%, the same training on
    the true labels (the ceiling) 64.8%; with all 2,000 the notebook gives 63.7% and 68.5%.
    Took 39 s on one thread.
    """
    if not CIFAR_SUBSET.is_dir():
        pytest.skip(f"the shared CIFAR-10 subset is not at {CIFAR_SUBSET}")
    names = class_names("cifar10")
    cat, dog = names.index("cat"), names.index("dog")
    x_all, y_all = load_dataset("cifar10", "train", root=CIFAR_SUBSET)
    pets = torch.nonzero((y_all == cat) | (y_all == dog)).flatten()
    pets = pets[torch.randperm(len(pets), generator=torch.Generator().manual_seed(0))[:1000]]
    x, is_dog = x_all[pets], (y_all[pets] == dog).long()
    x_test, y_test = load_dataset("cifar10", "test", root=CIFAR_SUBSET)
    keep = (y_test == cat) | (y_test == dog)
    x_test, is_dog_test = x_test[keep], (y_test[keep] == dog).long()

    def binary_model(images, labels, augment):
        set_seed(0)
        model = build_model("cifar_pool_cnn", num_classes=2)
        train(model, images, labels, TrainConfig(epochs=8, augment=augment), progress=False)
        return model

    source = binary_model(x, is_dog, augment=True)
    x_adv = pgd(source, x, is_dog, eps=1.0, alpha=0.1, steps=20, norm="l2", random_start=False)
    new_label = predict(source, x_adv).argmax(dim=1)
    flipped = new_label != is_dog
    fresh = accuracy(binary_model(x_adv[flipped], new_label[flipped], augment=False), x_test, is_dog_test)
    ceiling = accuracy(binary_model(x, is_dog, augment=False), x_test, is_dog_test)
    assert flipped.float().mean() > 0.7
    assert fresh > 0.55  # chance 50%: the relabelled images carry the animals' features
    assert ceiling > 0.6
