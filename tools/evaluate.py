#!/usr/bin/env python
"""Colour-quality metrics of a trained colorization model (ECCV16 Table 1 style).

    python tools/evaluate.py --task colorize --ckpt runs/colorize_demo/best.pt --data sample

Prints AuC of the per-pixel ab error (thresholds 0..150, raw and class-rebalanced), PSNR and
colourfulness, for the model and for the all-grey prediction as a baseline.
"""

import argparse
import json
from pathlib import Path

from splitbrain import checkpoint as ckpt
from splitbrain import engine
from splitbrain.data import build_dataset, eval_loader
from splitbrain.runlog import fatal
from splitbrain.runtime import resolve_device
from splitbrain.tasks import objective_from_checkpoint

METRICS = ["auc", "auc_rebalanced", "psnr", "colourfulness"]


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
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

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
    except ValueError as err:  # a CheckpointError, or an unavailable device
        fatal(err)
    objective = objective_from_checkpoint(state, model)
    if args.temperature is not None:
        objective.temperature = args.temperature
    results = engine.evaluate(model, objective, eval_loader(dataset, args.batch_size), device)
    temperature = objective.temperature

    print(f"{len(dataset)} images from {args.data} ({args.split}), {size}x{size}, T={temperature}")
    print("| prediction | AuC | AuC rebalanced | PSNR (dB) | colourfulness |")
    print("|---|---|---|---|---|")
    for name in ("grey", "model"):
        row = [results.get(f"val/{name}/{m}", float("nan")) for m in METRICS]
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
