"""Shift consistency: does a network's answer move with its input, or jump?

Zhang, "Making Convolutional Networks Shift-Invariant Again" (ICML 2019) measures how often a
classifier gives the same top-1 class to two crops of one image that are offset by a few
pixels. Here, for every image of a dataset of ``size + max_shift`` squares:

- two ``size`` × ``size`` crops are taken at offsets drawn uniformly from
  ``0..max_shift`` in each direction (seeded by the image's index, so a run is repeatable);
- a classifier (an encoder and its probe heads, per layer) is *consistent* on the image when
  both crops get the same top-1 class (:func:`classifier_consistency`, in %);
- a colorizer predicts an ab map for each crop (at the crop's resolution); the two maps are
  put back where their crops came from and compared on the pixels both cover: the mean
  Euclidean ab distance there is how much its colours move under a shift
  (:func:`colorizer_consistency`, in ab units; 0 for a perfectly shift-equivariant colorizer).

See docs/reference.md §5.
"""

import torch
from tqdm import tqdm

from . import color
from .loaders import eval_loader


def pair_offsets(indices, max_shift, seed=0):
    """Two crop offsets per image: (B, 2, 2) int64, [image, crop, (dy, dx)] in 0..max_shift.

    Each image's offsets depend only on (seed, its index), not on the batch it is in.
    """
    out = torch.empty(len(indices), 2, 2, dtype=torch.long)
    for row, index in enumerate(indices):
        g = torch.Generator().manual_seed(seed * 1_000_003 + int(index))
        out[row] = torch.randint(0, max_shift + 1, (2, 2), generator=g)
    return out


def crop_pair(images, offsets, size):
    """The two crops of each image: two (B, C, size, size) tensors."""
    first, second = [], []
    for image, ((y1, x1), (y2, x2)) in zip(images, offsets.tolist()):
        first.append(image[:, y1:y1 + size, x1:x1 + size])
        second.append(image[:, y2:y2 + size, x2:x2 + size])
    return torch.stack(first), torch.stack(second)


def overlap_distance(a, b, offsets, size):
    """Mean Euclidean distance of two maps (C, size, size) on the pixels both crops cover.

    ``a`` and ``b`` sit at ``offsets[0]`` and ``offsets[1]`` (each (dy, dx)) of one frame.
    """
    (y1, x1), (y2, x2) = offsets.tolist()
    top, left = max(y1, y2), max(x1, x2)
    bottom, right = min(y1, y2) + size, min(x1, x2) + size
    pa = a[:, top - y1:bottom - y1, left - x1:right - x1]
    pb = b[:, top - y2:bottom - y2, left - x2:right - x2]
    return float((pa - pb).pow(2).sum(dim=0).sqrt().mean())


def _check(dataset, size, max_shift):
    if max_shift < 1:
        raise ValueError(f"max_shift must be at least 1 pixel, got {max_shift}")
    side = dataset[0][0].shape[-1]
    if side != size + max_shift:
        raise ValueError(f"the dataset's crops are {side} px; shift consistency needs "
                         f"size + max_shift = {size + max_shift} px squares")


@torch.no_grad()
def classifier_consistency(features, heads, dataset, size, max_shift, batch_size=64, seed=0):
    """Per layer: top-1 accuracy over both crops, and how often the two crops agree.

    Args:
        features: callable, uint8 sRGB (B, 3, size, size) -> {layer: (B, D) features} (a
            :class:`splitbrain.probe.encoder.FrozenEncoder`).
        heads: {layer: callable (B, D) -> (B, classes) logits}, on the features' device.
        dataset: labelled, items (uint8 sRGB (3, size + max_shift, same), label).
        size, max_shift: crop side and largest offset, in pixels.

    Returns:
        {layer: {"top1": %, "consistency": %, "images": N}}.
    """
    _check(dataset, size, max_shift)
    device = getattr(features, "device", torch.device("cpu"))
    agree = {name: 0 for name in heads}
    correct = {name: 0 for name in heads}
    n = 0
    loader = eval_loader(dataset, batch_size)
    for start, (rgb, labels) in zip(range(0, len(dataset), batch_size),
                                    tqdm(loader, desc="consistency", leave=False, disable=None)):
        offsets = pair_offsets(range(start, start + len(labels)), max_shift, seed)
        first, second = crop_pair(rgb, offsets, size)
        f1, f2 = features(first.to(device)), features(second.to(device))
        labels = torch.as_tensor(labels)
        for name, head in heads.items():
            p1 = head(f1[name]).argmax(dim=1).cpu()
            p2 = head(f2[name]).argmax(dim=1).cpu()
            agree[name] += int((p1 == p2).sum())
            correct[name] += int((p1 == labels).sum() + (p2 == labels).sum())
        n += len(labels)
    return {name: {"top1": 100.0 * correct[name] / (2 * n),
                   "consistency": 100.0 * agree[name] / n, "images": n} for name in heads}


@torch.no_grad()
def colorizer_consistency(colorizer, dataset, size, max_shift, batch_size=16, seed=0):
    """How far a colorizer's ab prediction moves when its input shifts by up to ``max_shift``.

    Args:
        colorizer: a :class:`splitbrain.colorize.Colorizer`; it sees each crop at the crop's
            own resolution.
        dataset: items (uint8 sRGB (3, size + max_shift, same), anything).

    Returns:
        {"ab_shift_change": mean ab distance on the overlaps (averaged over images),
        "images": N}.
    """
    _check(dataset, size, max_shift)
    colorizer.size = size  # no resizing: the network sees the crop as it is
    total, n = 0.0, 0
    loader = eval_loader(dataset, batch_size)
    for start, (rgb, _) in zip(range(0, len(dataset), batch_size),
                               tqdm(loader, desc="consistency", leave=False, disable=None)):
        offsets = pair_offsets(range(start, start + rgb.shape[0]), max_shift, seed)
        L = color.lightness(rgb)
        first, second = crop_pair(L, offsets, size)
        ab1, ab2 = colorizer.predict_ab(first), colorizer.predict_ab(second)
        for a, b, o in zip(ab1, ab2, offsets):
            total += overlap_distance(a, b, o, size)
        n += rgb.shape[0]
    return {"ab_shift_change": total / max(n, 1), "images": n}
