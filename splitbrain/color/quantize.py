"""The quantised colour spaces: 313 ab bins, soft encoding, L bins, annealed-mean decoding.

The ab gamut is quantised on a grid of step 10 into the 313 in-gamut bins of Zhang et al.
(docs/reference.md §1). Bin ``q`` is the q-th centre in (a, b)-ascending order.

Soft encoding finds each pixel's k nearest bins exactly, without measuring the distance to all
313 centres:

- The lookup table (``_local_table``): a grid of cells of side 1/4 over the ab plane. For almost
  every cell it holds k - 1 bins that are among the k nearest of every point of the cell, plus
  up to 4 that compete for the last place. A pixel measures those distances and keeps the
  nearest competitor: no search and no sort. Rows are proven at build time from the cell's
  corners (see ``_local_table``).
- The candidate search (``_search``), for the rest: a grid of cells of side 1 lists the few
  bins that can be among the k nearest of any point inside; those are measured and sorted.
"""

import functools
import math
import numbers

import numpy as np
import torch

from ..hostsync import upload, watching

AB_GRID = 10
# a -> (b_min, b_max) of the in-gamut bins, step 10 (docs/reference.md §1).
_AB_GAMUT = {
    -90: (50, 90), -80: (20, 90), -70: (0, 90), -60: (-20, 90), -50: (-30, 100),
    -40: (-40, 100), -30: (-50, 100), -20: (-50, 100), -10: (-60, 100), 0: (-70, 100),
    10: (-80, 90), 20: (-80, 90), 30: (-90, 90), 40: (-100, 90), 50: (-100, 80),
    60: (-110, 80), 70: (-110, 80), 80: (-110, 70), 90: (-110, 70), 100: (-90, 0),
}
NUM_AB_BINS = 313
NUM_L_BINS = 50
L_BIN_WIDTH = 2.0

# The coarse candidate table covers ab in [-_TABLE_RANGE, _TABLE_RANGE) with cells of side
# _CELL; the local table uses cells of side _FINE and lets up to _CONTENDERS bins compete for
# the k-th place. The local table is built for k <= _LOCAL_MAX_K (its cost grows with k).
_TABLE_RANGE = 128
_CELL = 1
_FINE = 0.25
_CONTENDERS = 4
_LOCAL_MAX_K = 16
_SENTINEL = NUM_AB_BINS  # padding bin, placed far from every ab value
_SENTINEL_AB = 1e3
_CORNERS = ((0, 0), (1, 0), (0, 1), (1, 1))
_BELOW_RANGE = float(np.nextafter(np.float32(_TABLE_RANGE), np.float32(0)))  # largest < 128


def ab_bin_centres(device=None, dtype=torch.float32):
    """The 313 ab bin centres in class order, shape (313, 2) as (a, b)."""
    centres = [(a, b) for a in sorted(_AB_GAMUT)
               for b in range(_AB_GAMUT[a][0], _AB_GAMUT[a][1] + 1, AB_GRID)]
    assert len(centres) == NUM_AB_BINS
    return torch.tensor(centres, dtype=dtype, device=device)


@functools.lru_cache(maxsize=8)
def device_ab_centres(device):
    """The 313 centres (313, 2) float32 on ``device``, uploaded once and shared: read-only."""
    return upload(ab_bin_centres(), device)


def _padded_centres():
    """(314, 2): the 313 centres and the sentinel's far-away position."""
    return torch.cat([ab_bin_centres(), torch.full((1, 2), _SENTINEL_AB)])


def _grid_coords(bins):
    """Centres of ``bins`` (the sentinel included) in grid units, as two int8 tensors a/10, b/10.

    Tables keep centres this small so that a pixel's row is a cheap gather and stays in cache.
    """
    grid = (_padded_centres() / AB_GRID).round().to(torch.int8)
    return grid[bins, 0], grid[bins, 1]


def _distances(x, a, b):
    """Squared distances from points x (N, 2) to centres given in grid units a, b (N, K) int8."""
    da = a.float().mul_(AB_GRID).sub_(x[:, :1])  # exact centres, one rounding in the difference
    db = b.float().mul_(AB_GRID).sub_(x[:, 1:])
    return da.mul_(da).addcmul_(db, db)


