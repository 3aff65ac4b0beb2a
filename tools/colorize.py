#!/usr/bin/env python
"""Colorize grayscale photos at their full resolution.

    python tools/colorize.py old_photos/ scan.tif --ckpt runs/colorize_demo/best.pt -o out/
    python tools/colorize.py photo.jpg --ckpt colorization_release_v2-9b330a0b.pth -o out/
    python tools/colorize.py photo.jpg --ckpt runs/hints_demo/latest.pt --hints hints.json -o out/

INPUT is any mix of image files and folders (searched recursively). Each output keeps the
input's size and lightness; only colour is added. Existing outputs are kept unless
--overwrite is given. Unreadable inputs are reported and skipped; the exit code is non-zero
if any input failed.

--hints FILE gives colours you know (a --task hints checkpoint), in the photos' own pixels:
    {"photo.jpg": [{"x": 120, "y": 45, "color": "#c03020"},
                   {"x": 300, "y": 80, "ab": [40, 30], "size": 3}]}
Each photo is named as given on the command line, by its path below a folder given, or by its
file name; a bare list of hints fits a single photo. "size" is the hint's patch side in
working-size pixels (default 3). Photos without an entry are colorized without hints.
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from splitbrain import checkpoint as ckpt
from splitbrain import hints as hints_lib
from splitbrain.colorize import colorize_tensor, load_colorizer, to_hwc
from splitbrain.images import ImageReadError, allow_pixels, find_images, load_rgb, upright_size
from splitbrain.runlog import fatal
from splitbrain.runtime import resolve_device

FORMATS = {"png": ".png", "jpg": ".jpg"}
# Pillow's own default limit against decompression bombs (Image.MAX_IMAGE_PIXELS), 89.4785.
DEFAULT_MEGAPIXELS = 1024 * 1024 * 1024 // 4 // 3 / 1e6


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    parser.add_argument("--ckpt", required=True, help="colorize / split-brain checkpoint, or "
                        "the official ECCV16 weights (colorization_release_v2-9b330a0b.pth)")
    parser.add_argument("-o", "--out", required=True, help="output folder")
    parser.add_argument("--size", type=_positive_int, default=256,
                        help="network working size (short side)")
    parser.add_argument("--temperature", type=_temperature, default=None,
                        help="annealed-mean temperature (default: the checkpoint's, 0.38)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=_positive_int, default=4,
                        help="photos per forward pass (those sharing a working size)")
    parser.add_argument("--side-by-side", action="store_true",
                        help="write the grey input and the result in one image")
    parser.add_argument("--format", choices=sorted(FORMATS),
                        help="output format (default: the input's)")
    parser.add_argument("--max-megapixels", type=_megapixels, default=DEFAULT_MEGAPIXELS,
                        help=f"largest photo accepted, in megapixels (default "
                             f"{DEFAULT_MEGAPIXELS:g}, Pillow's limit against decompression "
                             f"bombs)")
    parser.add_argument("--hints", metavar="FILE", help="JSON file of colour hints per photo "
                        "(a --task hints checkpoint; format above)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser.parse_args(argv)


def _megapixels(text):
    value = float(text)
    if not 0.001 <= value <= 1e6:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be between 0.001 and 1e6, got {text}")
    return value


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _temperature(text):
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 (0 decodes the most "
                                         f"likely colour), got {text}")
    return value


def output_path(path, root, out_dir, fmt):
    """Mirror the input's place under its folder argument; keep or change the extension."""
    rel = path.relative_to(root) if root is not None else Path(path.name)
    suffix = FORMATS[fmt] if fmt else path.suffix.lower()
    if suffix not in Image.registered_extensions():
        suffix = ".png"
    return out_dir / rel.with_suffix(suffix)


def collect(inputs, out_dir, fmt):
    """[(input path, output path)] for every image under ``inputs``."""
    jobs = []
    for item in map(Path, inputs):
        if not item.exists():
            raise FileNotFoundError(f"input not found: {item}")
        root = item if item.is_dir() else None
        jobs += [(p, output_path(p, root, out_dir, fmt)) for p in find_images(item)]
    by_output = {}
    for src, dst in jobs:
        by_output.setdefault(dst, []).append(src)
    clashes = {dst: srcs for dst, srcs in by_output.items() if len(srcs) > 1}
    if clashes:
        dst, srcs = next(iter(clashes.items()))
        raise ValueError(f"{len(clashes)} output name(s) would be written by more than one "
                         f"input (e.g. {dst} by {', '.join(map(str, srcs))}); pass such files "
                         f"inside their folders (the folder layout is kept under -o) or "
                         f"rename them")
    return jobs


def colorize_batch(images, colorizer, side_by_side, hints=None):
    """(H, W, 3) uint8 arrays of same-size PIL images, colorized in one forward pass.

    ``hints``: None, or one list of :class:`splitbrain.hints.Hint` per image.
    """
    rgb = torch.stack([torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
                       for img in images])  # uint8: 1 byte a channel, not 4
    result = colorize_tensor(rgb, colorizer, hints=hints)
    if not side_by_side:
        return [to_hwc(out) for out in result]
    greys = colorize_tensor(rgb, colorizer, grey=True)
    return [np.concatenate([to_hwc(grey), to_hwc(out)], axis=1)
            for grey, out in zip(greys, result)]


