"""Generated mutants that are equivalent to the solution, reviewed one by one.

A mutant is listed here only when no observable behaviour the exercise asks for can tell it
from the solution: for every input the exercise allows, the values, shape, dtype and device of
the result, the caller's tensors and the model (its weights and mode) come out the same, with
the reason. A mutant that merely survives the tests is not equivalent: it stays a survivor in
``GENERATED.md`` until a test catches it. Keys are the generated ids
(``python -m tests.mutation --list``).

Three kinds recur. *Dimensions*: ``dim=-1`` for ``dim=1``, a dropped ``dim`` that defaults
to the last one, ``keepdim`` folded away by a later ``flatten``, on tensors the code itself
makes 2-D (``flatten(1)``, N x K logits). *Symmetries*: a change applied to both operands of a
symmetric formula (a correlation of negated or exchanged rank vectors), or a change of sign of
zero-mean Gaussian noise, whose distribution it keeps (results that are random are compared in
distribution: no exercise asks for a particular draw). *Autograd history*: a missing
``detach()`` or ``no_grad()`` that leaves values unchanged and only lets a result keep its
graph; no exercise asks about the graph of a result, except where it says so
(``neuron_activation`` must be differentiable, ``top_activating`` computes without gradients),
and those mutants are not listed.
"""

from __future__ import annotations