@functools.lru_cache(maxsize=16)
def _candidate_table(k, device):
    """For every cell of the ab plane, the bins that may be among the k nearest of any point in it.

    A point p in a cell with centre c and half-diagonal r has a k-th nearest distance
    d_k(p) <= d_k(c) + r, and a bin q can only be within d_k(p) of p if
    |c - q| <= d_k(p) + r <= d_k(c) + 2r. Every bin that passes that test is kept.

    Returns:
        bins: (cells, M) long, the candidate bins of each cell, padded with the sentinel.
        a, b: (cells, M) int8, their centres in grid units (see ``_grid_coords``).
    """
    centres = ab_bin_centres()
    n = int(2 * _TABLE_RANGE / _CELL)
    # float32 is exact for these distances' squares (cell centres on half-integers).
    axis = -_TABLE_RANGE + _CELL * (torch.arange(n, dtype=torch.float32) + 0.5)
    ca, cb = torch.meshgrid(axis, axis, indexing="ij")
    dist = ((ca.reshape(-1, 1) - centres[:, 0]).square_()
            + (cb.reshape(-1, 1) - centres[:, 1]).square_()).sqrt_()  # (cells, 313)
    radius = _CELL * math.sqrt(2) / 2
    kth = dist.kthvalue(k, dim=1).values  # (cells,)
    # The margin covers float32 rounding; a looser bound only keeps a few more candidates.
    keep = dist <= (kth + 2 * radius + 1e-3)[:, None]
    width = int(keep.sum(1).max())
    # Kept bins first (stable order), then the sentinel.
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :width]
    bins = torch.where(keep.gather(1, order), order, torch.full_like(order, _SENTINEL))
    return tuple(upload(t, device) for t in (bins, *_grid_coords(bins)))


def _dedup_rows(rows):
    """torch.unique(rows, dim=0, return_inverse=True) for rows of small non-negative integers.

    Quicker: rows are keyed by a random linear hash (no overflow: entries stay below 2^9 and
    weights below 2^48) and only the keys are made unique. Should two different rows ever
    share a key, the exact torch.unique is used instead.
    """
    weights = torch.randint(1, 2**48, (rows.shape[1],), generator=torch.Generator().manual_seed(0))
    keys, inverse = torch.unique((rows * weights).sum(1), return_inverse=True)
    first = torch.empty(len(keys), dtype=torch.long).scatter_(0, inverse, torch.arange(len(rows)))
    unique = rows[first]
    if not torch.equal(unique[inverse], rows):
        unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    return unique, inverse


