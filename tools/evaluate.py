#!/usr/bin/env python
"""Quality of a colorization model's output, and shift consistency of models and probes.

    python tools/evaluate.py --ckpt runs/colorize_demo/best.pt --data sample
    python tools/evaluate.py --ckpt runs/colorize_demo/best.pt --metric perceptual \
        --features runs/splitbrain_demo/latest.pt --layers conv1,conv2,conv3
    python tools/evaluate.py --metric consistency --ckpt runs/colorize_demo/best.pt --shift 16
    python tools/evaluate.py --metric consistency --probe runs/probe_demo --shift 16

--metric colour (default) prints AuC of the per-pixel ab error (thresholds 0..150, raw and
class-rebalanced), PSNR and colourfulness, for the model and for the all-grey prediction as a
baseline (ECCV16 Table 1 style).

--metric hints (Zhang, Zhu et al., SIGGRAPH 2017) scores a --task hints checkpoint with 0, 1,
2, 5, 10, 20 and 50 points revealed from the truth (--points), drawn as in its training, on
the same images for every count; --compare CKPT adds an automatic colorizer's row on the
same images.

--metric perceptual prints the perceptual distance (splitbrain.perceptual) of the colorized
output to the truth, through the frozen features of --features: a network that sees colour
(a split-brain checkpoint), since the output keeps the truth's lightness.

--metric consistency (Zhang, ICML 2019) crops each image twice, offset by up to --shift pixels:
for a colorizer it adds how far the predicted ab map moves (mean ab distance on the overlap,
after shifting back; 0 is perfectly stable) beside the colour metrics; for a probe run folder
(tools/probe.py --out) it reports, per layer, top-1 accuracy on the shifted crops and how often
the two crops of an image get the same class.
"""

import argparse
import json
from pathlib import Path

from splitbrain import checkpoint as ckpt
from splitbrain import config as config_lib
from splitbrain import engine, perceptual
from splitbrain import hints as hints_lib
from splitbrain.colorize import colorizer_from_checkpoint
from splitbrain.consistency import classifier_consistency, colorizer_consistency
from splitbrain.data import build_dataset
from splitbrain.loaders import eval_loader
from splitbrain.probe import ProbeError
from splitbrain.probe.data import probe_datasets
from splitbrain.probe.encoder import open_encoder
from splitbrain.probe.heads import HEADS_FILE, load_heads
from splitbrain.runlog import fatal
from splitbrain.runtime import resolve_device
from splitbrain.tasks import objective_from_checkpoint

METRICS = ["auc", "auc_rebalanced", "psnr", "colourfulness"]
CHOICES = ("colour", "perceptual", "consistency", "hints")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="colorize", choices=["colorize"])
    parser.add_argument("--metric", default="colour", choices=CHOICES)
    parser.add_argument("--ckpt", help="a colorization checkpoint")
    parser.add_argument("--probe", help="consistency of a probe: its run folder (tools/probe.py "
                                        "--out), which holds heads.pt")
    parser.add_argument("--data", default="sample", help="sample | cifar10 | stl10 | folder")
    parser.add_argument("--split", default="val")
    parser.add_argument("--size", type=int, default=None, help="centre crop (default: training)")
    parser.add_argument("--length", type=int, default=None, help="sample: number of crops")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--root", default="./data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--features", help="perceptual: checkpoint whose network gives the "
                        "features (must see colour, e.g. a split-brain checkpoint)")
    parser.add_argument("--layers", default=",".join(perceptual.DEFAULT_LAYERS),
                        help="perceptual: feature taps, comma-separated")
    parser.add_argument("--lin", help="perceptual: lin weights (tools/perceptual_2afc.py "
                        "--save-lin); default: every channel weighs 1")
    parser.add_argument("--shift", type=int, default=16,
                        help="consistency: largest offset between the two crops, in pixels")
    parser.add_argument("--seed", type=int, default=0,
                        help="consistency: seeds the offsets; hints: seeds the points")
    parser.add_argument("--points", default=",".join(map(str, hints_lib.POINTS)),
                        help="hints: numbers of points revealed, comma-separated")
    parser.add_argument("--compare", help="hints: an automatic colorization checkpoint scored "
                        "on the same images")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    args = parser.parse_args(argv)
    if args.json is not None:  # before any work: a refusal after a long pass loses it
        json_path = Path(args.json)
        if json_path.is_dir():
            fatal(f"--json {json_path} is a folder; give a file name such as "
                  f"{json_path / 'results.json'}")
        if json_path.exists() and not args.overwrite:
            fatal(f"--json {json_path} exists; pass --overwrite to replace it, or choose "
                  f"another file")
        try:
            ckpt.check_writable_folder(json_path.parent, "--json")
        except OSError as err:
            fatal(err)
    if (args.ckpt is None) == (args.probe is None):
        fatal("give --ckpt FILE (a colorization model) or --probe RUN_DIR (a probe run), "
              "one of the two")
    if args.probe is not None and args.metric != "consistency":
        fatal("--probe is read by --metric consistency; for a probe's accuracy see the "
              "results.csv that tools/probe.py wrote")
    if args.metric == "consistency" and args.shift < 1:
        fatal(f"--shift must be at least 1 pixel, got {args.shift}")
    if args.metric == "hints":
        try:
            args.points = sorted({int(p) for p in args.points.split(",")})
            if not 0 <= args.points[0] <= args.points[-1] <= 255:
                raise ValueError
        except ValueError:
            fatal(f"--points takes numbers of points in 0..255, comma-separated (e.g. "
                  f"0,1,2,5,10,20,50); got {args.points!r}")
    elif args.compare:
        fatal("--compare is read by --metric hints")
    if args.metric == "perceptual" and not args.features:
        parser.error("--metric perceptual needs --features CKPT (e.g. a split-brain checkpoint)")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.probe is not None:
        return probe_consistency(args)

    # --- model and data: every check before any work -----------------------------------------
    try:
        state = ckpt.load(args.ckpt, task="hints" if args.metric == "hints" else args.task)
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

    # --- measure ---------------------------------------------------------------------------
    if args.metric == "hints":
        results = hints_scores(args, state, model, dataset, device, head)
    elif args.metric == "perceptual":
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
        extra = {}
        if args.metric == "consistency":
            colorizer = colorizer_from_checkpoint(state, args.ckpt)
            colorizer.model.to(device).eval()
            colorizer.temperature = objective.temperature
            shifted = build_dataset(args.data, args.split, size + args.shift, train=False,
                                    length=len(dataset), root=args.root, seed=cfg["run"]["seed"])
            change = colorizer_consistency(colorizer, shifted, size, args.shift,
                                           args.batch_size, args.seed)["ab_shift_change"]
            results["val/model/ab_shift_change"] = change
            results["val/grey/ab_shift_change"] = 0.0  # all-grey does not move at all
            extra = {"ab_shift_change": f"ab change under shifts <= {args.shift} px"}
        print(head)
        print_colour_table(results, extra)
    if args.json:
        write_json(args.json, results)


