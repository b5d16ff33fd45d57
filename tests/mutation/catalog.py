"""The catalog: plausible wrong answers (mutants) and different correct answers (alternatives).

Each entry names a notebook, one answer cell (its nbgrader ``grade_id``) and the edits made
to that cell's solution, the code between ``### BEGIN SOLUTION`` and ``### END SOLUTION``:
``(old, new)`` pairs, where ``old`` occurs exactly once in the solution (``WHOLE`` stands for
all of it, re-indented as the solution is). Every mutant must lose points; every
alternative must keep full marks.
"""

from __future__ import annotations

from dataclasses import dataclass

WHOLE = "<the whole solution>"


@dataclass(frozen=True)
class Entry:
    """A mutant or an alternative (``kind``): ``edits`` to the solution of ``cell`` in ``notebook``."""

    kind: str
    name: str
    notebook: str
    cell: str
    edits: tuple[tuple[str, str], ...]
    description: str


def mutant(name: str, notebook: str, cell: str, description: str, *edits: tuple[str, str]) -> Entry:
    return Entry("mutant", name, notebook, cell, edits, description)


def alternative(name: str, notebook: str, cell: str, description: str, *edits: tuple[str, str]) -> Entry:
    return Entry("alternative", name, notebook, cell, edits, description)


NB1, NB2, NB3 = "01_gradient_saliency", "02_smoothgrad", "03_pgd_attacks"
NB4, NB5, NB6 = "04_nonrobust_features", "05_robust_models", "06_feature_visualization"

