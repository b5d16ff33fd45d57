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
RANKS_BOTH = (
    "reverses the ranks of both maps (r -> n - 1 - r), which negates both centred rank vectors: the same correlation"
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
}
