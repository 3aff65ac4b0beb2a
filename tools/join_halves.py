#!/usr/bin/env python
"""Join two split-brain halves trained alone into one split-brain checkpoint.

    python tools/train.py --task splitbrain model.half=l2ab run.out=runs/l2ab
    python tools/train.py --task splitbrain model.half=ab2l run.out=runs/ab2l
    python tools/join_halves.py runs/l2ab/latest.pt runs/ab2l/latest.pt -o runs/joined.pt

The joined checkpoint probes (tools/probe.py) and colorizes (tools/colorize.py) like one
trained with model.half=both. Halves of different architectures are refused.
"""

import argparse
import copy
from pathlib import Path

from splitbrain import checkpoint as ckpt
from splitbrain.models import SplitBrain
from splitbrain.runlog import fatal


def load_half(path):
    state = ckpt.load(path, task="splitbrain")
    spec = state["model"]
    if spec["kwargs"].get("half", "both") == "both":
        raise ckpt.CheckpointError(f"{path} holds both halves already; pass checkpoints "
                                   f"trained with model.half=l2ab and model.half=ab2l")
    return state, ckpt.build_model(state, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("halves", nargs=2, help="the two half checkpoints, in either order")
    parser.add_argument("-o", "--out", required=True)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.is_dir():  # --overwrite replaces a file, never a folder
        fatal(f"-o {out} is a folder; give a file name such as {out / 'joined.pt'}")
    if out.exists() and not args.overwrite:
        fatal(f"{out} exists; pass --overwrite to replace it")
    try:
        ckpt.check_writable_folder(out.parent, "-o")
        loaded = [load_half(p) for p in args.halves]
        names = [s["model"]["kwargs"]["half"] for s, _ in loaded]
        if sorted(names) != ["ab2l", "l2ab"]:
            raise ValueError(f"need one l2ab and one ab2l half, got {names}")
        loaded.sort(key=lambda item: ["l2ab", "ab2l"].index(item[0]["model"]["kwargs"]["half"]))
        (first, h1), (second, h2) = loaded
        if first["model"]["name"] != second["model"]["name"]:
            raise ValueError(f"the halves come from different models: {first['model']['name']} "
                             f"and {second['model']['name']}")
        model = SplitBrain.from_halves(h1, h2)
    except (ckpt.CheckpointError, ValueError, OSError) as err:
        fatal(err)

    kwargs = dict(first["model"]["kwargs"], half="both",
                  heads=[h1.head_type, h2.head_type])
    config = copy.deepcopy(first["config"])
    config["model"]["half"], config["model"]["heads"] = "both", kwargs["heads"]
    try:
        ckpt.save({"task": "splitbrain",
                   "model": {"name": first["model"]["name"], "kwargs": kwargs},
                   "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                   "config": config, "step": first["step"] + second["step"],
                   "color": first["color"], "metrics": {},
                   "joined_from": [str(p) for p in args.halves]}, out)
    except OSError as err:  # atomic: nothing half-written is left at -o
        fatal(f"could not write -o {out} ({err}); free some space or choose another -o")
    print(f"joined {args.halves[0]} and {args.halves[1]} into {out}")


if __name__ == "__main__":
    main()