MUTANTS = (
    # 01: input_gradient, rank_correlation, randomized_copy
    mutant(
        "saliency-of-probability",
        NB1,
        "input_gradient",
        "gradient of the softmax probability, not the logit",
        ("model(x).gather(", "model(x).softmax(dim=1).gather("),
    ),
    mutant(
        "saliency-of-predicted-class",
        NB1,
        "input_gradient",
        "saliency of the wrong class: the predicted one, not the target",
        (
            "score = model(x).gather(1, target.view(-1, 1)).sum()",
            "logits = model(x)\n        score = logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()",
        ),
    ),
    mutant(
        "saliency-train-mode",
        NB1,
        "input_gradient",
        "no eval mode (dropout active while differentiating)",
        ("with eval_mode(model), torch.enable_grad():", "with torch.enable_grad():"),
    ),
    mutant(
        "saliency-no-enable-grad",
        NB1,
        "input_gradient",
        "no torch.enable_grad(): fails inside torch.no_grad()",
        ("with eval_mode(model), torch.enable_grad():", "with eval_mode(model):"),
    ),
    mutant(
        "saliency-grad-on-caller-tensor",
        NB1,
        "input_gradient",
        "switches the caller's tensor to requires_grad (no detached copy)",
        ("x = x.detach().clone().requires_grad_(True)", "x = x.requires_grad_(True)"),
    ),
    mutant(
        "spearman-argsort-once",
        NB1,
        "rank_correlation",
        "one argsort: the sorting permutation, not the ranks",
        (".argsort(dim=1).argsort(dim=1)", ".argsort(dim=1)"),
    ),
    mutant(
        "spearman-no-ranks",
        NB1,
        "rank_correlation",
        "Pearson correlation of the values (no ranks)",
        (".flatten(1).argsort(dim=1).argsort(dim=1).double()", ".flatten(1).double()"),
    ),
    mutant(
        "spearman-not-centered",
        NB1,
        "rank_correlation",
        "ranks not centred (cosine similarity of the ranks)",
        ("return ranks - ranks.mean(dim=1, keepdim=True)", "return ranks"),
    ),
    mutant(
        "randomize-in-place",
        NB1,
        "randomized_copy",
        "no copy: re-initializes the trained model itself",
        ("copy.deepcopy(model)", "model"),
    ),
    mutant(
        "randomize-shallow-copy",
        NB1,
        "randomized_copy",
        "shallow copy.copy: the layers are shared with the original",
        ("copy.deepcopy(model)", "copy.copy(model)"),
    ),
    mutant(
        "randomize-first-layer-only",
        NB1,
        "randomized_copy",
        "re-initializes only the first named layer",
        ("for name in layers:", "for name in layers[:1]:"),
    ),
    # 02: noisy_copies, smoothgrad, deletion_drop
    mutant(
        "noise-not-scaled-to-range",
        NB2,
        "noisy_copies",
        "noise not scaled to the input range (sigma = noise_level)",
        ("sigma = noise_level * (high - low)", "sigma = noise_level"),
    ),
    mutant(
        "noise-clamped",
        NB2,
        "noisy_copies",
        "noisy copies clamped to the value range",
        ("return x.unsqueeze(0) + sigma * torch.randn(", "return (x.unsqueeze(0) + sigma * torch.randn("),
        ("device=x.device)", "device=x.device)).clamp(low, high)"),
    ),
    mutant(
        "noise-shared-by-copies",
        NB2,
        "noisy_copies",
        "one noise draw shared by all n copies",
        (
            "torch.randn((n, *x.shape), dtype=x.dtype, device=x.device)",
            "torch.randn(x.shape, dtype=x.dtype, device=x.device).expand(n, *x.shape)",
        ),
    ),
    mutant(
        "noise-variance-as-std",
        NB2,
        "noisy_copies",
        "sigma squared: the variance used as the standard deviation",
        ("sigma = noise_level * (high - low)", "sigma = (noise_level * (high - low)) ** 2"),
    ),
    mutant(
        "smoothgrad-targets-interleaved",
        NB2,
        "smoothgrad",
        "targets repeated with repeat_interleave: copies get other images' classes",
        ("target.repeat(n)", "target.repeat_interleave(n)"),
    ),
    mutant(
        "smoothgrad-sum",
        NB2,
        "smoothgrad",
        "sums the gradients over the copies instead of averaging",
        (".mean(dim=0)", ".sum(dim=0)"),
    ),
    mutant(
        "smoothgrad-no-noise",
        NB2,
        "smoothgrad",
        "differentiates at the clean image n times (noise never added)",
        ("noisy_copies(x, noise_level, n).flatten(0, 1)", "x.detach().repeat(n, 1, 1, 1)"),
    ),
    mutant(
        "smoothgrad-train-mode",
        NB2,
        "smoothgrad",
        "no eval mode (dropout active while differentiating)",
        ("with eval_mode(model), torch.enable_grad():", "with torch.enable_grad():"),
    ),
    mutant(
        "deletion-signed-ranking",
        NB2,
        "deletion_drop",
        "pixels ranked by signed value, not magnitude",
        ("saliency_map.detach().abs().sum(dim=1)", "saliency_map.detach().sum(dim=1)"),
    ),
    mutant(
        "deletion-least-salient",
        NB2,
        "deletion_drop",
        "deletes the least salient pixels",
        ("magnitude.topk(k, dim=1)", "magnitude.topk(k, dim=1, largest=False)"),
    ),
    mutant(
        "deletion-first-channel",
        NB2,
        "deletion_drop",
        "ranks pixels by the first channel's saliency only",
        ("saliency_map.detach().abs().sum(dim=1)", "saliency_map.detach()[:, 0].abs()"),
    ),
    mutant(
        "deletion-sign-flipped",
        NB2,
        "deletion_drop",
        "rise instead of fall: logit after deletion minus before",
        ("drop = model(x) - model(x_deleted)", "drop = model(x_deleted) - model(x)"),
    ),
    mutant(
        "deletion-floor",
        NB2,
        "deletion_drop",
        "k rounded down (int) instead of to the nearest",
        ("k = round(fraction * magnitude.shape[1])", "k = int(fraction * magnitude.shape[1])"),
    ),
    # 03: fgsm, step_direction, project, pgd
    mutant(
        "fgsm-descent",
        NB3,
        "fgsm",
        "gradient descent instead of ascent",
        ("x.detach() + eps * grad.sign()", "x.detach() - eps * grad.sign()"),
    ),
    mutant(
        "fgsm-no-clamp",
        NB3,
        "fgsm",
        "no clamp to [0, 1]",
        ("return (x.detach() + eps * grad.sign()).clamp(0, 1)", "return x.detach() + eps * grad.sign()"),
    ),
    mutant(
        "fgsm-raw-gradient",
        NB3,
        "fgsm",
        "steps along the raw gradient, not its sign",
        ("eps * grad.sign()", "eps * grad"),
    ),
    mutant(
        "l2-step-unnormalized",
        NB3,
        "step_direction",
        "un-normalized L2 step (the raw gradient)",
        ("return grad / norms.view(-1, *([1] * (grad.dim() - 1)))", "return grad"),
    ),
    mutant(
        "l2-step-batch-norm",
        NB3,
        "step_direction",
        "L2 step normalized by the norm of the whole batch, not per image",
        (
            "norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12)",
            "norms = grad.norm().clamp_min(1e-12).expand(grad.shape[0])",
        ),
    ),
    mutant(
        "l2-step-zero-division",
        NB3,
        "step_direction",
        "no guard: a zero gradient gives NaN",
        (".norm(dim=1).clamp_min(1e-12)", ".norm(dim=1)"),
    ),
    mutant(
        "linf-no-projection",
        NB3,
        "project",
        "no projection onto the L-inf eps-ball",
        ("return delta.clamp(-eps, eps)", "return delta"),
    ),
    mutant(
        "l2-projection-always-rescales",
        NB3,
        "project",
        "L2: every perturbation rescaled to length eps, even inside the ball",
        ("(eps / norms).clamp(max=1.0)", "eps / norms"),
    ),
    mutant(
        "l2-projection-by-clipping",
        NB3,
        "project",
        "L2 ball projected by clipping each pixel to [-eps, eps]",
        ('if norm == "linf":', 'if norm in ("linf", "l2"):'),
    ),
    mutant(
        "pgd-descent",
        NB3,
        "pgd",
        "gradient descent instead of ascent",
        ("sign = -1.0 if targeted else 1.0", "sign = 1.0 if targeted else -1.0"),
    ),
    mutant(
        "pgd-no-projection",
        NB3,
        "pgd",
        "no projection onto the eps-ball",
        ("x_adv = (x + project(x_adv - x, eps, norm)).clamp(0, 1)", "x_adv = x_adv.clamp(0, 1)"),
    ),
    mutant(
        "pgd-no-clamp",
        NB3,
        "pgd",
        "no clamp to [0, 1]",
        ("x_adv = (x + project(x_adv - x, eps, norm)).clamp(0, 1)", "x_adv = x + project(x_adv - x, eps, norm)"),
    ),
    mutant(
        "pgd-projects-each-step",
        NB3,
        "pgd",
        "projects each step, not the total perturbation",
        (
            "x_adv = x_adv.detach() + sign * alpha * step_direction(grad, norm)",
            "step = sign * alpha * step_direction(grad, norm)",
        ),
        (
            "x_adv = (x + project(x_adv - x, eps, norm)).clamp(0, 1)",
            "x_adv = (x_adv.detach() + project(step, eps, norm)).clamp(0, 1)",
        ),
    ),
    mutant(
        "pgd-train-mode",
        NB3,
        "pgd",
        "no eval mode (dropout and batch norm in training mode during the attack)",
        ("with eval_mode(model), torch.enable_grad():", "with torch.enable_grad():"),
    ),
    mutant(
        "pgd-targeted-ignored",
        NB3,
        "pgd",
        "targeted attacks also ascend the loss",
        ("sign = -1.0 if targeted else 1.0", "sign = 1.0"),
    ),
    mutant(
        "pgd-random-start",
        NB3,
        "pgd",
        "starts at a random point of the ball, not at x",
        ("x_adv = x.clone()", "x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)"),
    ),
    # 04: targets, attack_towards, prediction_shares
    mutant(
        "d-det-labels-not-flipped",
        NB4,
        "targets",
        "labels not flipped in D_det: the target is the own class",
        ("return (y + 1) % num_classes", "return y"),
    ),
    mutant(
        "d-det-no-wraparound",
        NB4,
        "targets",
        "next class without wrap-around (9 -> 10)",
        ("return (y + 1) % num_classes", "return y + 1"),
    ),
    mutant(
        "d-rand-own-class",
        NB4,
        "targets",
        "D_rand may draw the image's own class",
        ("torch.randint(1, num_classes,", "torch.randint(0, num_classes,"),
    ),
    mutant(
        "d-rand-ignores-generator",
        NB4,
        "targets",
        "D_rand ignores the generator (global random state)",
        (", generator=generator)", ")"),
    ),
    mutant(
        "d-rand-off-by-one",
        NB4,
        "targets",
        "off by one: the class before the own one is never drawn",
        ("torch.randint(1, num_classes,", "torch.randint(1, num_classes - 1,"),
    ),
    mutant(
        "towards-untargeted",
        NB4,
        "attack_towards",
        "untargeted attack: pushed away from the targets",
        ("targeted=True", "targeted=False"),
    ),
    mutant(
        "towards-random-start",
        NB4,
        "attack_towards",
        "random start in the ball",
        ("random_start=False", "random_start=True"),
    ),
    mutant(
        "towards-norm-ignored",
        NB4,
        "attack_towards",
        "always the L-inf ball, whatever the norm",
        ("norm=norm", 'norm="linf"'),
    ),
    mutant(
        "shares-no-wraparound",
        NB4,
        "prediction_shares",
        "next class without wrap-around",
        ("(y + 1) % num_classes", "(y + 1)"),
    ),
    mutant(
        "shares-tensors",
        NB4,
        "prediction_shares",
        "returns tensors, not Python floats",
        ("share_true = (predicted == y).float().mean().item()", "share_true = (predicted == y).float().mean()"),
        ("% num_classes).float().mean().item()", "% num_classes).float().mean()"),
    ),
    # 05: linear_worst_margin, adversarial_training_step, alignment_score
    mutant(
        "margin-dual-norms-swapped",
        NB5,
        "linear_worst_margin",
        "dual norms swapped (L2 for L-inf, L1 for L2)",
        (
            'differences.abs().sum(dim=2) if norm == "linf" else differences.norm(dim=2)',
            'differences.norm(dim=2) if norm == "linf" else differences.abs().sum(dim=2)',
        ),
    ),
    mutant(
        "margin-own-class-included",
        NB5,
        "linear_worst_margin",
        "own class not excluded (minimum is at most 0)",
        ('worst = worst.scatter(1, y.view(-1, 1), float("inf"))', ""),
    ),
    mutant(
        "margin-max-over-classes",
        NB5,
        "linear_worst_margin",
        "maximum over the other classes instead of the minimum",
        ('float("inf")', 'float("-inf")'),
        ("worst.min(dim=1)", "worst.max(dim=1)"),
    ),
    mutant(
        "margin-no-bias",
        NB5,
        "linear_worst_margin",
        "biases ignored",
        ("logits = z @ weight.T + bias", "logits = z @ weight.T"),
    ),
    mutant(
        "margin-plus-eps",
        NB5,
        "linear_worst_margin",
        "the perturbation helps: + eps ||w_y - w_k||",
        ("worst = margins - eps * dual", "worst = margins + eps * dual"),
    ),
    mutant(
        "margin-norm-of-own-weights",
        NB5,
        "linear_worst_margin",
        "eps times the norm of w_y, not of w_y - w_k",
        ("weight[y].unsqueeze(1) - weight.unsqueeze(0)", "weight[y].unsqueeze(1).expand(-1, weight.shape[0], -1)"),
    ),
    mutant(
        "advtrain-clean-batch",
        NB5,
        "adversarial_training_step",
        "trains on the clean batch (attack computed, unused)",
        ("loss = F.cross_entropy(model(x_adv), y)", "loss = F.cross_entropy(model(x), y)"),
    ),
    mutant(
        "advtrain-no-zero-grad",
        NB5,
        "adversarial_training_step",
        "gradients never zeroed: they accumulate over steps",
        ("optimizer.zero_grad()\n    loss.backward()", "loss.backward()"),
    ),
    mutant(
        "advtrain-eval-mode-update",
        NB5,
        "adversarial_training_step",
        "update in eval mode (batch-norm statistics frozen)",
        ("model.train()\n    loss =", "loss ="),
    ),
    mutant(
        "advtrain-attack-descends",
        NB5,
        "adversarial_training_step",
        "the attack descends the loss (targeted at the labels)",
        ("norm=norm)", "norm=norm, targeted=True)"),
    ),
    mutant(
        "advtrain-loss-after-update",
        NB5,
        "adversarial_training_step",
        "returns the loss after the update",
        ("return loss.item()", "return F.cross_entropy(model(x_adv), y).item()"),
    ),
    mutant(
        "alignment-signed-mass",
        NB5,
        "alignment_score",
        "signed mass: negative saliency cancels positive",
        ("saliency_map.detach().abs().sum(dim=1)", "saliency_map.detach().sum(dim=1)"),
    ),
    mutant(
        "alignment-mean-channel",
        NB5,
        "alignment_score",
        "foreground from the mean over channels, not the brightest",
        ("x.amax(dim=1)", "x.mean(dim=1)"),
    ),
    mutant(
        "alignment-threshold-ignored",
        NB5,
        "alignment_score",
        "threshold argument ignored (always 0.1)",
        ("> threshold", "> 0.1"),
    ),
    # 06: neuron_activation, visualize_neuron, top_activating
    mutant(
        "neuron-from-logits",
        NB6,
        "neuron_activation",
        "reads the logits, not the representation",
        ("rep = model.representation(x)", "rep = model(x)"),
    ),
    mutant(
        "neuron-detached",
        NB6,
        "neuron_activation",
        "detached: not differentiable",
        ("rep = model.representation(x)", "rep = model.representation(x).detach()"),
    ),
    mutant(
        "neuron-row-not-column",
        NB6,
        "neuron_activation",
        "an int picks an image (row), not a neuron",
        ("return rep[:, neuron]", "return rep[neuron]"),
    ),
    mutant(
        "neuron-tensor-as-columns",
        NB6,
        "neuron_activation",
        "a tensor of neurons indexes columns: N x N, not one per image",
        ("return rep.gather(1, neuron.view(-1, 1).to(rep.device)).squeeze(1)", "return rep[:, neuron]"),
    ),
    mutant(
        "visualize-minimizes",
        NB6,
        "visualize_neuron",
        "minimizing instead of maximizing the neuron",
        ("random_start=False,", "random_start=False, targeted=True,"),
    ),
    mutant("visualize-linf", NB6, "visualize_neuron", "L-inf ascent instead of L2", ('norm="l2"', 'norm="linf"')),
    mutant(
        "visualize-random-start",
        NB6,
        "visualize_neuron",
        "random start in the ball, not the given images",
        ("random_start=False", "random_start=True"),
    ),
    mutant(
        "top-least-activating",
        NB6,
        "top_activating",
        "the least activating images",
        ("activation.topk(k)", "activation.topk(k, largest=False)"),
    ),
    mutant(
        "top-with-gradients",
        NB6,
        "top_activating",
        "activations kept in the autograd graph",
        ("features.representation(model, x, batch_size=500)", "model.representation(x)"),
    ),
    mutant(
        "top-lowest-first",
        NB6,
        "top_activating",
        "the top k, lowest first",
        ("return indices, values", "return indices.flip(0), values.flip(0)"),
    ),
)

