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

With --step it measures whole training steps instead (splitbrain.throughput): the ECCV16 net
and the split-brain AlexNet at their paper crop sizes, fp32 and bf16 autocast, with and
without channels_last (optionally torch.compile): step time, images/s, the share of the step
spent outside the network (colour conversion, targets, loss), achieved TFLOP/s (and the share
of the device's bf16 peak on a known GPU), peak memory on CUDA, and the data loader alone
(JPEG decode + crop) with N workers beside the step's images/s; on CUDA also with the JPEGs
decoded on the GPU (data.decode=gpu).

    python tools/benchmark.py --step [--nets eccv16,splitbrain_alexnet] [--batch 32] \
        [--precisions fp32,bf16] [--compile] [--workers 0,2] [--out table.md]
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import skimage.color
import torch
from sklearn.neighbors import NearestNeighbors

from splitbrain import color, throughput
from splitbrain.jpeg_gpu import gpu_decode_problem
from splitbrain.runtime import resolve_device, use_fast_kernels


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
    parser.add_argument("--step", action="store_true", help="time whole training steps")
    parser.add_argument("--nets", default="eccv16,splitbrain_alexnet", help="--step: networks")
    parser.add_argument("--precisions", default="fp32,bf16", help="--step: autocast modes")
    parser.add_argument("--channels-last", default="no,yes", help="--step: no, yes or both")
    parser.add_argument("--compile", action="store_true", help="--step: also torch.compile")
    parser.add_argument("--steps", type=int, default=3, help="--step: timed steps (median)")
    parser.add_argument("--warmup", type=int, default=1, help="--step: untimed steps first")
    parser.add_argument("--workers", default="0,2", help="--step: loader worker counts")
    parser.add_argument("--out", help="--step: also write the markdown here")
    args = parser.parse_args(argv)
    if args.step:
        return step_benchmark(args)

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


def step_benchmark(args):
    """Whole training steps and the loader; a markdown report on stdout (and --out).

    Each configuration runs on its own: one that fails (out of memory, a compiler error) is a
    row saying so, and --out is rewritten after every row, so a run cut short keeps what it
    measured.
    """
    device = resolve_device(args.device)
    use_fast_kernels(device)  # as training does
    nets = args.nets.split(",")
    size_given = args.size != 176  # the colour benchmark's default: use paper sizes instead
    peak = throughput.device_peak_tflops(device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{platform.processor() or platform.machine()} CPU")
    header = (f"{time.strftime('%Y-%m-%d')}, {name}, {os.cpu_count()} cores, "
              f"{torch.get_num_threads()} threads, torch {torch.__version__}, batch {args.batch}")
    results, loader_rows = [], []

    def report():
        lines = [header, "", throughput.step_table(results, peak), ""]
        if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
            lines += ["fp32 rows: cuDNN convolutions run in TF32 (PyTorch's default, "
                      "torch.backends.cudnn.allow_tf32).", ""]
        measured = [r for r in results if not isinstance(r, str)]
        fp32 = {r.net: r for r in measured if r.precision == "fp32" and not r.channels_last
                and not r.compiled}
        for r in measured:
            if r.net in fp32 and r is not fp32[r.net]:
                lines.append(f"- {r.net} {r.precision}"
                             f"{' channels_last' if r.channels_last else ''}"
                             f"{' compiled' if r.compiled else ''}: "
                             f"{fp32[r.net].step_ms / r.step_ms:.2f}x the fp32 step's speed")
        eager = {(r.net, r.precision, r.channels_last): r for r in measured if not r.compiled}
        for r in measured:  # what compiling alone gives, against its eager twin of this run
            twin = eager.get((r.net, r.precision, r.channels_last)) if r.compiled else None
            if twin is not None:
                lines.append(f"- {r.net} {r.precision}"
                             f"{' channels_last' if r.channels_last else ''} compiled: "
                             f"{twin.step_ms / r.step_ms:.2f}x the eager step's speed")
        if loader_rows:
            lines += ["", f"| loader workers ({crop} px crops of 256 px JPEGs) | images/s | "
                      f"per core | vs the fastest step ({best_step:.0f} images/s) |",
                      "|---|---|---|---|", *loader_rows]
        text = "\n".join(lines)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text + "\n")
        return text

    for net in nets:
        size = args.size if size_given else throughput.PAPER_SIZES.get(net, args.size)
        for precision in args.precisions.split(","):
            for cl in args.channels_last.split(","):
                for compiled in ([False, True] if args.compile else [False]):
                    label = f"{net} {precision} channels_last={cl} compile={compiled}"
                    try:
                        results.append(throughput.bench_step(
                            net, args.batch, size, device, precision, cl == "yes", compiled,
                            args.steps, args.warmup))
                        print(f"  {label}: {results[-1].step_ms:.1f} ms", flush=True)
                    except Exception as err:  # noqa: BLE001 - any failure is a row, not the end
                        results.append(f"{label}: failed: {type(err).__name__}: "
                                       f"{str(err).splitlines()[0][:200] if str(err) else ''}")
                        print(f"  {results[-1]}", flush=True)
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                    report()
    crop = throughput.PAPER_SIZES.get(nets[0], args.size) if not size_given else args.size
    best_step = max((r.images_per_s for r in results if not isinstance(r, str)), default=0.0)

    def loader_row(label, workers, **kwargs):
        try:
            rate = throughput.bench_loader(crop, args.batch, workers, **kwargs)
        except Exception as err:  # noqa: BLE001
            return f"| {label} | - | - | failed: {type(err).__name__}: {err} |"
        verdict = "keeps up" if rate >= best_step else "bounds the run"
        per_core = f"{rate / max(workers, 1):.0f}" if "device" not in kwargs else "-"
        return (f"| {label} | {rate:.0f} | {per_core} | "
                f"{rate / best_step if best_step else float('nan'):.2f}x: {verdict} |")

    for w in map(int, args.workers.split(",")):
        loader_rows.append(loader_row(str(w), w))
        report()
    if device.type == "cuda":  # data.decode=gpu: nvJPEG in the main process
        why = gpu_decode_problem(device)
        for w in map(int, args.workers.split(",")):
            if why:
                loader_rows.append(f"| GPU decode | - | - | unavailable: {why} |")
                break
            loader_rows.append(loader_row(f"{w}, GPU decode", w, device=device))
            report()
    print(report())
    failed = sum(isinstance(r, str) for r in results) + sum("failed:" in r for r in loader_rows)
    if failed:
        print(f"{failed} configuration(s) failed: see the rows above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
