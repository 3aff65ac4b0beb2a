#!/usr/bin/env python
"""Train a colorization or split-brain model.

    python tools/train.py --task colorize                      # demo on the bundled photos
    python tools/train.py --task colorize --config configs/colorize_eccv16_imagenet.yaml \
        data.train=/data/imagenet/train data.val=/data/imagenet/val
    python tools/train.py --task colorize --resume run.out=runs/colorize_demo
    torchrun --max-restarts=3 ... tools/train.py --auto-resume ...  # restarts continue the run

Any config key can be overridden as key=value (or --key value). Outputs go to run.out:
config.yaml, train.log, TensorBoard events (tensorboard --logdir runs), latest.pt, best.pt.
The run itself is splitbrain.lifecycle.train_run; this script reads its command line.
"""

import argparse
import sys

from splitbrain import tasks
from splitbrain.lifecycle import RunError, train_run
from splitbrain.runlog import fatal


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=sorted(tasks.TASKS))
    parser.add_argument("--config", help="YAML file (default: configs/<task>_demo.yaml)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in run.out from its latest checkpoint")
    parser.add_argument("--auto-resume", action="store_true",
                        help="resume when run.out holds a checkpoint, else start anew: one "
                             "command line for the first start and every restart (torchrun "
                             "--max-restarts, requeued cluster jobs)")
    parser.add_argument("--device", help="shorthand for run.device=...")
    parser.add_argument("--half", choices=["both", "l2ab", "ab2l"],
                        help="splitbrain: shorthand for model.half=... (train one half alone)")
    args, overrides = parser.parse_known_args(argv)
    if args.device:
        overrides.append(f"run.device={args.device}")
    if args.half:
        if args.task != "splitbrain":
            parser.error("--half applies to --task splitbrain only")
        overrides.append(f"model.half={args.half}")
    return args, overrides


def main(argv=None):
    args, overrides = parse_args(argv)
    try:
        result = train_run(args.task, config_path=args.config, overrides=overrides,
                           resume=args.resume, auto_resume=args.auto_resume)
    except RunError as err:
        fatal(err.message, log=err.log, code=err.code)
    if result.stopped:  # saved; the conventional 130 (SIGINT) or 143 (SIGTERM)
        sys.exit(result.exit_code)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # before the loop, where nothing is worth saving yet
        print("\ninterrupted before training started; nothing was saved", file=sys.stderr)
        sys.exit(130)
