#!/usr/bin/env python
"""Compute the empirical ab prior of a dataset, for class rebalancing.

    python tools/compute_prior.py --data /data/imagenet/train --out prior.npy
    python tools/train.py --task colorize color.prior=prior.npy

--data takes a folder of images (searched recursively), sample, cifar10 or stl10.
"""

import argparse
from pathlib import Path

import torch
from torch.utils.data import Subset

from splitbrain import checkpoint as ckpt
from splitbrain import color
from splitbrain.data import build_dataset
from splitbrain.runtime import resolve_device
from splitbrain.prior import estimate_prior, save_prior, summary
from splitbrain.runlog import fatal


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, help="where to write the prior (.npy)")
    parser.add_argument("--size", type=int, default=176, help="centre crop of each image")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-images", type=int, default=0,
                        help="use a random subset of this many images (0 = every image)")
    parser.add_argument("--seed", type=int, default=0, help="picks the --max-images subset")
    parser.add_argument("--length", type=int, default=1024, help="sample: number of crops")
    parser.add_argument("--sigma", type=float, default=5.0, help="smoothing, ab units")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--root", default="./data", help="where cifar10 / stl10 live")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    out = Path(args.out)
    if out.is_dir():
        fatal(f"--out {out} is a folder; give a file name such as {out / 'prior.npy'}")
    if out.exists() and not args.overwrite:
        fatal(f"{out} exists; pass --overwrite to replace it")

    # --- data: the training split, centre crops; a random subset if asked -----------------
    try:
        ckpt.check_writable_folder(out.parent, "--out")  # before the pass, not after it
        dataset = build_dataset(args.data, "train", args.size, train=False, length=args.length,
                                root=args.root)
    except (OSError, ValueError, RuntimeError) as err:
        fatal(err)
    images = dataset
    if 0 < args.max_images < len(dataset):
        # Folders list files sorted, often class by class: the first N would be a few classes.
        pick = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.seed))
        images = Subset(dataset, pick[:args.max_images].tolist())

    # --- histogram, smoothing, atomic write ---------------------------------------------------
    try:
        prior, hist = estimate_prior(images, 0, args.batch_size, resolve_device(args.device),
                                     args.sigma, args.workers)
        save_prior(prior.numpy(), out)
    except (OSError, ValueError, RuntimeError) as err:
        fatal(err)
    s = summary(prior, hist)
    skipped = len(getattr(dataset, "skipped", ()))
    print(f"wrote {out}")
    print(f"images used: {s['images']} (grey images left out); unreadable files skipped: {skipped}")
    print(f"bins seen: {s['bins_seen']} of {color.NUM_AB_BINS}; "
          f"entropy: {s['entropy_bits']:.2f} bits")
    print(f"rebalancing weights (lambda 0.5): {s['weight_min']:.3f} .. {s['weight_max']:.3f}")


if __name__ == "__main__":
    main()
