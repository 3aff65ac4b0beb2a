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
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from splitbrain import checkpoint as ckpt
from splitbrain import config as config_lib
from splitbrain import distributed
from splitbrain.data import SAME_FILES, fingerprint
from splitbrain.probe import ProbeError
from splitbrain.probe.data import probe_datasets
from splitbrain.probe.encoder import open_encoder
from splitbrain.probe.heads import HEADS_FILE, save_heads
from splitbrain.probe.report import format_table, save_results
from splitbrain.probe.solver_sgd import SGDRecipe, probe_sgd
from splitbrain.probe.solver_sklearn import probe_sklearn
from splitbrain.runlog import RunLog, fatal, silent
from splitbrain.runtime import use_fast_kernels

SOLVERS = ("sgd", "sklearn")  # probe.solver: splitbrain.probe.solver_sgd | solver_sklearn
SHORTHANDS = {"ckpt": "encoder.ckpt", "init": "encoder.init", "arch": "encoder.arch",
              "layer": "probe.layers", "data": "data.source", "out": "run.out",
              "device": "run.device"}
TRAINING_RUN = ("latest.pt", "best.pt", "train.log")  # what tools/train.py leaves in run.out


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


def load_config(argv):
    """The resolved config: the YAML file, then key=value overrides, then the flags."""
    args, overrides, shorthands = parse_args(argv)
    try:
        cfg = config_lib.resolve("probe", args.config, overrides)
        cfg = config_lib.apply_overrides(cfg, shorthands)
    except config_lib.ConfigError as err:
        fatal(err)
    if cfg["probe"]["solver"] not in SOLVERS:
        fatal(f"unknown probe.solver {cfg['probe']['solver']!r}; valid: {', '.join(SOLVERS)}")
    return cfg


def solve(cfg, encoder, train_set, val_set, num_classes, writer, log):
    """Run the config's solver: ({layer: {"dim", "top1", "top5", ...}}, {layer: LinearHead})."""
    d, o, r, s = cfg["data"], cfg["optim"], cfg["run"], cfg["sklearn"]
    if cfg["probe"]["solver"] == "sgd":
        return probe_sgd(encoder, train_set, val_set, num_classes, SGDRecipe(**o), r["seed"],
                         d["workers"], r["eval_every"], r["log_every"], writer, log)
    return probe_sklearn(encoder, train_set, val_set, num_classes, o["batch_size"], d["workers"],
                         s["Cs"], s["holdout"], s["max_iter"], s["knn_k"], s["knn_temperature"],
                         r["seed"], log, writer)


def main(argv=None):
    cfg = load_config(argv)
    e, p, d, r = cfg["encoder"], cfg["probe"], cfg["data"], cfg["run"]
    run_dir = Path(r["out"])

    # --- encoder and data: every check before any work ---------------------------------------
    try:
        encoder, spec, state = open_encoder(e["ckpt"], e["init"], e["arch"], p["layers"],
                                            p["resize"], r["precision"], r["seed"])
        ctx = distributed.init(r["device"])
        if ctx.distributed and p["solver"] != "sgd":
            raise ProbeError("probe.solver=sklearn runs in one process (its features are "
                             "cached in memory); launch it without torchrun")
        device = ctx.device
        use_fast_kernels(device)
        distributed.check_same(  # one encoder for all: a node may see another file there
            {"sha256": str((state or {}).get("checksum", ""))[:16]}, f"encoder.ckpt={e['ckpt']}",
            "Every process must read the same checkpoint: put it where every node sees it")
        train_set, val_set, classes = probe_datasets(
            d["source"], d["crop"], d["short_side"], d["root"], d["download"], d["train_length"],
            d["val_length"], r["seed"], augment=p["solver"] == "sgd")
        for split, dataset in (("train", train_set), ("val", val_set)):
            distributed.check_same(fingerprint(dataset), f"data.source={d['source']} ({split})",
                                   SAME_FILES)
        for dataset in (train_set, val_set):  # folders: some file must decode
            if hasattr(dataset, "check_readable"):
                dataset.check_readable()
        if p["solver"] == "sgd":
            SGDRecipe(**cfg["optim"]).check_data(len(train_set))
        ckpt.check_writable_folder(run_dir, "--out")
    except (ProbeError, OSError, ValueError, RuntimeError) as err:
        fatal(err)
    if (run_dir / "results.json").exists():
        fatal(f"{run_dir} already holds probe results; choose another --out")
    trained = [name for name in TRAINING_RUN if (run_dir / name).exists()]
    if trained:  # its config.yaml and TensorBoard events would be overwritten and mixed
        fatal(f"{run_dir} holds a training run ({', '.join(trained)}); choose another --out, "
              f"e.g. --out {run_dir / 'probe'}")
    distributed.barrier()  # every rank has looked before rank 0 writes

    # --- run directory (rank 0 writes for the run) -------------------------------------------
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_lib.save(cfg, run_dir / "config.yaml")
        log = RunLog(run_dir / "probe.log")
    else:
        log = silent
    encoder.to(device)
    torch.manual_seed(r["seed"])
    log(f"probing {spec['name']} ({e['init']} weights, {e['ckpt'] or 'no checkpoint'}) on "
        f"{device}: layers {', '.join(encoder.layers)}, {p['solver']} solver, {p['resize']} "
        f"resize")
    log(f"data {d['source']}: {len(classes)} classes, {len(train_set)} training and "
        f"{len(val_set)} validation images")

    # --- probe -----------------------------------------------------------------------------------
    writer = SummaryWriter(str(run_dir)) if ctx.is_main else None
    results, heads = solve(cfg, encoder, train_set, val_set, len(classes), writer, log)

    # --- report ----------------------------------------------------------------------------------
    for dataset in (train_set, val_set):  # every rank's unreadable files, for rank 0's count
        if getattr(dataset, "_unreadable", None) is not None:
            distributed.host_max_(dataset._unreadable)
    if ctx.is_main:
        writer.close()
        table = format_table(results)
        print(table, flush=True)
        log("results:\n" + table)
        # Folders skip files they cannot decode (every rank's, loader workers included).
        skipped = {split: dataset.skip_counts() for split, dataset in
                   (("train", train_set), ("val", val_set)) if hasattr(dataset, "skip_counts")}
        for split, counts in skipped.items():
            if counts:
                log(f"{split}: skipped {sum(counts.values())} unreadable file(s) ("
                    f"{', '.join(f'{reason}: {n}' for reason, n in counts.items())}); the "
                    f"warnings above name each")
        meta = {"model": spec, "ckpt": e["ckpt"], "init": e["init"],
                "task": state.get("task") if state else None, "data": d["source"],
                "num_classes": len(classes), "solver": p["solver"], "resize": p["resize"],
                "world_size": ctx.world_size, "unreadable_files": skipped}
        try:
            # The heads (for tools/evaluate.py --metric consistency --probe RUN_DIR), then the
            # results: results.json comes last, so its presence means a complete run.
            save_heads(run_dir / HEADS_FILE, heads, meta)
            save_results(results, run_dir, meta)
        except OSError as err:
            fatal(f"could not write the results to {run_dir} ({err}); the table is printed "
                  f"above; free some space or fix the folder and run again")
        log(f"done: {HEADS_FILE}, results.csv and results.json in {run_dir}")
    distributed.close()


if __name__ == "__main__":
    main()
