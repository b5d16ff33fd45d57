"""Engine benchmark: PGD against torchattacks and against one forward+backward pass, and
adversarial training against a textbook PGD-7 loop. Prints ratios measured side by side in
one run (absolute times on shared machines mean little).

    .venv/bin/python benchmarks/bench_engine.py            # both parts
    .venv/bin/python benchmarks/bench_engine.py --part pgd
    .venv/bin/python benchmarks/bench_engine.py --part training   # textbook PGD-7: --epochs 10

Runs on CUDA when available (``PRACTICUM_DEVICE=cpu`` forces the CPU).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
import torch.nn.functional as F

from helpers import attacks
from helpers.data import load_dataset
from helpers.models import build_model, load_pretrained
from helpers.train import TrainConfig, robust_recipe, train
from helpers.utils import best_device, model_device, set_seed


def seconds(fn) -> float:
    """Wall-clock seconds of one call, synchronizing CUDA around it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved(fns: dict, *, repeats: int) -> dict[str, float]:
    """Median seconds of each function after a warm-up, the calls interleaved round by round
    so that machine noise hits all of them alike."""
    for fn in fns.values():
        fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(seconds(fn))
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_pgd(batch: int, steps: int, repeats: int) -> dict:
    """PGD-``steps`` on ``batch`` test digits (``mnist_standard``): ours against torchattacks and
    against one forward + backward pass, per norm. Prints one line per norm and returns
    ``{"device", "batch", "steps", "repeats", "linf": {...}, "l2": {...}}``, each norm's entry
    holding the median seconds (``ours``, ``torchattacks``, ``fwd+bwd``), ``ratio`` (ours /
    torchattacks) and ``step_over_pass`` (one PGD step / one forward + backward pass)."""
    import torchattacks

    device = best_device()
    model = load_pretrained("mnist_standard", device=device)
    x, y = load_dataset("mnist", "test")
    x, y = x[:batch].to(device), y[:batch].to(device)

    def forward_backward():
        xr = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="none").sum(), xr)

    settings = {"linf": dict(eps=0.3, alpha=0.01), "l2": dict(eps=2.0, alpha=0.1)}
    reference = {
        "linf": torchattacks.PGD(model, steps=steps, random_start=True, **settings["linf"]),
        "l2": torchattacks.PGDL2(model, steps=steps, random_start=True, **settings["l2"]),
    }
    print(f"PGD-{steps}, batch {batch}, mnist_standard on {device}; median of {repeats} interleaved runs")
    results = {"device": str(device), "batch": batch, "steps": steps, "repeats": repeats}
    for norm in ("linf", "l2"):
        ours = functools.partial(attacks.pgd, model, x, y, steps=steps, norm=norm, **settings[norm])
        times = interleaved(
            {"ours": ours, "torchattacks": functools.partial(reference[norm], x, y), "fwd+bwd": forward_backward},
            repeats=repeats,
        )
        results[norm] = {
            **times,
            "ratio": times["ours"] / times["torchattacks"],
            "step_over_pass": times["ours"] / steps / times["fwd+bwd"],
        }
        print(
            f"  {norm:4s}  ours {times['ours']:.3f} s   torchattacks {times['torchattacks']:.3f} s   "
            f"ratio {results[norm]['ratio']:.2f}x (goal <= 1.0)   per step / fwd+bwd "
            f"{results[norm]['step_over_pass']:.2f}x (goal <= 1.10)"
        )
    return results