DIM_2D = "the tensor is 2-D (N x values, after flatten(1)): dimension -1 is dimension 1"
LOGITS_2D = "the logits are N x K: dimension -1 is dimension 1"
NOISE_SIGN = "negates the noise sigma * N(0, 1): zero-mean Gaussian noise has the same distribution with either sign"
HISTORY = "values unchanged; the result only keeps its autograd graph, which the exercise does not ask about"
CHANNELS_1D = "the channel dimension is summed or maxed away before flatten(1): keepdim changes nothing after it"
MAPS_2D = "the tensor is 2-D (N x pixels, after flatten(1)): dimension -1 is dimension 1"
NCHW = "x is N x C x H x W (4-D): dimension -2 on is dimension 2 on, and -1 in view(N, -1, H, W) is the 1 left"
SCALE_FREE_STEP = (
    "the loss's mean is its sum / N: the step direction is the gradient's sign (L-inf) or the gradient over its norm "
    "(L2), both unchanged by a positive factor"
)
RANKS_BOTH = (
    "reverses the ranks of both maps (r -> n - 1 - r), which negates both centred rank vectors: the same correlation"
)
BATCH_SIZE = (
    "the batch size only bounds memory: each image's attack is the same in any batch (eval mode, no batch "
    "statistics; the steps are per image)"
)
EQUIVALENT: dict[str, str] = {
    # 01 input_gradient
    "01.input_gradient.call-removed.bfe521": "x.detach() is already a new tensor, which the function never writes to "
    "(autograd forbids in-place writes to a leaf that requires grad): the copy changes nothing observable",
    "01.input_gradient.call-removed.8674fd": "x.clone() of a tensor that requires grad is not a leaf, but "
    "autograd.grad differentiates with respect to it all the same: the same gradient, the caller's tensor untouched",
    "01.input_gradient.sign.bf3621": LOGITS_2D,
    # 01 rank_correlation
    "01.rank_correlation.keyword-dropped.efa291": DIM_2D + " (argsort's default)",
    "01.rank_correlation.keyword-dropped.bcb376": DIM_2D + " (argsort's default)",
    "01.rank_correlation.keyword-added.433faf": RANKS_BOTH,
    "01.rank_correlation.keyword-added.83922a": RANKS_BOTH,
    "01.rank_correlation.call-removed.fc0b06": "argsort's integer result has no autograd history: the same ranks",
    "01.rank_correlation.sign.d4a8f7": DIM_2D,
    "01.rank_correlation.sign.ebbe14": DIM_2D,
    "01.rank_correlation.sign.0384ad": DIM_2D,
    "01.rank_correlation.sign.81980b": DIM_2D,
    "01.rank_correlation.sign.2a588f": DIM_2D,
    "01.rank_correlation.sign.48c850": DIM_2D,
    "01.rank_correlation.operands.0f212d": "negates both centred rank vectors (the same code centres a and b): "
    "the same correlation",
    "01.rank_correlation.swap.45b1f6": "the correlation is symmetric in its two arguments",
    "01.rank_correlation.swap.577cc3": "the correlation is symmetric in its two arguments",
    # 02 noisy_copies
    "02.noisy_copies.swap.9bc75d": NOISE_SIGN + " (sigma = noise_level * (low - high))",
    "02.noisy_copies.operands.28d21a": NOISE_SIGN + " (sigma = noise_level * (low - high))",
    "02.noisy_copies.arithmetic.36475f": NOISE_SIGN + " (x - noise)",
    "02.noisy_copies.keyword-dropped.1f7dcc": "randn's default dtype is float32, the dtype of the course's images "
    "(the only inputs the exercise gives; its docstring asks for no other)",
    # 02 smoothgrad
    "02.smoothgrad.sign.d4a8f7": LOGITS_2D,
    # 02 deletion_drop
    "02.deletion_drop.keyword-added.c6a367": CHANNELS_1D,
    "02.deletion_drop.name.95e948": "the mean over channels is the sum / C: the same ranking of the pixels, the same "
    "top k",
    "02.deletion_drop.call-removed.3bb155": "topk's indices carry no autograd history: the same pixels deleted",
    "02.deletion_drop.sign.ebbe14": MAPS_2D,
    "02.deletion_drop.sign.0384ad": MAPS_2D,
    "02.deletion_drop.keyword-dropped.f12e5d": MAPS_2D + " (topk's default)",
    "02.deletion_drop.sign.81980b": MAPS_2D,
    "02.deletion_drop.sign.2a588f": NCHW,
    "02.deletion_drop.sign.99652c": NCHW,
    "02.deletion_drop.with-removed.cfaa5f": HISTORY + " (no torch.no_grad())",
    "02.deletion_drop.name.6da07e": HISTORY + " (torch.enable_grad() instead of torch.no_grad())",
    "02.deletion_drop.sign.48c850": LOGITS_2D,
    "02.deletion_drop.sign.1cf3bc": "the gathered logits are N x 1: dimension -1 is dimension 1",
    # 03 fgsm
    "03.fgsm.call-removed.bfe521": "x.detach() is already a new tensor, which the function never writes to: the "
    "copy changes nothing observable",
    "03.fgsm.call-removed.8674fd": "x.clone() of a tensor that requires grad is not a leaf, but autograd.grad "
    "differentiates with respect to it all the same: the same gradient, the caller's tensor untouched",
    "03.fgsm.keyword-dropped.3fdfc4": SCALE_FREE_STEP,
    "03.fgsm.constant.f270f2": SCALE_FREE_STEP,
    "03.fgsm.call-removed.0332f4": HISTORY + " (x + eps sign(grad) from the caller's x)",
    # 03 step_direction, project
    "03.step_direction.sign.d4a8f7": DIM_2D,
    "03.project.sign.d4a8f7": DIM_2D,
    "03.project.deleted.a99b8f": "project's docstring allows only 'linf' and 'l2' (unlike step_direction's, it asks "
    "for no ValueError): no allowed input reaches the raise",
    # 03 pgd
    "03.pgd.deleted.89fe81": HISTORY + " (x not detached: the returned x + delta keeps x's graph)",
    "03.pgd.call-removed.8674fd": HISTORY + " (x not detached: the returned x + delta keeps x's graph)",
    "03.pgd.call-removed.b447c8": "x is already the detached alias of the caller's x, and nothing writes to it in "
    "place (requires_grad_ on the alias does not touch the caller's tensor): the same values",
    "03.pgd.keyword-dropped.3fdfc4": SCALE_FREE_STEP,
    "03.pgd.constant.f270f2": SCALE_FREE_STEP,
    "03.pgd.call-removed.b7a0d4": HISTORY + " (the steps chain their graphs; the gradient of each step is the same)",
    # 04 targets
    "04.targets.call-removed.946ffe": "y.shape is a torch.Size, a tuple: torch.randint gets the same size",
    "04.targets.arithmetic.a53446": "y - s mod C for s uniform on 1 .. C - 1 is uniform on the C - 1 other classes, as "
    "y + s is: the same distribution, never y (no exercise asks for a particular draw)",
    # 04 attack_towards
    "04.attack_towards.keyword-dropped.41dfc4": BATCH_SIZE,
    "04.attack_towards.constant.9ebae1": BATCH_SIZE,
    "04.attack_towards.constant.c48ead": BATCH_SIZE,
    # 04 prediction_shares
    "04.prediction_shares.sign.bf3621": LOGITS_2D,
    # 05 linear_worst_margin
    "05.linear_worst_margin.sign.d4a8f7": LOGITS_2D,
    "05.linear_worst_margin.operands.39192f": "negates w_y - w_k, which is only used through its L1 or L2 norm",
    "05.linear_worst_margin.sign.81980b": "the margins are N x K: dimension -1 is dimension 1",
    "05.linear_worst_margin.sign.48c850": "the margins are N x K: dimension -1 is dimension 1",
    # 05 adversarial_training_step
    "05.adversarial_training_step.keyword-added.73bf39": "random_start=True is attacks.pgd's default",
    # 05 alignment_score
    "05.alignment_score.keyword-added.c6a367": CHANNELS_1D,
    "05.alignment_score.name.95e948": "the mean over channels is the sum / C, a factor that cancels in the share "
    "(mass on the foreground / total mass)",
    "05.alignment_score.call-removed.3bb155": HISTORY + " (the maps not detached)",
    "05.alignment_score.call-removed.aeeecb": "mass * a boolean mask is promoted to mass's dtype: the same values",
    "05.alignment_score.keyword-added.c57eb3": CHANNELS_1D,
    "05.alignment_score.sign.81980b": MAPS_2D,
    "05.alignment_score.sign.2a588f": MAPS_2D,
    # 06
    "06.neuron_activation.sign.bf3621": "the representation is N x D: dimension -1 is dimension 1",
    "06.neuron_activation.sign.ebbe14": "the gathered activations are N x 1: dimension -1 is dimension 1",
    "06.visualize_neuron.keyword-dropped.f03821": "torch.full infers int64 from an int fill value (neuron is an int "
    "in this branch)",
    "06.top_activating.keyword-dropped.2376c7": "the batch size only bounds memory: the representation of each image "
    "is the same in any batch (eval mode, no batch statistics)",
    "06.top_activating.constant.38b8b3": "the batch size only bounds memory: the same representation in any batch",
    "06.top_activating.constant.aedbb8": "the batch size only bounds memory: the same representation in any batch",
}
