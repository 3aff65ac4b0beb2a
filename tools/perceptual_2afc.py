#!/usr/bin/env python
"""2AFC check of perceptual distances on the bundled photos (no download).

    python tools/perceptual_2afc.py --features runs/splitbrain_demo/latest.pt \
        --features runs/colorize_demo/latest.pt --layers conv1,conv2,conv3,conv4,conv5 \
        --layers conv1,conv2 --out 2afc.md

Builds triplets (a reference crop, two distortions of the same kind at two strengths: blur,
noise, JPEG, colour shift) and prints, per kind and overall, how often each distance calls the
weaker distortion closer: each --features checkpoint per layer set, the same architecture with
random weights, pixel L2 and SSIM. "+ lin" rows use per-channel weights fitted on the triplets
of four photos; every row is scored on the triplets of the other three. A fixed --seed gives
the same table.
"""

import argparse
from pathlib import Path

import torch

from splitbrain import checkpoint as ckpt
from splitbrain import perceptual, twoafc
from splitbrain.data import SAMPLE_PHOTOS
from splitbrain.runlog import fatal


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", action="append", default=[],
                        help="checkpoint whose network gives features (repeatable)")
    parser.add_argument("--random", action="append", default=[],
                        help="also a random-init network of this model name (repeatable; "
                             "default splitbrain_alexnet_small when no --features is given)")
    parser.add_argument("--layers", action="append", default=[],
                        help="a layer set, comma-separated (repeatable; default conv1..conv5)")
    parser.add_argument("--size", type=int, default=64, help="crop side (pixels)")
    parser.add_argument("--scale", type=int, default=128, help="photos' short side before cropping")
    parser.add_argument("--per-kind", type=int, default=16,
                        help="triplets per photo and distortion kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-photos", default=",".join(twoafc.TEST_PHOTOS),
                        help=f"photos scored (the others fit lin); of {', '.join(SAMPLE_PHOTOS)}")
    parser.add_argument("--out", help="also write the markdown table here")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out and existing --save-lin files")
    parser.add_argument("--save-lin", help="folder for the fitted lin weights (one file per "
                        "checkpoint and layer set)")
    return parser.parse_args(argv)


def feature_networks(args):
    """label -> frozen network: each checkpoint, its architecture at random init, --random."""
    nets, random_archs = {}, list(args.random)
    for path in args.features:
        model = perceptual.load_features(path)
        nets[path] = model
        spec = ckpt.load(path).get("model", {})
        random_archs.append((spec["name"], dict(spec.get("kwargs") or {})))
    if not args.features and not args.random:
        random_archs.append("splitbrain_alexnet_small")
    specs = []
    for arch in random_archs:
        spec = arch if isinstance(arch, tuple) else (arch, {})
        if spec not in specs:  # two checkpoints of one architecture share this row
            specs.append(spec)
            label = f"random-init {spec[0]}"
            label += f" #{len(specs)}" if label in nets else ""
            nets[label] = perceptual.random_features(spec[0], args.seed, **spec[1])
    return nets


def main(argv=None):
    args = parse_args(argv)
    try:
        tests = [p.strip() for p in args.test_photos.split(",") if p.strip()]
        unknown = [p for p in tests if p not in SAMPLE_PHOTOS]
        if unknown or not tests or len(tests) == len(SAMPLE_PHOTOS):
            raise ValueError(f"--test-photos {args.test_photos!r}: give some but not all of "
                             f"{', '.join(SAMPLE_PHOTOS)}")
        for key in ("size", "scale", "per_kind"):
            if getattr(args, key) < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be at least 1")
        if args.out and Path(args.out).exists() and not args.overwrite:
            raise ValueError(f"--out {args.out} exists; pass --overwrite to replace it")
        if args.save_lin:
            ckpt.check_writable_folder(args.save_lin, "--save-lin")
        nets = feature_networks(args)
        layer_sets = {label: [perceptual.check_layers(model, ls) for ls in
                              (args.layers or [",".join(perceptual.DEFAULT_LAYERS)])]
                      for label, model in nets.items()}
        if args.save_lin:
            taken = [Path(args.save_lin) / lin_file_name(label, layers) for label in args.features
                     for layers in layer_sets[label]]
            taken = [path for path in taken if path.exists()]
            if taken and not args.overwrite:
                raise ValueError(f"{len(taken)} lin weight file(s) exist in --save-lin (e.g. "
                                 f"{taken[0]}); pass --overwrite to replace them or choose "
                                 f"another --save-lin folder")
        triplets = twoafc.make_triplets(args.size, args.per_kind, args.seed, args.scale)
    except (ValueError, OSError) as err:  # PerceptualError and CheckpointError included
        fatal(err)

    # --- distances, scored on the test photos -------------------------------------------------
    test = torch.isin(triplets.photo, torch.tensor([SAMPLE_PHOTOS.index(p) for p in tests]))
    rows = {}
    for label, fn in (("L2 (pixels)", twoafc.pixel_l2), ("SSIM", twoafc.ssim_distance)):
        near, far = twoafc.pair_distances(triplets, fn)
        rows[label] = twoafc.judge(near[test], far[test])
    for label, model in nets.items():
        new_rows, lins = twoafc.feature_rows(label, triplets, model, layer_sets[label], test)
        rows.update(new_rows)
        if args.save_lin and label in args.features:
            for layers, lin in lins.items():
                path = Path(args.save_lin) / lin_file_name(label, layers)
                perceptual.save_lin_weights(path, lin, f"{label} {','.join(layers)}: 2AFC fit "
                                            f"on {len(triplets) - int(test.sum())} triplets, "
                                            f"seed {args.seed}")
                print(f"lin weights: {path}")

    # --- the table ----------------------------------------------------------------------------
    text = (f"2AFC on {int(test.sum())} test triplets ({', '.join(tests)}; lin fitted on the "
            f"other {len(triplets) - int(test.sum())}), {args.size}x{args.size} crops, seed "
            f"{args.seed}; % of triplets where the weaker distortion is closer\n\n"
            + twoafc.table(rows, triplets.kind[test]) + "\n")
    print(text, end="")
    if args.out:
        ckpt.atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))


def lin_file_name(path, layers):
    """runs/splitbrain_demo/latest.pt, (conv1, conv2) -> splitbrain_demo_latest_conv1-2.lin.pt"""
    path = Path(path)
    return f"{path.parent.name}_{path.stem}_{twoafc.layer_set_name(layers)}.lin.pt".lstrip("_")


if __name__ == "__main__":
    main()
