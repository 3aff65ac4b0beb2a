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
config.yaml, probe.log, results.csv, results.json, TensorBoard events. The run itself is
splitbrain.probe.run.probe_run; this script reads its command line.
"""

import argparse

from splitbrain import config as config_lib
from splitbrain.probe.run import probe_run
from splitbrain.runlog import RunError, fatal

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


def load_config(argv):
    """The resolved config: the YAML file, then key=value overrides, then the flags."""
    args, overrides, shorthands = parse_args(argv)
    try:
        cfg = config_lib.resolve("probe", args.config, overrides)
        cfg = config_lib.apply_overrides(cfg, shorthands)
    except config_lib.ConfigError as err:
        fatal(err)
    return cfg


def main(argv=None):
    try:
        probe_run(load_config(argv))
    except RunError as err:
        fatal(err.message, log=err.log, code=err.code)


if __name__ == "__main__":
    main()
