#!/usr/bin/env python
"""Quality of a trained colorization model's output, beside the all-grey prediction.

    python tools/evaluate.py --task colorize --ckpt runs/colorize_demo/best.pt --data sample
    python tools/evaluate.py --ckpt runs/colorize_demo/best.pt --metric perceptual \
        --features runs/splitbrain_demo/latest.pt --layers conv1,conv2,conv3

--metric colour (default) prints AuC of the per-pixel ab error (thresholds 0..150, raw and
class-rebalanced), PSNR and colourfulness (ECCV16 Table 1 style). --metric perceptual prints
the perceptual distance (splitbrain.perceptual) of the colorized output to the truth, through
the frozen features of --features: a network that sees colour (a split-brain checkpoint),
since the output keeps the truth's lightness.
"""

import argparse
import json
from pathlib import Path

from splitbrain import checkpoint as ckpt
from splitbrain import engine, perceptual
from splitbrain.data import build_dataset, eval_loader
from splitbrain.runlog import fatal
from splitbrain.runtime import resolve_device
from splitbrain.tasks import objective_from_checkpoint

METRICS = ["auc", "auc_rebalanced", "psnr", "colourfulness"]
CHOICES = ("colour", "perceptual")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="colorize", choices=["colorize"])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--data", default="sample", help="sample | cifar10 | stl10 | folder")
    parser.add_argument("--split", default="val")
    parser.add_argument("--size", type=int, default=None, help="centre crop (default: training)")
    parser.add_argument("--length", type=int, default=None, help="sample: number of crops")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--root", default="./data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--metric", default="colour", choices=CHOICES,
                        help="colour: AuC, PSNR, colourfulness; perceptual: distance to the truth")
    parser.add_argument("--features", help="perceptual: checkpoint whose network gives the "
                        "features (must see colour, e.g. a split-brain checkpoint)")
    parser.add_argument("--layers", default=",".join(perceptual.DEFAULT_LAYERS),
                        help="perceptual: feature taps, comma-separated")
    parser.add_argument("--lin", help="perceptual: lin weights (tools/perceptual_2afc.py "
                        "--save-lin); default: every channel weighs 1")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.metric == "perceptual" and not args.features:
        parser.error("--metric perceptual needs --features CKPT (e.g. a split-brain checkpoint)")

    try:
        state = ckpt.load(args.ckpt, task=args.task)
        cfg = state["config"]
        size = args.size or cfg["data"]["val_crop"]
        dataset = build_dataset(args.data, args.split, size, train=False,
                                length=args.length or cfg["data"]["val_length"],
                                root=args.root, seed=cfg["run"]["seed"])
    except (ckpt.CheckpointError, FileNotFoundError, ValueError, RuntimeError) as err:
        fatal(err)
    try:
        device = resolve_device(args.device)
        model = ckpt.build_model(state, args.ckpt).to(device)
        if args.metric == "perceptual":
            features = perceptual.load_features(args.features).to(device)
            perceptual.require_colour(features, f"--features {args.features}")
            layers = perceptual.check_layers(features, args.layers)
            lin = perceptual.load_lin_weights(args.lin, features, layers) if args.lin else None
    except ValueError as err:  # a CheckpointError, PerceptualError, or an unavailable device
        fatal(err)
    objective = objective_from_checkpoint(state, model)
    if args.temperature is not None:
        objective.temperature = args.temperature
    loader = eval_loader(dataset, args.batch_size)
    head = f"{len(dataset)} images from {args.data} ({args.split}), {size}x{size}, " \
           f"T={objective.temperature}"
    if args.metric == "perceptual":
        results = perceptual.score_colorizer(model, objective, loader, features, layers, lin,
                                             device)
        print(f"{head}; features {args.features}, layers {','.join(layers)}, "
              f"{'lin weights ' + args.lin if lin else 'channels weighted 1'}")
        print("| prediction | perceptual distance to the truth |")
        print("|---|---|")
        for name in ("grey", "model"):
            print(f"| {name} | {results[name]:.5f} |")
    else:
        results = engine.evaluate(model, objective, loader, device)
        print(head)
        print_colour_table(results)
    if args.json:
        ckpt.atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(results,
                                                                                 indent=2)))


def print_colour_table(results):
    print("| prediction | AuC | AuC rebalanced | PSNR (dB) | colourfulness |")
    print("|---|---|---|---|---|")
    for name in ("grey", "model"):
        row = [results.get(f"val/{name}/{m}", float("nan")) for m in METRICS]
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + " |")


if __name__ == "__main__":
    main()
