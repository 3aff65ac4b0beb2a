#!/usr/bin/env python
"""The Split-Brain paper's comparison at CIFAR-10 scale, from one command.

    python tools/study.py --data ../shared/data/cifar10-jpg.tar.gz --budget cpu --out runs/study
    python tools/study.py --data cifar10 --download --budget gpu --out runs/study_gpu
    python tools/study.py --data DIR --eval-split val --rows sb_cl,l2ab_cl --seeds 0 \\
        --train optim.lr=0.003 --out runs/select_lr3e-3      # choosing a setting

Rows, budgets and splits: configs/study_cifar10.yaml. For every row and seed: pretrain on
CIFAR-10's training images less a held-out validation split (labels unused), fit linear
probes on conv1..conv5 (labels used), score them on --eval-split (test by default; choose
settings with val), and for rows that predict colour, AuC / PSNR / colourfulness against
all-grey. Writes study_<split>.md (the tables), study_<split>.png (top-1 per layer, the seeds'
spread as error bars), study_<split>.json, and TensorBoard runs (tensorboard --logdir OUT).

Run the same command again to continue a stopped study: finished stages are read back, an
interrupted training run resumes from its checkpoint. A stage that fails is reported in the
table and the exit code (1); the other rows go on.
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

from splitbrain import config as config_lib
from splitbrain import study as study_lib
from splitbrain.runlog import RunLog, fatal

ROOT = config_lib.CONFIG_DIR.parent  # holds configs/: the checkout, or the installed package


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True,
                        help="folder with train/ and test/ (ImageFolder), a .tar.gz of one, "
                             "or cifar10 (torchvision)")
    parser.add_argument("--download", action="store_true",
                        help="--data cifar10: let torchvision fetch it")
    parser.add_argument("--budget", default="cpu", help="a budget of the study file: cpu | gpu")
    parser.add_argument("--out", default="runs/study", help="study folder")
    parser.add_argument("--study", default=str(ROOT / "configs" / "study_cifar10.yaml"),
                        help="the study file (rows, budgets, splits)")
    parser.add_argument("--eval-split", default="test", choices=study_lib.EVAL_SPLITS,
                        help="where probes and colour are scored: test (the report) or val "
                             "(choosing settings)")
    parser.add_argument("--rows", help="comma-separated row names (default: all)")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the budget's)")
    parser.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE",
                        help="keys set in every pretraining config (after the budget's)")
    parser.add_argument("--probe", nargs="*", default=[], metavar="KEY=VALUE",
                        help="keys set in every probe config (after the budget's)")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: write the tables of the stages already done (a "
                             "study still under way, or stopped)")
    return parser.parse_args(argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    out = Path(args.out)
    command = "python tools/study.py " + " ".join(shlex.quote(a) for a in argv if a != "--report")

    # --- the study, its data and splits: every check before the long work -----------------
    try:
        study = study_lib.load_study(args.study, args.budget, root=ROOT)
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
        study = study_lib.select(study, args.rows.split(",") if args.rows else None, seeds)
        extra_train = dict(config_lib.parse_overrides(args.train))
        extra_probe = dict(config_lib.parse_overrides(args.probe))
        for row in study.rows.values():  # a mistyped key fails now, not after an hour
            if row.task is not None:
                study_lib.train_config(study, row, 0, _PLACEHOLDER, out / "x", None, extra_train)
            study_lib.probe_config(study, row, 0, _PLACEHOLDER, args.eval_split, out / "x",
                                   out / "y", extra_probe)
        log = RunLog()  # its lines wait for study.log until the data is found
        log(f"study: {command}")
        data = study_lib.unpack_data(args.data, out / "data", args.download, log)
        out.mkdir(parents=True, exist_ok=True)
        log.attach(out / "study.log")
        splits = study_lib.make_splits(data, out / "splits", study.split)
    except (study_lib.StudyError, config_lib.ConfigError, ValueError, OSError) as err:
        fatal(err)
    log(f"rows {', '.join(study.rows)}; seeds {study.budget['seeds']}; budget {args.budget}; "
        f"scored on the {args.eval_split} split")

    # --- every row and seed -------------------------------------------------------------------
    started = time.time()
    outcome = study_lib.run_study(study, splits, out, args.eval_split, extra_train, extra_probe,
                                  log, only_done=args.report)
    if outcome.stopped is not None:
        log(f"stopped by a signal; run the same command again to continue: {command}")
        sys.exit(outcome.stopped.exit_code)
    md, text = study_lib.write_report(study, outcome, out, args.eval_split, command)
    print(text, flush=True)
    log(f"done in {(time.time() - started) / 60:.1f} min: {md}, "
        f"{md.with_suffix('.png')}, {md.with_suffix('.json')}")
    if outcome.failures:
        log(f"{len(outcome.failures)} stage(s) failed (listed in {md}); fix the cause and run "
            f"the same command again to redo only those")
        sys.exit(1)


# Split folders for checking configs before the real ones exist (nothing is read from them).
_PLACEHOLDER = study_lib.Splits(*(Path(".") / n for n in ("train", "val", "probe_val",
                                                          "probe_test", "test")))


if __name__ == "__main__":
    main()