def save_image(array, path):
    """Write atomically so an interrupted run never leaves a half-written photo."""
    img = Image.fromarray(array)
    options = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    ckpt.atomic_write(path, lambda tmp: img.save(tmp, **options))


def main(argv=None):
    args = parse_args(argv)
    out_dir = Path(args.out)
    try:
        ckpt.check_writable_folder(out_dir, "-o")
        jobs = collect(args.inputs, out_dir, args.format)
        colorizer = load_colorizer(args.ckpt, resolve_device(args.device), args.temperature,
                                   args.size)
    except (OSError, ValueError) as err:  # CheckpointError is a ValueError
        fatal(err)

    hints = {}
    if args.hints:
        hints = read_hints(args.hints, jobs, out_dir, colorizer, args.ckpt)

    existing = [dst for _, dst in jobs if dst.exists()]
    if existing and not args.overwrite:
        fatal(f"{len(existing)} output(s) already exist (e.g. {existing[0]}); pass --overwrite "
              f"to replace them or choose another -o folder")

    max_pixels = int(args.max_megapixels * 1e6)
    allow_pixels(max_pixels)  # Pillow's own limit must not stop a photo below ours
    failed, done = [], 0
    bar = tqdm(total=len(jobs), desc="colorize", unit="img", disable=None)
    for start in range(0, len(jobs), args.batch_size):
        loaded = []
        for src, dst in jobs[start:start + args.batch_size]:
            try:
                loaded.append((src, dst, load_rgb(src, max_pixels=max_pixels)))
            except ImageReadError as err:
                why = str(err)
                if "over the limit" in err.reason:
                    why += " (pass --max-megapixels to allow more)"
                failed.append((src, why))
                tqdm.write(f"error: {why}", file=sys.stderr)
                bar.update(1)
        # Photos of one size share a forward pass.
        by_size = {}
        for item in loaded:
            by_size.setdefault(item[2].size, []).append(item)
        batches = list(by_size.values())
        while batches:
            batch = batches.pop(0)
            try:
                arrays = colorize_batch([img for _, _, img in batch], colorizer,
                                        args.side_by_side,
                                        [hints.get(src, []) for src, _, _ in batch])
            except ValueError as err:  # a broken model: every photo would come out wrong
                bar.close()  # the bar's line ends first: the message gets lines of its own
                fatal(f"{args.ckpt}: {err}")
            except (RuntimeError, MemoryError) as err:
                if not out_of_memory(err):  # another failure: not a photo's fault
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if len(batch) > 1:  # each photo alone may fit
                    batches[:0] = [[item] for item in batch]
                    continue
                src = batch[0][0]
                why = (f"could not colorize ({str(err).splitlines()[0]}); a photo this large "
                       f"or elongated may fit with a smaller --size")
                failed.append((src, why))
                tqdm.write(f"error: {src}: {why}", file=sys.stderr)
                bar.update(1)
                continue
            for (_, dst, _), array in zip(batch, arrays):
                save_image(array, dst)
                done += 1
                bar.update(1)
    bar.close()
    print(f"colorized {done} of {len(jobs)} image(s) into {out_dir}")
    if failed:
        print(f"{len(failed)} input(s) could not be read or colorized:", file=sys.stderr)
        for src, why in failed:
            print(f"  {src}: {why}", file=sys.stderr)
        sys.exit(1)


def read_hints(path, jobs, out_dir, colorizer, ckpt_path):
    """{photo: [Hint]} from a --hints file, every entry checked before any photo is written."""
    if not colorizer.takes_hints:
        fatal(f"--hints needs a checkpoint that takes colour hints (tools/train.py --task "
              f"hints); {ckpt_path} ({colorizer.about}) has no hint inputs")
    # A photo is named as given, by its path below a folder given (its output's, with the
    # input's suffix), or by its file name.
    photos = [(src, dst.relative_to(out_dir).with_suffix(src.suffix)) for src, dst in jobs]
    try:
        hints = hints_lib.load_hint_file(path, photos)
        for src, photo_hints in hints.items():
            try:
                with Image.open(src) as img:  # the header only
                    size = upright_size(img)  # the photo as shown: EXIF-rotated
            except OSError:  # reported as unreadable when its turn comes
                continue
            name = str(dict(photos).get(src, src))  # as the file may name it
            hints_lib.check_inside(photo_hints, size, f"{path}: {name!r}")
    except hints_lib.HintFileError as err:
        fatal(err)
    return hints


def out_of_memory(err):
    """Whether ``err`` is running out of memory (host or GPU), not some other failure."""
    text = str(err)
    return isinstance(err, (MemoryError, torch.cuda.OutOfMemoryError)) or \
        "out of memory" in text or "can't allocate memory" in text


if __name__ == "__main__":
    main()
