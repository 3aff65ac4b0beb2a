"""The empirical ab prior and the class-rebalancing weights derived from it (docs/reference.md §1)."""

import kornia
import torch

from .quantize import AB_GRID, NUM_AB_BINS, ab_bin_centres, nearest_ab_bin

GREY_THRESHOLD = 5.0


def colorful_mask(ab, threshold=GREY_THRESHOLD):
    """Which images carry colour: some pixel has |a| or |b| above ``threshold``.

    Grey photos inside colour datasets would teach the network that everything is grey; the
    official training layer gives them weight 0.

    Args:
        ab: (B, 2, H, W).

    Returns:
        (B,) bool.
    """
    return ab.abs().flatten(1).amax(1) > threshold


class AbHistogram:
    """Counts of pixels per ab bin, accumulated batch by batch (float64, on the CPU)."""

    def __init__(self):
        self.counts = torch.zeros(NUM_AB_BINS, dtype=torch.float64)
        self.images = 0

    def update(self, ab, mask=None):
        """Add a batch.

        Args:
            ab: (B, 2, H, W) Lab ab.
            mask: optional (B,) bool; images where it is False are not counted.
        """
        if mask is not None:
            ab = ab[mask]
        self.images += ab.shape[0]
        bins = nearest_ab_bin(ab).flatten()
        self.counts += torch.bincount(bins, minlength=NUM_AB_BINS).to("cpu", torch.float64)

    def prior(self, sigma=5.0):
        """The smoothed probability of each bin, (313,); see :func:`smooth_prior`."""
        return smooth_prior(self.counts, sigma)


def smooth_prior(counts, sigma=5.0):
    """Normalise bin counts to a distribution and smooth it over the ab plane.

    The bins are laid on their 10-unit grid and blurred with a Gaussian of ``sigma`` ab units
    (zero outside the grid), then read back at the bins and renormalised to sum 1.

    Args:
        counts: (313,) non-negative counts or probabilities.
        sigma: Gaussian width in ab units; 0 skips smoothing.

    Returns:
        (313,) float64 probabilities.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64).flatten()
    if counts.numel() != NUM_AB_BINS:
        raise ValueError(f"expected {NUM_AB_BINS} counts, got {counts.numel()}")
    total = counts.sum()
    if not total > 0:
        raise ValueError("the ab histogram is empty: no colour pixels were counted (all images "
                         "grey, or the dataset is empty); the ab prior needs colour photos, or "
                         "give color.prior=FILE made by tools/compute_prior.py on colour data")
    prob = counts / total
    if sigma <= 0:
        return prob
    # Lay the bins on a grid with one cell of border on every side: (1, 1, A, B).
    idx = (ab_bin_centres(dtype=torch.float64) / AB_GRID).round().long()
    idx -= idx.min(0).values
    size = idx.max(0).values + 1
    grid = torch.zeros(1, 1, int(size[0]), int(size[1]), dtype=torch.float64)
    grid[0, 0, idx[:, 0], idx[:, 1]] = prob
    s = sigma / AB_GRID  # in grid cells
    ksize = 2 * max(1, int(4 * s + 0.5)) + 1  # +-4 sigma covers all but ~1e-7 of the mass
    blurred = kornia.filters.gaussian_blur2d(grid, (ksize, ksize), (s, s), border_type="constant")
    smoothed = blurred[0, 0, idx[:, 0], idx[:, 1]]
    return smoothed / smoothed.sum()


def rebalance_weights(prior, lam=0.5):
    """Class-rebalancing weights w ∝ ((1 - λ) p + λ / Q)^-1 with sum_q p_q w_q = 1.

    Finite for every bin, even one the prior never saw (λ / Q keeps the denominator positive).

    Args:
        prior: (313,) smoothed probabilities.
        lam: mixing weight of the uniform distribution, in (0, 1].

    Returns:
        (313,) float32 weights.

    Raises:
        ValueError: ``lam`` outside (0, 1], or a prior with NaN, infinite or negative entries
            or a zero sum (its weights would be NaN).
    """
    prior = torch.as_tensor(prior, dtype=torch.float64)
    if not 0 < lam <= 1:  # also refuses NaN
        raise ValueError(f"lambda must be in (0, 1], got {lam}")
    # Called once at set-up on a (313,) prior, never inside a step: reading it is cheap.
    bad = int((~torch.isfinite(prior)).sum())
    if bad or (prior < 0).any() or not prior.sum() > 0:
        what = (f"{bad} of its {prior.numel()} entries are NaN or infinite" if bad else
                "it has negative entries" if (prior < 0).any() else "it sums to 0")
        raise ValueError(f"the ab prior must be finite probabilities >= 0 with a positive sum, "
                         f"but {what}; recompute it (tools/compute_prior.py) or let the run "
                         f"estimate it")
    w = 1.0 / ((1 - lam) * prior + lam / prior.numel())
    w = w / (prior * w).sum()
    return w.float()


def prior_entropy(prior):
    """Entropy of a prior in bits."""
    p = torch.as_tensor(prior, dtype=torch.float64)
    p = p[p > 0]
    return float(-(p * p.log2()).sum())
