"""SmoothGrad benchmark: ``helpers.saliency.smoothgrad`` against captum's
``NoiseTunnel(Saliency)``, same model, images, noise and number of samples, timed side by side
in one run (ratios; absolute times on shared machines mean little).

    .venv/bin/python benchmarks/bench_saliency.py [--images 32] [--samples 50] [--repeats 5]

Both estimate the same quantity, the mean over noisy copies of the signed gradient of the
target logit; the agreement line checks it: the rank correlation between our map and
captum's should be as high as between two of our maps drawn with different seeds.
Runs on CUDA when available (``PRACTICUM_DEVICE=cpu`` forces the CPU).
"""

from __future__ import annotations

import argparse

import torch
from bench_engine import interleaved
from captum.attr import NoiseTunnel, Saliency

from helpers.attacks import predict
from helpers.data import load_dataset
from helpers.models import load_pretrained
from helpers.saliency import mean_spearman, smoothgrad
from helpers.utils import best_device, set_seed


def bench_smoothgrad(images: int, samples: int, repeats: int, noise_level: float = 0.15) -> dict:
    """SmoothGrad of ``mnist_standard`` on ``images`` test digits, ``samples`` noisy copies of
    standard deviation ``noise_level`` (images in [0, 1]), every copy in one batch for both.

    Prints and returns ``{"device", "images", "samples", "repeats", "ours", "captum"}`` (median
    seconds), ``ratio`` (ours / captum), ``agreement`` (mean Spearman correlation, ours vs
    captum) and ``seed_agreement`` (ours vs ours with another seed).
    """
    device = best_device()
    model = load_pretrained("mnist_standard", device=device)
    x = load_dataset("mnist", "test")[0][:images].to(device)
    targets = predict(model, x).argmax(dim=1)
    tunnel = NoiseTunnel(Saliency(model))

    def ours():
        return smoothgrad(model, x, targets, noise_level=noise_level, n=samples)

    def captum():
        return tunnel.attribute(
            x, nt_type="smoothgrad", nt_samples=samples, stdevs=noise_level, target=targets, abs=False
        )

    times = interleaved({"ours": ours, "captum": captum}, repeats=repeats)
    set_seed(0)
    ours_map, captum_map = ours(), captum()
    set_seed(1)
    ours_again = ours()
    results = {
        "device": str(device),
        "images": images,
        "samples": samples,
        "repeats": repeats,
        **times,
        "ratio": times["ours"] / times["captum"],
        "agreement": mean_spearman(ours_map, captum_map),
        "seed_agreement": mean_spearman(ours_map, ours_again),
    }
    print(
        f"SmoothGrad, {images} digits x {samples} samples, sigma {noise_level:g}, mnist_standard on {device}; "
        f"median of {repeats} interleaved runs"
    )
    print(
        f"  ours {times['ours']:.3f} s   captum NoiseTunnel {times['captum']:.3f} s   ratio "
        f"{results['ratio']:.2f}x   Spearman ours-captum {results['agreement']:.3f} "
        f"(ours-ours, other seed: {results['seed_agreement']:.3f})"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {best_device()}")
    bench_smoothgrad(args.images, args.samples, args.repeats)


if __name__ == "__main__":
    main()