ALTERNATIVES = (
    alternative(
        "saliency-backward",
        NB1,
        "input_gradient",
        ".backward() and x.grad instead of torch.autograd.grad",
        (
            WHOLE,
            "x = x.detach().clone().requires_grad_(True)\n"
            "with eval_mode(model), torch.enable_grad():\n"
            "    logits = model(x)\n"
            "    logits[torch.arange(len(target), device=target.device), target].sum().backward()\n"
            "return x.grad",
        ),
    ),
    alternative(
        "spearman-corrcoef",
        NB1,
        "rank_correlation",
        "ranks by scatter, torch.corrcoef per map",
        (
            WHOLE,
            "def ranks(t):\n"
            "    flat = t.detach().flatten(1)\n"
            "    order = flat.argsort(dim=1)\n"
            "    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)\n"
            "    return torch.empty_like(order).scatter_(1, order, positions).double()\n"
            "\n"
            "ra, rb = ranks(a), ranks(b)\n"
            "return torch.stack([torch.corrcoef(torch.stack([u, v]))[0, 1] for u, v in zip(ra, rb)])",
        ),
    ),
    alternative(
        "saliency-one-hot",
        NB1,
        "input_gradient",
        "the target logits picked by a one-hot mask",
        (
            WHOLE,
            "x = x.detach().clone().requires_grad_(True)\n"
            "with eval_mode(model), torch.enable_grad():\n"
            "    logits = model(x)\n"
            "    score = (logits * F.one_hot(target, logits.shape[1]).to(logits.dtype)).sum()\n"
            "return torch.autograd.grad(score, x)[0]",
        ),
    ),
    alternative(
        "spearman-rank-differences",
        NB1,
        "rank_correlation",
        "Spearman's formula 1 - 6 sum d^2 / (n (n^2 - 1)) on the rank differences",
        (
            WHOLE,
            "ra = a.detach().flatten(1).argsort(dim=1).argsort(dim=1).double()\n"
            "rb = b.detach().flatten(1).argsort(dim=1).argsort(dim=1).double()\n"
            "n = ra.shape[1]\n"
            "return 1 - 6 * ((ra - rb) ** 2).sum(dim=1) / (n * (n**2 - 1))",
        ),
    ),
    alternative(
        "randomize-named-modules",
        NB1,
        "randomized_copy",
        "resets the copy's modules found by a walk over named_modules()",
        (
            WHOLE,
            "randomized = copy.deepcopy(model)\n"
            "wanted = set(layers)\n"
            "for name, module in randomized.named_modules():\n"
            "    if name in wanted:\n"
            "        module.reset_parameters()\n"
            "return randomized",
        ),
    ),
    alternative(
        "randomize-module-dict",
        NB1,
        "randomized_copy",
        "looks the layers up in a dict of the copy's modules",
        (
            WHOLE,
            "randomized = copy.deepcopy(model)\n"
            "modules = dict(randomized.named_modules())\n"
            "for name in layers:\n"
            "    modules[name].reset_parameters()\n"
            "return randomized",
        ),
    ),
    alternative(
        "noise-randn-like",
        NB2,
        "noisy_copies",
        "torch.randn_like on an expanded copy, sigma from abs()",
        (
            WHOLE,
            "copies = x.unsqueeze(0).expand(n, *x.shape)\n"
            "sigma = noise_level * abs(value_range[1] - value_range[0])\n"
            "return copies + sigma * torch.randn_like(copies)",
        ),
    ),
    alternative(
        "smoothgrad-loop",
        NB2,
        "smoothgrad",
        "one gradient per noisy copy in a loop, with .backward()",
        (
            WHOLE,
            "total = torch.zeros_like(x)\n"
            "with eval_mode(model), torch.enable_grad():\n"
            "    for noisy in noisy_copies(x, noise_level, n):\n"
            "        noisy = noisy.detach().requires_grad_(True)\n"
            "        model(noisy).gather(1, target.view(-1, 1)).sum().backward()\n"
            "        total += noisy.grad\n"
            "return total / n",
        ),
    ),
    alternative(
        "noise-stacked-copies",
        NB2,
        "noisy_copies",
        "n copies drawn one by one with randn_like and stacked",
        (
            WHOLE,
            "low, high = value_range\n"
            "return torch.stack([x + noise_level * (high - low) * torch.randn_like(x) for _ in range(n)])",
        ),
    ),
    alternative(
        "smoothgrad-image-major",
        NB2,
        "smoothgrad",
        "copies laid out image by image (repeat_interleave targets), mean over the copies' axis",
        (
            WHOLE,
            "copies = noisy_copies(x, noise_level, n).transpose(0, 1).reshape(-1, *x.shape[1:])\n"
            "copies = copies.detach().requires_grad_(True)\n"
            "with eval_mode(model), torch.enable_grad():\n"
            "    logits = model(copies)\n"
            "    score = logits[torch.arange(len(copies)), target.repeat_interleave(n)].sum()\n"
            "    (grads,) = torch.autograd.grad(score, copies)\n"
            "return grads.view(x.shape[0], n, *x.shape[1:]).mean(dim=1)",
        ),
    ),
    alternative(
        "deletion-argsort-mask",
        NB2,
        "deletion_drop",
        "a mask from argsort's first k positions, torch.where, logits picked by index",
        (
            WHOLE,
            "n, _, h, w = x.shape\n"
            "order = saliency_map.detach().abs().sum(dim=1).view(n, h * w).argsort(dim=1, descending=True)\n"
            "k = round(fraction * h * w)\n"
            "deleted = torch.zeros(n, h * w, dtype=torch.bool, device=x.device)\n"
            "deleted.scatter_(1, order[:, :k], True)\n"
            "x_deleted = torch.where(deleted.view(n, 1, h, w), torch.zeros_like(x), x)\n"
            "rows = torch.arange(n, device=x.device)\n"
            "with eval_mode(model), torch.no_grad():\n"
            "    return model(x)[rows, target] - model(x_deleted)[rows, target]",
        ),
    ),
    alternative(
        "deletion-per-image",
        NB2,
        "deletion_drop",
        "one image at a time: its top-k pixels zeroed through a flat view of a copy",
        (
            WHOLE,
            "k = round(fraction * x.shape[2] * x.shape[3])\n"
            "drops = []\n"
            "with eval_mode(model), torch.no_grad():\n"
            "    for image, saliency_i, t in zip(x, saliency_map, target):\n"
            "        top = saliency_i.abs().sum(dim=0).flatten().topk(k).indices\n"
            "        deleted = image.clone()\n"
            "        deleted.view(image.shape[0], -1)[:, top] = 0.0\n"
            "        pair = model(torch.stack([image, deleted]))[:, t]\n"
            "        drops.append(pair[0] - pair[1])\n"
            "return torch.stack(drops)",
        ),
    ),
    alternative(
        "step-where-and-normalize",
        NB3,
        "step_direction",
        "sign via torch.where, L2 via F.normalize",
        (
            WHOLE,
            'if norm not in ("linf", "l2"):\n'
            '    raise ValueError(f"unknown norm {norm!r}")\n'
            'if norm == "linf":\n'
            "    return torch.where(grad > 0, 1.0, torch.where(grad < 0, -1.0, 0.0)).to(grad.dtype)\n"
            "return F.normalize(grad.flatten(1), dim=1).view_as(grad)",
        ),
    ),
    alternative(
        "project-renorm",
        NB3,
        "project",
        "L2 projection via Tensor.renorm, L-inf via minimum/maximum",
        (
            WHOLE,
            'if norm == "l2":\n'
            "    return delta.renorm(p=2, dim=0, maxnorm=eps)\n"
            'if norm == "linf":\n'
            "    bound = torch.full_like(delta, eps)\n"
            "    return torch.maximum(torch.minimum(delta, bound), -bound)\n"
            'raise ValueError(f"unknown norm {norm!r}")',
        ),
    ),
    alternative(
        "pgd-mean-loss-backward",
        NB3,
        "pgd",
        "mean loss (the same directions), .backward() and x_adv.grad",
        (
            WHOLE,
            "x = x.detach()\n"
            "x_adv = x.clone()\n"
            "with eval_mode(model), torch.enable_grad():\n"
            "    for _ in range(steps):\n"
            "        x_adv = x_adv.detach().requires_grad_(True)\n"
            "        loss = F.cross_entropy(model(x_adv), y)\n"
            "        (-loss if targeted else loss).backward()\n"
            "        moved = x_adv + alpha * step_direction(x_adv.grad, norm)\n"
            "        x_adv = (x + project(moved - x, eps, norm)).clamp(0, 1)\n"
            "return x_adv.detach()",
        ),
    ),
    alternative(
        "targets-skip-own-class",
        NB4,
        "targets",
        "torch.where wrap-around; D_rand draws among C - 1 and skips y",
        ("return (y + 1) % num_classes", "return torch.where(y == num_classes - 1, torch.zeros_like(y), y + 1)"),
        (
            "shift = torch.randint(1, num_classes, tuple(y.shape), generator=generator).to(y.device)\n"
            "    return (y + shift) % num_classes",
            "other = torch.randint(0, num_classes - 1, tuple(y.shape), generator=generator).to(y.device)\n"
            "    return other + (other >= y).long()",
        ),
    ),
    alternative(
        "targets-remainder-shifted-draw",
        NB4,
        "targets",
        "torch.remainder; D_rand draws a shift in range(C - 1) and adds 1",
        ("return (y + 1) % num_classes", "return torch.remainder(y + 1, num_classes)"),
        (
            "shift = torch.randint(1, num_classes, tuple(y.shape), generator=generator).to(y.device)\n"
            "    return (y + shift) % num_classes",
            "shift = 1 + torch.randint(0, num_classes - 1, tuple(y.shape), generator=generator)\n"
            "    return torch.remainder(y + shift.to(y.device), num_classes)",
        ),
    ),
    alternative(
        "towards-by-hand",
        NB4,
        "attack_towards",
        "targeted PGD written out: eval mode, enable_grad, descent on the summed cross-entropy, projection by hand",
        (
            WHOLE,
            "was_training = model.training\n"
            "model.eval()\n"
            "x_adv = x.clone()\n"
            "with torch.enable_grad():\n"
            "    for _ in range(steps):\n"
            "        x_adv = x_adv.detach().requires_grad_(True)\n"
            '        loss = F.cross_entropy(model(x_adv), targets, reduction="sum")\n'
            "        (grad,) = torch.autograd.grad(loss, x_adv)\n"
            "        lengths = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)\n"
            '        step = grad.sign() if norm == "linf" else grad / lengths\n'
            "        delta = x_adv.detach() - alpha * step - x\n"
            '        if norm == "linf":\n'
            "            delta = delta.clamp(-eps, eps)\n"
            "        else:\n"
            "            scale = (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)\n"
            "            delta = delta * scale.view(-1, 1, 1, 1)\n"
            "        x_adv = (x + delta).clamp(0, 1)\n"
            "model.train(was_training)\n"
            "return x_adv.detach()",
        ),
    ),
    alternative(
        "towards-in-chunks",
        NB4,
        "attack_towards",
        "attacks.pgd on chunks of 100 images, concatenated",
        (
            WHOLE,
            "chunks = [\n"
            "    attacks.pgd(\n"
            "        model, xb, tb, eps=eps, alpha=alpha, steps=steps, norm=norm, targeted=True, random_start=False\n"
            "    )\n"
            "    for xb, tb in zip(x.split(100), targets.split(100))\n"
            "]\n"
            "return torch.cat(chunks)",
        ),
    ),
    alternative(
        "shares-python-loop",
        NB4,
        "prediction_shares",
        "counted in Python over the lists of predictions and labels",
        (
            "share_true = (predicted == y).float().mean().item()",
            "labels = y.tolist()\n"
            "    share_true = sum(p == t for p, t in zip(predicted.tolist(), labels)) / len(labels)",
        ),
        (
            "share_next = (predicted == (y + 1) % num_classes).float().mean().item()",
            "share_next = sum(p == (t + 1) % num_classes for p, t in zip(predicted.tolist(), labels)) / len(labels)",
        ),
    ),
    alternative(
        "shares-max-indices-float",
        NB4,
        "prediction_shares",
        "max(dim=1).indices, counts over numel, torch.remainder, float()",
        ("predicted = predict(model, x).argmax(dim=1)", "predicted = predict(model, x).max(dim=1).indices"),
        (
            "share_true = (predicted == y).float().mean().item()",
            "share_true = float(torch.eq(predicted, y).sum()) / y.numel()",
        ),
        (
            "share_next = (predicted == (y + 1) % num_classes).float().mean().item()",
            "share_next = float(torch.eq(predicted, torch.remainder(y + 1, num_classes)).double().mean())",
        ),
    ),
    alternative(
        "margin-loop-over-classes",
        NB5,
        "linear_worst_margin",
        "a loop over the classes with torch.linalg.vector_norm",
        (
            WHOLE,
            "z = x.flatten(1)\n"
            "logits = z @ weight.T + bias\n"
            'order = 1 if norm == "linf" else 2\n'
            'worst = torch.full((len(y),), float("inf"), dtype=logits.dtype, device=logits.device)\n'
            "for k in range(weight.shape[0]):\n"
            "    gap = logits.gather(1, y.view(-1, 1)).squeeze(1) - logits[:, k]\n"
            "    dual = torch.linalg.vector_norm(weight[y] - weight[k], ord=order, dim=1)\n"
            "    worst = torch.where(y == k, worst, torch.minimum(worst, gap - eps * dual))\n"
            "return worst",
        ),
    ),
    alternative(
        "top-argsort",
        NB6,
        "top_activating",
        "argsort descending under torch.no_grad()",
        (
            WHOLE,
            "with eval_mode(model), torch.no_grad():\n"
            "    activation = model.representation(x)[:, neuron]\n"
            "indices = activation.argsort(descending=True)[:k]\n"
            "return indices, activation[indices]",
        ),
    ),
    alternative(
        "fgsm-backward-mean",
        NB3,
        "fgsm",
        "the mean loss's .backward() (the sign ignores the factor 1/N)",
        (
            WHOLE,
            "x_adv = x.detach().clone().requires_grad_(True)\n"
            "with eval_mode(model), torch.enable_grad():\n"
            "    F.cross_entropy(model(x_adv), y).backward()\n"
            "return (x + eps * x_adv.grad.sign()).detach().clamp(0, 1)",
        ),
    ),
    alternative(
        "fgsm-where-step",
        NB3,
        "fgsm",
        "the step +-eps (0 where the gradient is 0) through torch.where, then torch.clamp",
        (
            WHOLE,
            "x0 = x.detach()\n"
            "with eval_mode(model), torch.enable_grad():\n"
            "    x_adv = x0.clone().requires_grad_(True)\n"
            '    grad = torch.autograd.grad(F.cross_entropy(model(x_adv), y, reduction="sum"), x_adv)[0]\n'
            "step = torch.where(grad > 0, eps, torch.where(grad < 0, -eps, 0.0))\n"
            "return torch.clamp(x0 + step, min=0.0, max=1.0)",
        ),
    ),
    alternative(
        "step-vector-norm-where",
        NB3,
        "step_direction",
        "torch.sign; L2 through linalg.vector_norm, zero where the norm is zero",
        (
            WHOLE,
            'if norm == "linf":\n'
            "    return torch.sign(grad)\n"
            'if norm == "l2":\n'
            "    flat = grad.reshape(grad.shape[0], -1)\n"
            "    norms = torch.linalg.vector_norm(flat, dim=1, keepdim=True)\n"
            "    unit = torch.where(norms > 0, flat / norms.clamp_min(1e-30), torch.zeros_like(flat))\n"
            "    return unit.reshape_as(grad)\n"
            'raise ValueError(f"unknown norm {norm!r}")',
        ),
    ),
    alternative(
        "project-where-outside",
        NB3,
        "project",
        "L2: rescaled only where the norm exceeds eps (torch.where); L-inf: torch.clamp",
        (
            WHOLE,
            'if norm == "linf":\n'
            "    return torch.clamp(delta, min=-eps, max=eps)\n"
            'if norm == "l2":\n'
            "    norms = torch.linalg.vector_norm(delta.flatten(1), dim=1).view(-1, *([1] * (delta.dim() - 1)))\n"
            "    return torch.where(norms > eps, delta * eps / norms.clamp_min(1e-12), delta)\n"
            'raise ValueError(f"unknown norm {norm!r}")',
        ),
    ),
    alternative(
        "pgd-negated-loss",
        NB3,
        "pgd",
        "targeted by negating the loss; eval mode entered for each step",
        (
            WHOLE,
            "x0 = x.detach()\n"
            "x_adv = x0.clone()\n"
            "for _ in range(steps):\n"
            "    with eval_mode(model), torch.enable_grad():\n"
            "        x_adv = x_adv.detach().requires_grad_(True)\n"
            '        loss = F.cross_entropy(model(x_adv), y, reduction="sum")\n'
            "        grad = torch.autograd.grad(-loss if targeted else loss, x_adv)[0]\n"
            "    moved = x_adv.detach() + alpha * step_direction(grad, norm)\n"
            "    x_adv = torch.clamp(x0 + project(moved - x0, eps, norm), 0.0, 1.0)\n"
            "return x_adv",
        ),
    ),
    alternative(
        "margin-loop-over-images",
        NB5,
        "linear_worst_margin",
        "a Python loop over images and classes with linalg.vector_norm",
        (
            WHOLE,
            "z = x.flatten(1)\n"
            "logits = z @ weight.T + bias\n"
            'order = 1 if norm == "linf" else 2\n'
            "results = []\n"
            "for i in range(len(y)):\n"
            "    own = int(y[i])\n"
            "    values = [\n"
            "        logits[i, own] - logits[i, k]\n"
            "        - eps * torch.linalg.vector_norm(weight[own] - weight[k], ord=order)\n"
            "        for k in range(weight.shape[0])\n"
            "        if k != own\n"
            "    ]\n"
            "    results.append(torch.stack(values).min())\n"
            "return torch.stack(results)",
        ),
    ),
    alternative(
        "advtrain-explicit-random-start",
        NB5,
        "adversarial_training_step",
        "random_start=True spelled out, zero_grad before the forward pass, float(loss)",
        (
            WHOLE,
            "x_adv = attacks.pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=True)\n"
            "model.train()\n"
            "optimizer.zero_grad()\n"
            'loss = F.cross_entropy(model(x_adv), y, reduction="mean")\n'
            "loss.backward()\n"
            "optimizer.step()\n"
            "return float(loss.detach())",
        ),
    ),
    alternative(
        "advtrain-grad-none",
        NB5,
        "adversarial_training_step",
        "gradients cleared by setting p.grad = None, the attack's result detached",
        (
            WHOLE,
            "x_adv = attacks.pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm).detach()\n"
            "model.train(True)\n"
            "for parameter in model.parameters():\n"
            "    parameter.grad = None\n"
            "loss = F.cross_entropy(model(x_adv), y)\n"
            "loss.backward()\n"
            "optimizer.step()\n"
            "return loss.item()",
        ),
    ),
    alternative(
        "alignment-where",
        NB5,
        "alignment_score",
        "foreground from max over channels, the mass kept through torch.where",
        (
            WHOLE,
            "mass = saliency_map.abs().sum(dim=1)\n"
            "foreground = x.max(dim=1).values > threshold\n"
            "inside = torch.where(foreground, mass, torch.zeros_like(mass)).flatten(1).sum(dim=1)\n"
            "return (inside / mass.flatten(1).sum(dim=1)).detach()",
        ),
    ),
    alternative(
        "alignment-any-channel-loop",
        NB5,
        "alignment_score",
        "foreground as any channel above the threshold, one image at a time with a boolean mask",
        (
            WHOLE,
            "mass = saliency_map.detach().abs().sum(1)\n"
            "foreground = (x > threshold).any(dim=1)\n"
            "return torch.stack([mass[i][foreground[i]].sum() / mass[i].sum() for i in range(len(mass))])",
        ),
    ),
    alternative(
        "neuron-advanced-index",
        NB6,
        "neuron_activation",
        "advanced indexing with arange, an int broadcast by as_tensor and expand",
        (
            WHOLE,
            "rep = model.representation(x)\n"
            "index = torch.as_tensor(neuron, device=rep.device)\n"
            "if index.dim() == 0:\n"
            "    index = index.expand(rep.shape[0])\n"
            "return rep[torch.arange(rep.shape[0], device=rep.device), index]",
        ),
    ),
    alternative(
        "neuron-one-hot",
        NB6,
        "neuron_activation",
        "a one-hot mask of the neurons, summed over the representation",
        (
            WHOLE,
            "rep = model.representation(x)\n"
            "if isinstance(neuron, int):\n"
            "    neuron = torch.full((rep.shape[0],), neuron, dtype=torch.long)\n"
            "mask = torch.nn.functional.one_hot(neuron.to(rep.device), rep.shape[1]).to(rep.dtype)\n"
            "return (rep * mask).sum(dim=1)",
        ),
    ),
    alternative(
        "visualize-lambda-index",
        NB6,
        "visualize_neuron",
        "indices built with as_tensor and expand; neuron_activation passed through a lambda",
        (
            WHOLE,
            "index = torch.as_tensor(neuron, device=start.device).expand(start.shape[0])\n"
            "return attacks.pgd(\n"
            '    model, start, index, eps=eps, alpha=alpha, steps=steps, norm="l2", random_start=False,\n'
            "    loss_fn=lambda m, images, targets: neuron_activation(m, images, targets),\n"
            ")",
        ),
    ),
    alternative(
        "visualize-own-loop",
        NB6,
        "visualize_neuron",
        "its own L2 ascent loop: unit-norm steps, projection onto the eps-ball, clamp",
        (
            WHOLE,
            "start = start.detach()\n"
            "x_vis = start.clone()\n"
            "with eval_mode(model), torch.enable_grad():\n"
            "    for _ in range(steps):\n"
            "        x_vis.requires_grad_(True)\n"
            "        (grad,) = torch.autograd.grad(neuron_activation(model, x_vis, neuron).sum(), x_vis)\n"
            "        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)\n"
            "        delta = x_vis.detach() + alpha * grad / norms - start\n"
            "        scale = (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1.0).view(-1, 1, 1, 1)\n"
            "        x_vis = (start + delta * scale).clamp(0, 1)\n"
            "return x_vis",
        ),
    ),
    alternative(
        "top-sort-values",
        NB6,
        "top_activating",
        "torch.sort descending under torch.no_grad(), the first k",
        (
            WHOLE,
            "with torch.no_grad():\n"
            "    activation = features.representation(model, x)[:, neuron]\n"
            "order = torch.sort(activation, descending=True)\n"
            "return order.indices[:k], order.values[:k]",
        ),
    ),
)

ENTRIES = MUTANTS + ALTERNATIVES