def _local_rows(k, cand, d):
    """Rows of the local table for a block of fine cells, or -1 rows where none exists.

    Args:
        cand: (G, M) candidate bins of each cell (valid for the whole cell).
        d: (4, G, M) their squared distances at the cell's four corners.

    Returns:
        (G, k - 1 + _CONTENDERS) long rows; all -1 where the cell has no local answer.
    """
    G, M = cand.shape
    # Candidates in order of distance from the first corner: s = 0..k-2 are the sure members,
    # the next m (1 <= m <= _CONTENDERS) compete for the k-th place.
    _, order = d[0].sort(dim=1, stable=True)
    cand = cand.gather(1, order)
    d = d.gather(2, order.expand(4, G, M))
    K = k - 1 + _CONTENDERS
    m_cell = torch.zeros(G, dtype=torch.long)
    # Most cells pass with m = 1 by a cheaper, stricter test: at every corner the first k are
    # the k nearest and the first two the two nearest.
    easy = (d[:, :, :k].amax(2) <= d[:, :, k:].amin(2)).all(0)
    if k > 2:
        easy &= (d[:, :, :2].amax(2) <= d[:, :, 2:k].amin(2)).all(0)
    m_cell[easy] = 1
    hard = (~easy).nonzero().squeeze(1)
    d = d[:, hard]

    def never_farther(xs, ys):  # [g, x, y]: over the whole cell, x is never farther than y
        out = torch.ones(len(hard), len(range(*xs.indices(M))), len(range(*ys.indices(M))),
                         dtype=torch.bool)
        for c in range(4):  # checked at the four corners
            out &= d[c, :, xs, None] <= d[c, :, None, ys]
        return out

    row_vs_rest = never_farther(slice(0, K), slice(k - 1, M))  # the only pairs the tests need
    first_two = never_farther(slice(0, 2), slice(2, K)) if k > 2 else None
    m_hard = torch.zeros(len(hard), dtype=torch.long)
    for m in range(_CONTENDERS, 0, -1):  # the smallest m that works wins
        width = k - 1 + m
        # (a) every other candidate has k row bins never farther: it never makes the k nearest.
        ok = (row_vs_rest[:, :width, m:].sum(1, dtype=torch.int32) >= k).all(1)
        # (b) each sure bin is never farther than m - 1 contenders: the m - 1 dropped are
        # always the farthest of the row.
        if k > 1:
            ok &= (row_vs_rest[:, :k - 1, :m].sum(2, dtype=torch.int32) >= m - 1).all(1)
        # (c) the nearest bin of the row is always the first or the second.
        if k > 2:
            ok &= (first_two[:, 0, :width - 2] | first_two[:, 1, :width - 2]).all(1)
        m_hard[ok] = m
    m_cell[hard] = m_hard
    head = cand[:, :min(2, k - 1)]
    middle = cand[:, head.shape[1]:k - 1].sort(dim=1).values
    contenders = cand[:, k - 1:K].clone()
    contenders[torch.arange(_CONTENDERS) >= m_cell[:, None]] = _SENTINEL
    rows = torch.cat([head, middle, contenders.sort(dim=1).values], 1)
    rows[m_cell == 0] = -1
    return rows


