#!/usr/bin/env python
"""Linear probes on the frozen conv1..conv5 features of a colorization or split-brain model.

    python tools/probe.py --ckpt runs/colorize_demo/best.pt --layer conv4      # demo data
    python tools/probe.py --ckpt best.pt --layer all --data /data/imagenet --out runs/probe_in \\
        --config configs/probe_imagenet.yaml
    python tools/probe.py --init random --arch alexnet_colorization_small --layer all
    python tools/probe.py --ckpt best.pt --data cifar10 --config configs/probe_cifar10.yaml \\
        probe.solver=sklearn

--data takes sample (the bundled photos), cifar10, stl10, or a folder holding train/ and val/
in ImageFolder layout (ROOT/train/<class>/<image>). --layer all trains the five probes from one
frozen forward pass per batch. Any config key can be overridden as key=value. Outputs in --out:
config.yaml, probe.log, results.csv, results.json, TensorBoard events.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from splitbrain import checkpoint as ckpt  # noqa: E402
from splitbrain import config as config_lib  # noqa: E402
from splitbrain import engine, probe  # noqa: E402
from splitbrain.probe_sklearn import probe_sklearn  # noqa: E402
from splitbrain.runlog import RunLog, fatal  # noqa: E402

PROBED_TASKS = ("colorize", "splitbrain")
SHORTHANDS = {"ckpt": "encoder.ckpt", "init": "encoder.init", "arch": "encoder.arch",
              "layer": "probe.layers", "data": "data.source", "out": "run.out",
              "device": "run.device"}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file (default: configs/probe_demo.yaml)")
    parser.add_argument("--ckpt", help="checkpoint of tools/train.py (task colorize or splitbrain)")
    parser.add_argument("--layer", help="conv1 .. conv5, a list as conv2,conv4, or all")
    parser.add_argument("--data", help="sample | cifar10 | stl10 | folder with train/ and val/")
    parser.add_argument("--out", help="run directory")
    parser.add_argument("--init", choices=("checkpoint", "random"),
                        help="random: the same architecture with random weights (baseline)")
    parser.add_argument("--arch", help="architecture for --init random without --ckpt")
    parser.add_argument("--device", help="auto | cpu | cuda")
    args, overrides = parser.parse_known_args(argv)
    # The flags are shorthands for config keys, taken as plain strings (a path is not YAML).
    shorthands = {key: getattr(args, flag) for flag, key in SHORTHANDS.items()
                  if getattr(args, flag) is not None}
    return args, overrides, shorthands


def build_encoder(cfg):
    """The frozen encoder of the config; every way it can be wrong is a ProbeError here."""
    e = cfg["encoder"]
    state = None
    if e["ckpt"]:
        state = ckpt.load(e["ckpt"])
        if state.get("task") not in PROBED_TASKS:
            raise probe.ProbeError(f"{e['ckpt']} is a checkpoint of task {state.get('task')!r}; "
                                   f"the probe reads {' or '.join(PROBED_TASKS)} checkpoints")
    model, spec = probe.load_encoder(state, e["init"], e["arch"], cfg["run"]["seed"])
    encoder = probe.FrozenEncoder(model, cfg["probe"]["layers"], cfg["probe"]["resize"],
                                  cfg["run"]["precision"])
    return encoder, spec, state


def main(argv=None):
    args, overrides, shorthands = parse_args(argv)
    try:
        cfg = config_lib.resolve("probe", args.config, overrides)
        cfg = config_lib.apply_overrides(cfg, shorthands)
    except config_lib.ConfigError as err:
        fatal(err)
    p, d, o, r = cfg["probe"], cfg["data"], cfg["optim"], cfg["run"]
    if p["solver"] not in ("sgd", "sklearn"):
        fatal(f"unknown probe.solver {p['solver']!r}; valid: sgd, sklearn")

    # --- encoder and data: every check before any work ---------------------------------------
    try:
        encoder, spec, state = build_encoder(cfg)
        device = engine.resolve_device(r["device"])
        train_set, val_set, classes = probe.probe_datasets(
            d["source"], d["crop"], d["short_side"], d["root"], d["download"], d["train_length"],
            d["val_length"], r["seed"], augment=p["solver"] == "sgd")
    except (ckpt.CheckpointError, probe.ProbeError, FileNotFoundError, ValueError,
            RuntimeError) as err:
        fatal(err)
    if p["solver"] == "sgd" and len(train_set) < o["batch_size"]:
        fatal(f"{len(train_set)} training images, fewer than one batch of {o['batch_size']}; "
              f"lower optim.batch_size")
    run_dir = Path(r["out"])
    if (run_dir / "results.json").exists():
        fatal(f"{run_dir} already holds probe results; choose another --out")

    # --- run directory -------------------------------------------------------------------------
    run_dir.mkdir(parents=True, exist_ok=True)
    config_lib.save(cfg, run_dir / "config.yaml")
    log = RunLog(run_dir / "probe.log")
    encoder.to(device)
    torch.manual_seed(r["seed"])
    source = cfg["encoder"]["ckpt"] or "no checkpoint"
    log(f"probing {spec['name']} ({cfg['encoder']['init']} weights, {source}) on {device}: "
        f"layers {', '.join(encoder.layers)}, {p['solver']} solver, {p['resize']} resize")
    log(f"data {d['source']}: {len(classes)} classes, {len(train_set)} training and "
        f"{len(val_set)} validation images")

    # --- probe -----------------------------------------------------------------------------------
    writer = SummaryWriter(str(run_dir))
    if p["solver"] == "sgd":
        results = probe.probe_sgd(encoder, train_set, val_set, len(classes),
                                  probe.SGDRecipe(**o), r["seed"], d["workers"], r["eval_every"],
                                  r["log_every"], writer, log)
    else:
        s = cfg["sklearn"]
        results = probe_sklearn(encoder, train_set, val_set, len(classes), o["batch_size"],
                                d["workers"], s["Cs"], s["holdout"], s["max_iter"], s["knn_k"],
                                s["knn_temperature"], r["seed"], log)
        for name, res in results.items():
            for key in ("top1", "top5", "knn_top1", "knn_top5"):
                writer.add_scalar(f"probe/{name}/{key}", res[key], 0)
    writer.close()

    # --- report ----------------------------------------------------------------------------------
    table = probe.format_table(results)
    print(table, flush=True)
    log("results:\n" + table)
    probe.save_results(results, run_dir, {
        "model": spec, "ckpt": cfg["encoder"]["ckpt"], "init": cfg["encoder"]["init"],
        "task": state.get("task") if state else None, "data": d["source"],
        "num_classes": len(classes), "solver": p["solver"], "resize": p["resize"]})
    log(f"done: results.csv and results.json in {run_dir}")


if __name__ == "__main__":
    main()
