"""Engine benchmark: PGD against torchattacks and against one forward+backward pass, and
adversarial training against a textbook PGD-7 loop. Prints ratios measured side by side in
one run (absolute times on shared machines mean little).

    .venv/bin/python benchmarks/bench_engine.py            # both parts
    .venv/bin/python benchmarks/bench_engine.py --part pgd
    .venv/bin/python benchmarks/bench_engine.py --part training --epochs 10

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
from helpers.train import TrainConfig, train
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


def bench_pgd(batch: int, steps: int, repeats: int) -> None:
    import torchattacks

    device = best_device()
    model = load_pretrained("mnist_standard", device=device)
    x, y = load_dataset("mnist", "test")
    x, y = x[:batch].to(device), y[:batch].to(device)

    def forward_backward():
        xr = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="none").sum(), xr)

    settings = {"linf": dict(eps=0.3, alpha=0.01), "l2": dict(eps=2.0, alpha=0.1)}
    reference = {"linf": torchattacks.PGD(model, steps=steps, random_start=True, **settings["linf"]),
                 "l2": torchattacks.PGDL2(model, steps=steps, random_start=True, **settings["l2"])}
    print(f"PGD-{steps}, batch {batch}, mnist_standard on {device}; median of {repeats} interleaved runs")
    for norm in ("linf", "l2"):
        ours = functools.partial(attacks.pgd, model, x, y, steps=steps, norm=norm, **settings[norm])
        times = interleaved({"ours": ours, "torchattacks": lambda: reference[norm](x, y),
                             "fwd+bwd": forward_backward}, repeats=repeats)
        print(f"  {norm:4s}  ours {times['ours']:.3f} s   torchattacks {times['torchattacks']:.3f} s   "
              f"ratio {times['ours'] / times['torchattacks']:.2f}x (goal <= 1.0)   per step / fwd+bwd "
              f"{times['ours'] / steps / times['fwd+bwd']:.2f}x (goal <= 1.10)")


def textbook_pgd_training(model, x, y, *, eps, alpha, steps, epochs, batch_size, lr):
    """Madry et al.'s recipe written out plainly: every batch replaced by PGD-k examples."""
    device = model_device(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    total = epochs * -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total + 1,
                                                   pct_start=0.25, anneal_strategy="linear")
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


def bench_training(epochs: int, eps: float) -> None:
    device = best_device()
    x, y = load_dataset("mnist", "train")
    xt, yt = load_dataset("mnist", "test")
    ours_config = TrainConfig(method="fgsm", eps=eps, epochs=epochs, eps_warmup=max(1, epochs // 4))
    results = {}
    for name in ("textbook PGD-7", "helpers.train (fgsm)"):
        set_seed(0)
        model = build_model("mnist_cnn").to(device)
        start = time.perf_counter()
        if name.startswith("textbook"):
            textbook_pgd_training(model, x, y, eps=eps, alpha=2.5 * eps / 7, steps=7, epochs=epochs,
                                  batch_size=ours_config.batch_size, lr=ours_config.lr)
        else:
            train(model, x, y, ours_config, progress=False)
        seconds = time.perf_counter() - start
        set_seed(0)
        robust = attacks.accuracy(model, xt, yt, attack=functools.partial(
            attacks.pgd, eps=eps, alpha=0.01, steps=40), batch_size=500)
        results[name] = (seconds, attacks.accuracy(model, xt, yt), robust)
        print(f"  {name:22s} {seconds:7.1f} s   clean {results[name][1]:.3f}   PGD-40 {robust:.3f}", flush=True)
    (t_ref, _, r_ref), (t_ours, _, r_ours) = results.values()
    print(f"  time ratio {t_ours / t_ref:.2f}x (goal <= 0.25)   PGD-40 accuracy ours - textbook "
          f"{r_ours - r_ref:+.3f} (goal >= 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["pgd", "training", "all"], default="all")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--eps", type=float, default=0.3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {best_device()}")
    if args.part in ("pgd", "all"):
        bench_pgd(args.batch, args.steps, args.repeats)
    if args.part in ("training", "all"):
        print(f"Adversarial training, embedded MNIST (4,000 images), eps {args.eps}, {args.epochs} epochs each")
        bench_training(args.epochs, args.eps)


if __name__ == "__main__":
    main()
