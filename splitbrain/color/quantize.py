"""The quantised colour spaces: 313 ab bins, soft encoding, L bins, annealed-mean decoding.

The ab gamut is quantised on a grid of step 10 into the 313 in-gamut bins of Zhang et al.
(DESIGN §1). Bin ``q`` is the q-th centre in (a, b)-ascending order.

Soft encoding finds each pixel's k nearest bins. Rather than measuring the distance to all 313
centres, the ab plane is cut into small cells; for every cell a table lists the few bins that
can be among the k nearest of ANY point inside it (a conservative bound, below), and only those
candidates are measured exactly. The result is the exact k-NN, at a fraction of the cost.
"""

import functools
import math

import torch

AB_GRID = 10
# a -> (b_min, b_max) of the in-gamut bins, step 10 (DESIGN §1).
_AB_GAMUT = {
    -90: (50, 90), -80: (20, 90), -70: (0, 90), -60: (-20, 90), -50: (-30, 100),
    -40: (-40, 100), -30: (-50, 100), -20: (-50, 100), -10: (-60, 100), 0: (-70, 100),
    10: (-80, 90), 20: (-80, 90), 30: (-90, 90), 40: (-100, 90), 50: (-100, 80),
    60: (-110, 80), 70: (-110, 80), 80: (-110, 70), 90: (-110, 70), 100: (-90, 0),
}
NUM_AB_BINS = 313
NUM_L_BINS = 50
L_BIN_WIDTH = 2.0

# Candidate tables cover ab in [-_TABLE_RANGE, _TABLE_RANGE) with square cells of _CELL units.
_TABLE_RANGE = 128
_CELL = 1


def ab_bin_centres(device=None, dtype=torch.float32):
    """The 313 ab bin centres in class order, shape (313, 2) as (a, b)."""
    centres = [(a, b) for a in sorted(_AB_GAMUT)
               for b in range(_AB_GAMUT[a][0], _AB_GAMUT[a][1] + 1, AB_GRID)]
    assert len(centres) == NUM_AB_BINS
    return torch.tensor(centres, dtype=dtype, device=device)


@functools.lru_cache(maxsize=16)
def _candidate_table(k, device):
    """For every cell of the ab plane, the bins that may be among the k nearest of any point in it.

    A point p in a cell with centre c and half-diagonal r has a k-th nearest distance
    d_k(p) <= d_k(c) + r, and a bin q can only be within d_k(p) of p if
    |c - q| <= d_k(p) + r <= d_k(c) + 2r. Every bin that passes that test is kept.

    Returns:
        bins: (cells, M) long, the candidate bins of each cell, padded with the sentinel 313.
        a, b: (cells, M) float32, their centres; the sentinel sits far outside the gamut so it
            is never among the k nearest.
    """
    centres = ab_bin_centres(dtype=torch.float64)
    n = int(2 * _TABLE_RANGE / _CELL)
    axis = -_TABLE_RANGE + _CELL * (torch.arange(n, dtype=torch.float64) + 0.5)
    cell_centres = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    dist = torch.cdist(cell_centres, centres)  # (cells, 313)
    radius = _CELL * math.sqrt(2) / 2
    kth = dist.kthvalue(k, dim=1).values  # (cells,)
    keep = dist <= (kth + 2 * radius + 1e-6)[:, None]
    width = int(keep.sum(1).max())
    # Kept bins first (stable order), then the sentinel.
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :width]
    bins = torch.where(keep.gather(1, order), order, torch.full_like(order, NUM_AB_BINS))
    padded = torch.cat([centres, torch.full((1, 2), 1e4, dtype=torch.float64)]).float()
    return bins.to(device), padded[bins, 0].to(device), padded[bins, 1].to(device)