def hints_scores(args, state, model, dataset, device, head):
    """The PSNR / AuC curve against revealed points; the automatic model's row if asked."""
    sampler = hints_lib.HintSampler.from_config(state["config"]["hints"])
    weights = state["color"].get("class_weights")
    if args.compare:  # checked before the long pass
        try:
            auto_state = ckpt.load(args.compare, task="colorize")
            auto = ckpt.build_model(auto_state, args.compare).to(device)
        except ValueError as err:
            fatal(f"--compare: {err}")
    model.eval()
    loader = eval_loader(dataset, args.batch_size)
    results = hints_lib.evaluate_hints(model, sampler, loader, device, args.points,
                                       None if weights is None else weights.to(device),
                                       args.seed)
    rows = [("all grey", results["grey"])] + [(f"{n} point{'s' * (n != 1)}", results[n])
                                             for n in args.points]
    if args.compare:
        auto_objective = objective_from_checkpoint(auto_state, auto)
        auto_objective.class_weights = weights  # rebalanced AuC with the same weights
        scores = engine.evaluate(auto, auto_objective, loader, device)
        results["automatic"] = {m: scores.get(f"val/model/{m}", float("nan")) for m in METRICS}
        rows.append((f"automatic ({args.compare})", results["automatic"]))
    print(f"{head}; points drawn as in training (patches {sampler.patch[0]}-{sampler.patch[1]} "
          f"px, {sampler.location}), seed {args.seed}")
    print("| prediction | " + " | ".join(["AuC", "AuC rebalanced", "PSNR (dB)",
                                           "colourfulness"]) + " |")
    print("|---" * 5 + "|")
    for name, r in rows:
        print(f"| {name} | " + " | ".join(f"{r.get(m, float('nan')):.2f}" for m in METRICS)
              + " |")
    return {str(k): v for k, v in results.items()}


def print_colour_table(results, extra=None):
    """The colour metrics of the grey and model rows, plus ``extra`` {metric: column title}."""
    extra = extra or {}
    columns = ["AuC", "AuC rebalanced", "PSNR (dB)", "colourfulness", *extra.values()]
    print("| prediction | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name in ("grey", "model"):
        row = [results.get(f"val/{name}/{m}", float("nan")) for m in METRICS + list(extra)]
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + " |")


def write_json(path, results):
    """Write ``results`` to ``path`` atomically; a failed write is a message, not a traceback."""
    try:
        ckpt.atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(results, indent=2)))
    except OSError as err:
        fatal(f"could not write --json {path} ({err}); the results are printed above")


def probe_consistency(args):
    """Top-1 on shifted crops and two-crop agreement, per layer, of a probe run's heads."""
    run = Path(args.probe)
    try:
        heads, meta = load_heads(run / HEADS_FILE)
        cfg = config_lib.load_yaml(run / "config.yaml")
        d = cfg["data"]
        size = args.size or d["crop"]
        encoder, _, _ = open_encoder(meta["ckpt"], meta["init"], meta["model"]["name"],
                                     list(heads), meta["resize"], "fp32", cfg["run"]["seed"])
        _, val, _ = probe_datasets(d["source"], size + args.shift,
                                   max(d["short_side"], size + args.shift), d["root"],
                                   d["download"], d["train_length"],
                                   args.length or d["val_length"], cfg["run"]["seed"],
                                   augment=False)
        device = resolve_device(args.device)
    except (ProbeError, config_lib.ConfigError, ckpt.CheckpointError, FileNotFoundError,
            ValueError, KeyError) as err:
        fatal(f"{run}: missing {err}" if isinstance(err, KeyError) else err)
    encoder.to(device)
    heads = {name: head.to(device) for name, head in heads.items()}
    results = classifier_consistency(encoder, heads, val, size, args.shift, args.batch_size,
                                     args.seed)
    reported = json.loads((run / "results.json").read_text())["layers"] \
        if (run / "results.json").is_file() else {}
    print(f"{len(val)} images from {d['source']} (val), two {size}x{size} crops offset by "
          f"up to {args.shift} px; {meta['solver']} heads of {meta['model']['name']} "
          f"({meta['init']} weights)")
    print("| layer | top-1 (centre crops, probe run) | top-1 (shifted crops) | consistency |")
    print("|---|---|---|---|")
    for name, r in results.items():
        centre = reported.get(name, {}).get("top1", float("nan"))
        print(f"| {name} | {centre:.2f} | {r['top1']:.2f} | {r['consistency']:.2f} |")
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
