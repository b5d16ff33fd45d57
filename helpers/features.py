"""What a model's learned features look like: neuron maximization and representation inversion.

The representation is the model's penultimate layer, ``model.representation(x)``: an
N x D matrix taken after its ReLU, so every value is >= 0 (D = 256 for ``MnistCNN``, the
pooled 4 x width channels for ``CifarResNet``); the logits are ``model.head`` of it.

Both visualizations are optimizations in pixel space, run by the package's one PGD loop
(``helpers.attacks.pgd``) with a ``loss_fn``: ``maximize_neuron`` ascends one coordinate
of the representation, ``invert_representation`` descends the distance to a target
representation. For robust models both give images that look like digits (their
representations are perceptually aligned, Engstrom et al. 2019); for standard models,
noise-like patterns.
"""

from __future__ import annotations

import torch
from torch import nn

from .attacks import pgd
from .utils import batches, check_images, check_labels, eval_mode, model_device


def representation(model: nn.Module, x: torch.Tensor, *, batch_size: int | None = None) -> torch.Tensor:
    """The penultimate-layer representation ``model.representation(x)``, batch by batch.

    Args:
        model: a course model (eval mode during the call, every module's mode restored).
        x: images, N x C x H x W in [0, 1].
        batch_size: images per forward pass (None: all at once).

    Returns:
        N x D activations (after the ReLU, so >= 0), on ``x``'s device, without gradient.
    """
    check_images(x)
    device = model_device(model)
    with eval_mode(model), torch.no_grad():
        return torch.cat(
            [model.representation(x[chunk].to(device)).to(x.device) for chunk in batches(x.shape[0], batch_size)]
        )


def noise_like(x: torch.Tensor, *, seed: int | None = None) -> torch.Tensor:
    """Uniform noise in [0, 1] with ``x``'s shape, dtype and device: a neutral start image.

    With a ``seed``, the noise comes from its own generator (the global random state is
    neither used nor changed); without, from the global one (see ``set_seed``).
    """
    generator = None if seed is None else torch.Generator(device=x.device).manual_seed(seed)
    return torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def maximize_neuron(
    model: nn.Module,
    neuron: int | torch.Tensor,
    start: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    norm: str = "l2",
    batch_size: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Images that excite one neuron of the representation: PGD ascent on its activation.

    Args:
        model: a course model (with ``representation``).
        neuron: index in ``range(D)`` of the coordinate to maximize, for every image, or an
            int64 tensor (N,) with one index per image.
        start: images to start from, N x C x H x W in [0, 1]: test images, or noise
            (``noise_like``).
        eps: the result stays within ``eps`` of ``start`` in the ``norm`` (pixel units);
            use a large value for an unconstrained search.
        alpha: step length; steps: number of steps.
        norm: ``"l2"`` (default) or ``"linf"``.
        batch_size, progress: as in ``pgd``.

    Returns:
        Images with ``start``'s shape in [0, 1], on ``start``'s device.
    """
    check_images(start, "start")
    neurons = _neuron_indices(model, start, neuron)
    return pgd(
        model,
        start,
        neurons,
        eps=eps,
        alpha=alpha,
        steps=steps,
        norm=norm,
        random_start=False,
        loss_fn=_activation,
        batch_size=batch_size,
        progress=progress,
    )


def _activation(model: nn.Module, x: torch.Tensor, neurons: torch.Tensor) -> torch.Tensor:
    """Per-example activation ``representation(x)[i, neurons[i]]``: the objective to ascend."""
    return model.representation(x).gather(1, neurons.unsqueeze(1)).squeeze(1)


def invert_representation(
    model: nn.Module,
    target_x: torch.Tensor,
    start: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    norm: str = "l2",
    batch_size: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Images whose representation matches ``target_x``'s: PGD descent on the distance.

    Minimizes ``||representation(x)[i] - representation(target_x)[i]||_2`` for each i,
    from ``start[i]`` (targeted PGD on that distance). For a robust model the result
    looks like ``target_x`` even from an unrelated start; for a standard model it keeps
    looking like the start.

    Args:
        model: a course model (with ``representation``).
        target_x: images whose representations to match, N x C x H x W in [0, 1].
        start: images to start from, same shape, in [0, 1] (other images, or ``noise_like``).
        eps: the result stays within ``eps`` of ``start`` in the ``norm`` (pixel units).
        alpha, steps, norm, batch_size, progress: as in ``pgd``.

    Returns:
        Images with ``start``'s shape in [0, 1], on ``start``'s device.
    """
    check_images(target_x, "target_x")
    check_images(start, "start")
    if target_x.shape != start.shape:
        raise ValueError(
            f"target_x and start must have the same shape, got {tuple(target_x.shape)} and {tuple(start.shape)}"
        )
    goal = representation(model, target_x, batch_size=batch_size).to(model_device(model))

    def distance(model: nn.Module, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return (model.representation(x) - goal[index]).norm(dim=1)

    index = torch.arange(start.shape[0], device=start.device)  # row of each image's goal, chunked with it
    return pgd(
        model,
        start,
        index,
        eps=eps,
        alpha=alpha,
        steps=steps,
        norm=norm,
        targeted=True,
        random_start=False,
        loss_fn=distance,
        batch_size=batch_size,
        progress=progress,
    )


def top_activating(
    model: nn.Module, x: torch.Tensor, neuron: int, k: int, *, batch_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` images of ``x`` that excite representation neuron ``neuron`` the most.

    Returns:
        ``(indices, activations)``: int64 (k,) rows of ``x`` and their activations (k,),
        highest first, on ``x``'s device.
    """
    if isinstance(neuron, bool) or not isinstance(neuron, int):
        raise TypeError(f"neuron must be an int, got {type(neuron).__name__}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be an integer in [1, {x.shape[0]}] (the number of images), got {k!r}")
    activations = representation(model, x, batch_size=batch_size)
    _check_neuron_range(torch.tensor([neuron]), activations.shape[1])
    values, indices = activations[:, neuron].topk(k)
    return indices, values


def _neuron_indices(model: nn.Module, x: torch.Tensor, neuron: int | torch.Tensor) -> torch.Tensor:
    """``neuron`` as an int64 (N,) tensor on ``x``'s device, checked against the representation's size."""
    if isinstance(neuron, int) and not isinstance(neuron, bool):
        neurons = torch.full((x.shape[0],), neuron, dtype=torch.int64, device=x.device)
    elif isinstance(neuron, torch.Tensor):
        check_labels(neuron, x.shape[0], name="neuron")
        neurons = neuron.to(device=x.device, dtype=torch.int64)
    else:
        raise TypeError(f"neuron must be an int or an int64 tensor of shape (N,), got {type(neuron).__name__}")
    _check_neuron_range(neurons, representation(model, x[:1]).shape[1])
    return neurons


def _check_neuron_range(neurons: torch.Tensor, size: int) -> None:
    if neurons.numel() and (neurons.min().item() < 0 or neurons.max().item() >= size):
        raise ValueError(
            f"neuron index out of range: the representation has {size} neurons, "
            f"got indices in [{neurons.min().item()}, {neurons.max().item()}]"
        )