def _nearest(ab, k):
    """Exact k nearest bins of every pixel, in a flat layout.

    Args:
        ab: (B, 2, H, W).

    Returns:
        bins: (B*H*W, k) long, nearest first; d2: (B*H*W, k) float32 squared distances.
    """
    bins, table_a, table_b = _candidate_table(k, ab.device)
    n = int(2 * _TABLE_RANGE / _CELL)
    x = ab.detach().float().permute(0, 2, 3, 1).reshape(-1, 2)  # (N, 2)
    # Lab from sRGB stays well inside the table; values outside reuse the border cells.
    cell = ((x + _TABLE_RANGE) / _CELL).floor_().long().clamp_(0, n - 1)
    cell = cell[:, 0] * n + cell[:, 1]  # (N,)
    da = x[:, :1] - table_a.index_select(0, cell)  # (N, M)
    db = x[:, 1:] - table_b.index_select(0, cell)
    d2 = da.mul_(da).addcmul_(db, db)
    # A full sort of the few candidates is cheaper than topk on the CPU.
    d2, pos = d2.sort(dim=1)
    d2, pos = d2[:, :k], pos[:, :k]
    # Look up only the k chosen candidates: row `cell`, column `pos` of the (cells, M) table.
    return bins.view(-1)[cell[:, None] * bins.shape[1] + pos], d2


def _to_map(flat, shape):
    """(B*H*W, k) -> (B, k, H, W)."""
    B, _, H, W = shape
    return flat.view(B, H, W, flat.shape[1]).permute(0, 3, 1, 2)


def soft_encode(ab, k=10, sigma=5.0):
    """Soft-encode ab values over the 313 bins: k nearest bins with Gaussian weights.

    Args:
        ab: (B, 2, H, W) Lab ab values; exact for ab in [-128, 128).
        k: number of nearest bins (the official training layer uses 10).
        sigma: Gaussian width in ab units.

    Returns:
        indices: (B, k, H, W) long, nearest first.
        weights: (B, k, H, W) float32, exp(-d^2 / 2 sigma^2) normalised to sum 1 over k.
    """
    if ab.dim() != 4 or ab.shape[1] != 2:
        raise ValueError(f"expected ab of shape (B, 2, H, W), got {tuple(ab.shape)}")
    if not 1 <= k <= NUM_AB_BINS:
        raise ValueError(f"k must be in 1..{NUM_AB_BINS}, got {k}")
    bins, d2 = _nearest(ab, k)
    # Softmax of -d2 / 2 sigma^2; d2 is sorted, so subtracting its first column keeps exp <= 1.
    weights = (d2 - d2[:, :1]).mul_(-0.5 / sigma**2).exp_()
    weights /= weights.sum(1, keepdim=True)
    return _to_map(bins, ab.shape), _to_map(weights, ab.shape)


def dense_target(indices, weights, num_bins=NUM_AB_BINS):
    """Scatter a sparse soft encoding into a dense (B, num_bins, H, W) distribution."""
    B, _, H, W = indices.shape
    out = weights.new_zeros(B, num_bins, H, W)
    return out.scatter_(1, indices, weights)


def nearest_ab_bin(ab):
    """Index of the nearest ab bin for every pixel: (B, 2, H, W) -> (B, H, W) long."""
    bins, _ = _nearest(ab, 1)
    return _to_map(bins, ab.shape)[:, 0]


def quantize_l(L):
    """L in [0, 100] -> one of 50 bins of width 2: (B, 1, H, W) -> (B, H, W) long."""
    return (L.squeeze(1) / L_BIN_WIDTH).floor().long().clamp_(0, NUM_L_BINS - 1)


def l_bin_centres(device=None, dtype=torch.float32):
    """The 50 L bin centres (1, 3, ..., 99), shape (50,)."""
    return (torch.arange(NUM_L_BINS, device=device, dtype=dtype) + 0.5) * L_BIN_WIDTH


def annealed_mean(logits, centres, temperature=0.38):
    """Decode per-pixel class logits to values with the annealed mean of Zhang et al.

    f_T(z) = softmax(log z / T) with z = softmax(logits) reduces to softmax(logits / T):
    T = 1 is the mean of the predicted distribution, T -> 0 its mode (T = 0 is the mode).

    Args:
        logits: (B, Q, H, W) class scores.
        centres: (Q, C) the value each class stands for (ab centres, or L centres as (Q, 1)).
        temperature: T > 0, or 0 for the mode.

    Returns:
        (B, C, H, W) decoded values.
    """
    centres = centres.to(device=logits.device, dtype=torch.float32)
    if centres.dim() == 1:
        centres = centres[:, None]
    logits = logits.float()
    if temperature == 0:
        mode = logits.argmax(1)  # (B, H, W)
        return centres[mode].permute(0, 3, 1, 2)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    prob = torch.softmax(logits / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", prob, centres)