@functools.lru_cache(maxsize=16)
def _local_table(k, device):
    """For most cells of a fine grid, the few bins that hold the k nearest of ANY point inside.

    A row is [s_0, ..., s_{k-2}, c_1, ..., c_m] padded with the sentinel to k - 1 + _CONTENDERS
    bins. At every point of the cell the k nearest bins are the s_i and the nearest c_j, and
    the nearest bin of all is s_0 or s_1. So a pixel measures its row's distances, takes the
    nearest contender into place k - 1 and the nearer of the first two into place 0: no search
    and no sort.

    Why it is exact: the sign of |p - u|^2 - |p - v|^2 is linear in p, so if u is no farther
    than v at the four corners of a (convex) cell, it is no farther anywhere inside. The
    conditions in ``_local_rows`` are all of that pairwise form. Float32 is exact for them:
    corners are multiples of 1/4 and centres of 10, so squared distances are multiples of 1/16
    below 2^18, within float32's 24-bit mantissa.

    Returns:
        cell_row: (cells,) int32, each fine cell's row of ``bins``, or -1 where the cell needs
            the candidate search. The border ring is -1, so values outside the table (clamped
            to the border) are searched.
        bins: (R, k - 1 + _CONTENDERS) int16; a, b: the same shape, int8 centres in grid units.
        Or None for k > _LOCAL_MAX_K.
    """
    if k > _LOCAL_MAX_K:
        return None
    cand_table = _candidate_table(k, torch.device("cpu"))[0]
    short = k + _CONTENDERS - cand_table.shape[1]
    if short > 0:  # small k: pad the lists so every row has room for all contenders
        cand_table = torch.cat([cand_table, cand_table.new_full((len(cand_table), short),
                                                                _SENTINEL)], 1)
    centres = _padded_centres()
    n, nf = int(2 * _TABLE_RANGE / _CELL), int(2 * _TABLE_RANGE / _FINE)
    axis = -_TABLE_RANGE + _FINE * torch.arange(nf + 1, dtype=torch.float32)
    coarse = torch.arange(nf) // round(_CELL / _FINE)  # the coarse cell holding each fine cell
    rows = []
    for r in range(0, nf, 16):  # blocks of fine-cell rows, to bound memory
        i = torch.arange(r, min(r + 16, nf))[:, None].expand(-1, nf).reshape(-1)
        j = torch.arange(nf).repeat(len(i) // nf)
        cand = cand_table[coarse[i] * n + coarse[j]]  # (G, M)
        ca, cb = centres[:, 0][cand], centres[:, 1][cand]
        d = torch.stack([(axis[i + di, None] - ca).square_() + (axis[j + dj, None] - cb).square_()
                         for di, dj in _CORNERS])
        rows.append(_local_rows(k, cand, d))
    rows = torch.cat(rows).view(nf, nf, -1)
    rows[0], rows[-1], rows[:, 0], rows[:, -1] = -1, -1, -1, -1  # the border ring searches
    found = rows[..., 0] >= 0
    unique, inverse = _dedup_rows(rows[found])
    cell_row = torch.full((nf, nf), -1, dtype=torch.int32)
    cell_row[found] = inverse.int()
    tables = (cell_row.view(-1), unique.to(torch.int16), *_grid_coords(unique))
    return tuple(upload(t, device) for t in tables)


def _settle(bins, d2, k):
    """Finish rows of the lookup table: (N, K) bins and distances -> the k nearest, nearest first.

    Place k - 1 takes the nearest of the contenders (columns k - 1 .. K - 1), then the nearer
    of columns 0 and 1 goes first. Column-wise selects: cheaper here than min + gather.
    """
    last_b, last_d = bins[:, k - 1], d2[:, k - 1]
    for c in range(k, bins.shape[1]):
        nearer = d2[:, c] < last_d
        last_d = torch.where(nearer, d2[:, c], last_d)
        last_b = torch.where(nearer, bins[:, c], last_b)
    bins, d2 = bins[:, :k].long(), d2[:, :k]
    bins[:, k - 1], d2[:, k - 1] = last_b, last_d
    if k > 1:
        swap = d2[:, 1] < d2[:, 0]
        b0, b1, e0, e1 = bins[:, 0], bins[:, 1], d2[:, 0], d2[:, 1]
        b0, b1, e0, e1 = (torch.where(swap, b1, b0), torch.where(swap, b0, b1),
                          torch.where(swap, e1, e0), torch.where(swap, e0, e1))
        bins[:, 0], bins[:, 1], d2[:, 0], d2[:, 1] = b0, b1, e0, e1
    return bins, d2


def _nearest(ab, k, sync_free=None):
    """Exact k nearest bins of every pixel, in a flat layout.

    Args:
        ab: (B, 2, H, W).
        sync_free: avoid data-dependent shapes (no host-device synchronisation); default on
            any device but the CPU.

    Returns:
        bins: (B*H*W, k) long, the nearest first (the order of the rest is unspecified);
        d2: (B*H*W, k) float32, their squared distances.
    """
    x = ab.detach().float().permute(0, 2, 3, 1).reshape(-1, 2)  # (N, 2)
    # Lab of sRGB stays inside [-128, 128); anything else (Lab of 0-255 floats, inf, NaN) is
    # bad input. It is mapped onto that range (NaN to 0, the grey bin) rather than checked,
    # since a check would cost a host-device synchronisation every step: indices stay valid
    # and weights finite whatever comes in.
    x = torch.nan_to_num(x, nan=0.0).clamp_(-_TABLE_RANGE, _BELOW_RANGE)
    table = _local_table(k, ab.device)
    if table is None:
        return _search(x, k)
    cell_row, row_bins, row_a, row_b = table
    nf = int(2 * _TABLE_RANGE / _FINE)
    cell = ((x + _TABLE_RANGE) / _FINE).floor_().to(torch.int32).clamp_(0, nf - 1)
    row = cell_row.index_select(0, cell[:, 0] * nf + cell[:, 1])  # (N,) int32
    valid = row.clamp(min=0)
    rb, ra, rbb = (t.index_select(0, valid) for t in (row_bins, row_a, row_b))  # (N, K) each
    bins, d2 = _settle(rb, _distances(x, ra, rbb), k)
    if sync_free is None:  # a CPU step under hostsync.HostSyncWatch takes the GPU path
        sync_free = x.device.type != "cpu" or watching()
    if sync_free:
        # Finding the ~1% of pixels outside the table would cost a host-device
        # synchronisation (nonzero); on an accelerator searching every pixel is cheaper.
        s_bins, s_d2 = _search(x, k)
        outside = (row < 0)[:, None]  # (N, 1)
        return torch.where(outside, s_bins, bins), torch.where(outside, s_d2, d2)
    search = (row < 0).nonzero().squeeze(1)
    if search.numel():
        s_bins, s_d2 = _search(x.index_select(0, search), k)
        bins.index_copy_(0, search, s_bins)
        d2.index_copy_(0, search, s_d2)
    return bins, d2


def _search(x, k):
    """Exact k nearest bins of points x (N, 2) from the coarse candidate table.

    Returns:
        bins: (N, k) long, nearest first; d2: (N, k) float32 squared distances.
    """
    cand, cand_a, cand_b = _candidate_table(k, x.device)
    n = int(2 * _TABLE_RANGE / _CELL)
    # Lab from sRGB stays well inside the table; values outside reuse the border cells.
    cell = ((x + _TABLE_RANGE) / _CELL).floor_().long().clamp_(0, n - 1)
    cell = cell[:, 0] * n + cell[:, 1]  # (N,)
    d2 = _distances(x, cand_a.index_select(0, cell), cand_b.index_select(0, cell))  # (N, M)
    # A full sort of the few candidates is cheaper than topk on the CPU.
    d2, pos = d2.sort(dim=1)
    return cand.index_select(0, cell).gather(1, pos[:, :k]), d2[:, :k]


def _to_map(flat, shape):
    """(B*H*W, k) -> (B, k, H, W), a view."""
    B, _, H, W = shape
    return flat.view(B, H, W, flat.shape[1]).permute(0, 3, 1, 2)


def soft_encode(ab, k=10, sigma=5.0):
    """Soft-encode ab values over the 313 bins: k nearest bins with Gaussian weights.

    Args:
        ab: (B, 2, H, W) Lab ab values; exact for ab in [-128, 128), where Lab of sRGB lies;
            values outside are clamped to that square first (NaN counts as 0).
        k: number of nearest bins (the official training layer uses 10).
        sigma: Gaussian width in ab units, a finite number > 0.

    Returns:
        indices: (B, k, H, W) long; index 0 along k is the nearest bin, the order of the
            others is unspecified.
        weights: (B, k, H, W) float32, exp(-d^2 / 2 sigma^2) normalised to sum 1 over k.
    """
    if ab.dim() != 4 or ab.shape[1] != 2:
        raise ValueError(f"expected ab of shape (B, 2, H, W), got {tuple(ab.shape)}")
    if not 1 <= k <= NUM_AB_BINS:
        raise ValueError(f"k must be in 1..{NUM_AB_BINS}, got {k}")
    if not (isinstance(sigma, numbers.Real) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma (the Gaussian width in ab units) must be a finite number > 0, "
                         f"got {sigma!r}")
    bins, d2 = _nearest(ab, k)  # (N, k) each
    # Softmax of -d2 / 2 sigma^2; column 0 is the nearest, so subtracting it keeps exp <= 1.
    weights = (d2 - d2[:, :1]).mul_(-0.5 / sigma**2).exp_()
    weights /= weights.sum(1, keepdim=True)
    return _to_map(bins, ab.shape), _to_map(weights, ab.shape)


def nearest_ab_bin(ab):
    """Index of the nearest ab bin for every pixel: (B, 2, H, W) -> (B, H, W) long."""
    bins, _ = _nearest(ab, 1)
    return bins[:, 0].view(ab.shape[0], *ab.shape[2:])


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
        temperature: T > 0, or 0 for the mode (a finite Python number).

    Returns:
        (B, C, H, W) decoded values.
    """
    if not (isinstance(temperature, numbers.Real) and math.isfinite(temperature)
            and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0 decodes the most likely "
                         f"value), got {temperature!r}")
    centres = centres.to(device=logits.device, dtype=torch.float32)
    if centres.dim() == 1:
        centres = centres[:, None]
    logits = logits.float()
    if temperature == 0:
        mode = logits.argmax(1)  # (B, H, W)
        return centres[mode].permute(0, 3, 1, 2)
    prob = torch.softmax(logits / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", prob, centres)
