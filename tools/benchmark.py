#!/usr/bin/env python
"""Measure the colour pipeline of a training step against the original approach.

For a batch of 8-bit RGB images, times "Lab + soft encoding + rebalancing weights" with
splitbrain (batched tensors: L by table lookup, k-NN from a proven lookup table) and with a
per-image reference in the style of the original Caffe training layers (skimage rgb2lab,
scikit-learn NearestNeighbors fitted once, a dense 313-channel target, the nearest bin found
by argmax over it). Both run in the same process, alternating round by round so that a busy
spell on the machine slows both; ours is timed back to back and, separately, on its first
call after the reference (cold caches). Prints best and median times and their ratios.
Figures only: nothing is asserted.

    python tools/benchmark.py [--batch 32] [--size 176] [--stride 4] [--repeats 10]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import skimage.color
import torch
from sklearn.neighbors import NearestNeighbors

from splitbrain import color


def ours(rgb, stride, class_weights, k, sigma):
    """Network input L at full resolution; soft targets and pixel weights at 1/stride."""
    h, w = rgb.shape[-2] // stride, rgb.shape[-1] // stride
    L = color.lightness(rgb)  # (B, 1, H, W)
    ab = color.sample_ab(rgb, (h, w))  # (B, 2, h, w)
    idx, weights = color.soft_encode(ab, k, sigma)  # (B, k, h, w)
    pixel_w = class_weights[idx[:, 0]] * color.colorful_mask(ab)[:, None, None]
    return L, idx, weights, pixel_w


class Reference:
    """Per-image NumPy / scikit-learn version of the same work (the original layers' approach)."""

    def __init__(self, class_weights, k, sigma):
        self.centres = color.ab_bin_centres(dtype=torch.float64).numpy()
        self.nn = NearestNeighbors(n_neighbors=k, algorithm="ball_tree").fit(self.centres)
        self.class_weights = class_weights.double().numpy()
        self.sigma = sigma

    def __call__(self, rgb, stride):
        out = []
        for image in rgb.permute(0, 2, 3, 1).double().numpy():  # (H, W, 3) each
            lab = skimage.color.rgb2lab(image)
            ab = lab[::stride, ::stride, 1:]  # (h, w, 2)
            h, w = ab.shape[:2]
            dist, idx = self.nn.kneighbors(ab.reshape(-1, 2))
            wts = np.exp(-dist**2 / (2 * self.sigma**2))
            wts /= wts.sum(1, keepdims=True)
            dense = np.zeros((h * w, len(self.centres)))
            np.put_along_axis(dense, idx, wts, axis=1)
            pixel_w = self.class_weights[dense.argmax(1)] * (np.abs(ab).max() > 5)
            out.append((lab[..., 0], dense.reshape(h, w, -1), pixel_w.reshape(h, w)))
        return out


def timed_rounds(ours, reference, rounds, runs=5):
    """Alternate the two pipelines round by round, so that a busy spell on the machine slows
    both: each round times ``runs`` back-to-back calls of ours, then one of the reference.

    Returns:
        {"cold": [...], "warm": [...], "reference": [...]} sorted seconds. "cold" holds ours'
        first call of each round (its tables pushed out of the caches by the reference, as a
        training step's other work would), "warm" the back-to-back calls that follow.
    """
    ours(), reference()  # warm-up: builds the lookup tables
    times = {"cold": [], "warm": [], "reference": []}
    for _ in range(rounds):
        for run in range(runs):
            t = time.perf_counter()
            ours()
            times["warm" if run else "cold"].append(time.perf_counter() - t)
        t = time.perf_counter()
        reference()
        times["reference"].append(time.perf_counter() - t)
    return {name: sorted(ts) for name, ts in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=176)
    parser.add_argument("--stride", type=int, default=4, help="output resolution 1/stride")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10,
                        help="rounds; each times ours 5 times and the reference once")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    # 8-bit images, as decoded photos are; the reference gets the same values as floats.
    rgb_u8 = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8,
                           generator=g)
    rgb = rgb_u8.float() / 255
    prior = torch.rand(color.NUM_AB_BINS, generator=g).double()
    class_weights = color.rebalance_weights(prior / prior.sum())
    rgb_dev, cw_dev = rgb_u8.to(device), class_weights.to(device)

    def run_ours():
        out = ours(rgb_dev, args.stride, cw_dev, args.k, 5.0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    reference = Reference(class_weights, args.k, 5.0)
    times = timed_rounds(run_ours, lambda: reference(rgb, args.stride), args.repeats)
    best = {name: ts[0] for name, ts in times.items()}
    median = {name: float(np.median(ts)) for name, ts in times.items()}

    side = args.size // args.stride
    print(f"batch {args.batch} x {args.size}x{args.size} RGB, targets {side}x{side}, k={args.k}, "
          f"{torch.get_num_threads()} threads, device {device}, {args.repeats} rounds")
    print("| pipeline | best ms | median ms |")
    print("|---|---|---|")
    for name, label in [("warm", "splitbrain, back to back"),
                        ("cold", "splitbrain, first call after the reference"),
                        ("reference", "per-image skimage + sklearn NearestNeighbors")]:
        print(f"| {label} | {best[name] * 1e3:.2f} | {median[name] * 1e3:.2f} |")
    print(f"speed-up: {best['reference'] / best['warm']:.1f}x (best / best), "
          f"{median['reference'] / median['warm']:.1f}x (median / median), "
          f"{median['reference'] / median['cold']:.1f}x (median / median, first calls)")


if __name__ == "__main__":
    main()
