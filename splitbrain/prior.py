"""The ab prior of a dataset: estimated by streaming over it, saved and loaded as .npy."""

import numpy as np
import torch
from torch.utils.data import Subset
from tqdm import tqdm

from . import color
from .checkpoint import atomic_write
from .loaders import eval_loader


def estimate_prior(dataset, max_images=0, batch_size=32, device="cpu", sigma=5.0, workers=0):
    """Smoothed ab prior over up to ``max_images`` images of ``dataset`` (0 = all).

    Grey images are left out (docs/reference.md §1, the non-grey mask). Lab conversion
    runs batched on ``device``.

    Returns:
        prior: (313,) float64 probabilities; hist: the :class:`color.AbHistogram`.
    """
    hist = color.AbHistogram()
    n = min(max_images, len(dataset)) if max_images else len(dataset)
    loader = eval_loader(Subset(dataset, range(n)), batch_size, workers)
    for rgb, _ in tqdm(loader, desc="ab prior", unit="batch", leave=False, disable=None):
        ab = color.rgb_to_lab(rgb.to(device))[:, 1:]
        hist.update(ab, color.colorful_mask(ab))
    return hist.prior(sigma), hist


def save_prior(prior, path):
    """Write a (313,) prior as .npy, atomically (see :func:`checkpoint.atomic_write`)."""
    prior = np.asarray(prior, dtype=np.float64)

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a name
            np.save(f, prior)

    atomic_write(path, write)


def load_prior(path):
    """A prior written by :func:`save_prior` / tools/compute_prior.py: (313,) float64."""
    try:
        prior = torch.from_numpy(np.load(path)).double().flatten()
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read prior {path}: {err}") from None
    if prior.numel() != color.NUM_AB_BINS or not torch.isfinite(prior).all() or prior.sum() <= 0:
        raise ValueError(f"{path} is not a 313-bin ab prior; make one with tools/compute_prior.py")
    return prior / prior.sum()


def summary(prior, hist=None, lam=0.5):
    """Numbers worth printing about a prior: bins seen, entropy, rebalancing-weight range."""
    weights = color.rebalance_weights(prior, lam)
    out = {"entropy_bits": color.prior_entropy(prior),
           "weight_min": float(weights.min()), "weight_max": float(weights.max())}
    if hist is not None:
        out["images"] = hist.images
        out["bins_seen"] = int((hist.counts > 0).sum())
    return out
