#!/usr/bin/env python
"""Time a probe step: all five layers from one frozen forward pass vs one layer alone.

    python tools/benchmark_probe.py                                    # small AlexNet, 96 px
    python tools/benchmark_probe.py --arch alexnet_colorization --size 227 --batch 256 --device cuda

A step is what ``splitbrain.probe.solver_sgd.train_probes`` does per batch: the frozen
encoder's forward (Lab conversion, taps, resize to the probe sizes) and an SGD step of every
head. Random 8-bit images (as the probe datasets serve them) and labels stand in for data, so
data loading is left out. Prints milliseconds per step for each layer alone, for all five
together, and the ratios; nothing is asserted.
"""

import argparse
import time

import torch

from splitbrain.models import MODELS, build_model
from splitbrain.probe.encoder import PROBE_LAYERS, FrozenEncoder
from splitbrain.probe.solver_sgd import SGDRecipe, build_heads, make_optimizers, probe_step
from splitbrain.runtime import PRECISIONS, resolve_device


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="alexnet_colorization_small",
                        choices=[m for m in MODELS if "alexnet" in m])
    parser.add_argument("--size", type=int, default=96, help="crop side (pixels)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per setting")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    return parser.parse_args(argv)


def ms_per_step(model, layers, rgb, labels, steps, precision):
    """Median milliseconds of a probe step over ``layers`` (after two warm-up steps)."""
    encoder = FrozenEncoder(model, layers, precision=precision)
    heads = build_heads(encoder.dims, int(labels.max()) + 1).to(rgb.device)
    optimizers, _ = make_optimizers(heads, SGDRecipe())
    times = []
    for i in range(steps + 2):
        if rgb.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        probe_step(encoder, heads, optimizers, rgb, labels)
        if rgb.device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def main(argv=None):
    args = parse_args(argv)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = build_model(args.arch).to(device)
    rgb = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8,
                        device=device)
    labels = torch.arange(args.batch, device=device) % args.classes
    labels[0] = args.classes - 1  # every class exists, so every head has args.classes outputs

    print(f"probe step, {args.arch}, batch {args.batch} × {args.size}² px, {device}, "
          f"{args.precision}, {torch.get_num_threads()} threads, median of {args.steps} steps")
    single = {}
    for layer in PROBE_LAYERS:
        single[layer] = ms_per_step(model, layer, rgb, labels, args.steps, args.precision)
        print(f"  {layer} alone               {single[layer]:9.1f} ms")
    together = ms_per_step(model, "all", rgb, labels, args.steps, args.precision)
    print(f"  all five, one pass       {together:9.1f} ms")
    print(f"  five single-layer runs   {sum(single.values()):9.1f} ms (sum)")
    print(f"ratio all-in-one-pass / conv4 alone:        {together / single['conv4']:.2f}")
    print(f"ratio five single-layer runs / one pass:    {sum(single.values()) / together:.2f}")


if __name__ == "__main__":
    main()