def textbook_pgd_training(model, x, y, *, eps, alpha, steps, epochs, batch_size, lr):
    """Madry et al.'s recipe written out plainly: every batch replaced by PGD-k examples."""
    device = model_device(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    total = epochs * -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=total + 1, pct_start=0.25, anneal_strategy="linear"
    )
    for _ in range(epochs):
        for index in torch.randperm(len(x)).split(batch_size):
            xb, yb = x[index].to(device), y[index].to(device)
            model.eval()
            delta = torch.empty_like(xb).uniform_(-eps, eps)
            for _ in range(steps):
                delta.requires_grad_(True)
                loss = F.cross_entropy(model((xb + delta).clamp(0, 1)), yb)
                (grad,) = torch.autograd.grad(loss, delta)
                delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
                delta = (xb + delta).clamp(0, 1) - xb
            model.train()
            loss = F.cross_entropy(model(xb + delta), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


TEXTBOOK_STEPS = 7


def bench_training(epochs: int, eps: float, images: int | None = None, recipe_epochs: int | None = None) -> dict:
    """A textbook PGD-7 loop (:func:`textbook_pgd_training`, ``epochs`` epochs, with
    ``TrainConfig``'s default batch size of 128 and learning rate) against ``helpers.train``'s
    default robust recipe (:func:`helpers.train.robust_recipe`; ``recipe_epochs`` overrides
    its epochs), from the same initial weights on the same digits, at L-inf ``eps``. Both
    models are then attacked with PGD-40 (alpha 0.01) and PGD-100 (alpha 0.03), seeded alike.

    Prints and returns ``{"epochs", "eps", "train_images", "test_images", "methods"}``, where
    ``methods`` maps each method's name (textbook first) to its ``seconds``, ``epochs``,
    ``batch_size``, ``clean``, ``pgd40`` and ``pgd100`` accuracy; ``images`` keeps the first
    that many training and test digits (all: None)."""
    device = best_device()
    x, y = (t[:images] for t in load_dataset("mnist", "train"))
    xt, yt = (t[:images] for t in load_dataset("mnist", "test"))
    textbook = TrainConfig()
    ours = robust_recipe(eps, **({"epochs": recipe_epochs} if recipe_epochs else {}))
    runs = {  # name -> (epochs, batch size, how to train a model in place)
        f"textbook PGD-{TEXTBOOK_STEPS}": (
            epochs,
            textbook.batch_size,
            lambda model: textbook_pgd_training(
                model,
                x,
                y,
                eps=eps,
                alpha=2.5 * eps / TEXTBOOK_STEPS,
                steps=TEXTBOOK_STEPS,
                epochs=epochs,
                batch_size=textbook.batch_size,
                lr=textbook.lr,
            ),
        ),
        f"helpers.train robust recipe (PGD-{ours.steps})": (
            ours.epochs,
            ours.batch_size,
            lambda model: train(model, x, y, ours, progress=False),
        ),
    }
    results = {}
    for name, (run_epochs, batch_size, fit) in runs.items():
        set_seed(0)
        model = build_model("mnist_cnn").to(device)
        start = time.perf_counter()
        fit(model)
        elapsed = time.perf_counter() - start
        robust = {}
        for key, alpha, steps in (("pgd40", 0.01, 40), ("pgd100", 0.03, 100)):
            set_seed(0)
            robust[key] = attacks.accuracy(
                model, xt, yt, batch_size=500, attack=functools.partial(attacks.pgd, eps=eps, alpha=alpha, steps=steps)
            )
        results[name] = {
            "seconds": elapsed,
            "epochs": run_epochs,
            "batch_size": batch_size,
            "clean": attacks.accuracy(model, xt, yt),
            **robust,
        }
        print(
            f"  {name:38s} {elapsed:7.1f} s   clean {results[name]['clean']:.3f}   PGD-40 {robust['pgd40']:.3f}"
            f"   PGD-100 (alpha 0.03) {robust['pgd100']:.3f}",
            flush=True,
        )
    ref, mine = results.values()
    print(
        f"  time ratio {mine['seconds'] / ref['seconds']:.2f}x (goal <= 0.25)   PGD-40 accuracy ours - textbook "
        f"{mine['pgd40'] - ref['pgd40']:+.3f} (goal >= 0)"
    )
    return {"epochs": epochs, "eps": eps, "train_images": len(y), "test_images": len(yt), "methods": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["pgd", "training", "all"], default="all")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the textbook PGD-7 loop")
    parser.add_argument("--eps", type=float, default=0.3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {best_device()}")
    if args.part in ("pgd", "all"):
        bench_pgd(args.batch, args.steps, args.repeats)
    if args.part in ("training", "all"):
        print(
            f"Adversarial training, embedded MNIST (4,000 images), eps {args.eps}: textbook PGD-7 loop for "
            f"{args.epochs} epochs against the robust recipe"
        )
        bench_training(args.epochs, args.eps)


if __name__ == "__main__":
    main()
