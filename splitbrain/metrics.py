"""Colour-quality metrics of a colorization: ab-error AuC (raw and rebalanced), PSNR, colourfulness.

AuC follows Zhang et al., "Colorful Image Colorization" (ECCV 2016), Table 1; colourfulness is
the M metric of Hasler & Süsstrunk, "Measuring colourfulness in natural images" (2003). See
docs/reference.md §4. Everything is a pure function of batched tensors and runs on their device;
:class:`ColorMetrics` accumulates them over an evaluation set.

The AuC used here, exactly: with thresholds t_i = i * step, i = 0 .. max_threshold / step
(151 thresholds by default), and f(t) the (weighted) fraction of pixels whose ab error
||pred_ab - true_ab||_2 is <= t,

    AuC = 100 * mean_i f(t_i).

A perfect prediction scores 100; a prediction whose every pixel is off by e scores
100 * #{i : t_i >= e} / 151. (The trapezoid rule over [0, 150] would differ from this by at
most 100 / 150 points.)
"""

import math

import torch

from . import color

AUC_MAX_THRESHOLD = 150
AUC_STEP = 1


def accumulation_dtype(device):
    # float64 keeps sums over a whole evaluation set exact to ~1e-16; MPS has no float64.
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def auc_thresholds(max_threshold=AUC_MAX_THRESHOLD, step=AUC_STEP, device=None,
                   dtype=torch.float32):
    """The AuC thresholds 0, step, ..., max_threshold in ab units, shape (n,).

    Raises:
        ValueError: if ``max_threshold`` is not a non-negative multiple of ``step``.
    """
    n = max_threshold / step
    if step <= 0 or n < 0 or abs(n - round(n)) > 1e-9:
        raise ValueError(f"max_threshold ({max_threshold}) must be a non-negative multiple "
                         f"of step ({step})")
    return torch.arange(round(n) + 1, device=device, dtype=dtype) * step


def ab_error(pred_ab, true_ab):
    """Per-pixel L2 distance in the ab plane: two (B, 2, H, W) maps -> (B, H, W)."""
    if pred_ab.shape != true_ab.shape or pred_ab.shape[-3] != 2:
        raise ValueError(f"expected two (B, 2, H, W) ab maps, got {tuple(pred_ab.shape)} "
                         f"and {tuple(true_ab.shape)}")
    # At least fp32: a bf16 difference would move errors across the 1-unit thresholds.
    dtype = torch.promote_types(torch.promote_types(pred_ab.dtype, true_ab.dtype), torch.float32)
    return torch.linalg.vector_norm(pred_ab.to(dtype) - true_ab.to(dtype), dim=-3)


def _pixel_weights(weights, err):
    """Per-pixel weights (B, H, W) or (B, 1, H, W) -> flat, matching ``err.flatten()``."""
    if weights.dim() == err.dim() + 1:
        weights = weights.squeeze(-3)  # (B, 1, H, W) -> (B, H, W)
    if weights.shape != err.shape:
        raise ValueError(f"weights of shape {tuple(weights.shape)} do not match the "
                         f"{tuple(err.shape)} pixels")
    return weights.flatten().to(accumulation_dtype(err.device))


def error_histogram(pred_ab, true_ab, weights=None, max_threshold=AUC_MAX_THRESHOLD,
                    step=AUC_STEP):
    """(Weighted) count of pixels per AuC threshold bin; the sufficient statistic of the AuC.

    Bin i counts the pixels whose error e satisfies t_{i-1} < e <= t_i (bin 0: e <= 0), and the
    last bin those above ``max_threshold``; so the count of pixels with e <= t_i is the cumulative
    sum up to bin i. Histograms of different batches add up.

    Args:
        pred_ab, true_ab: (B, 2, H, W) in Lab ab units.
        weights: optional per-pixel weights, (B, H, W) or (B, 1, H, W).
        max_threshold, step: the thresholds, see :func:`auc_thresholds`.

    Returns:
        (n + 1,) tensor on the inputs' device for n thresholds: int64 counts without weights,
        float64 weight sums with them (float32 on MPS).
    """
    err = ab_error(pred_ab, true_ab)  # (B, H, W)
    return _histogram(err, weights, auc_thresholds(max_threshold, step, err.device, err.dtype))


def _histogram(err, weights, thresholds):
    # First threshold >= e, i.e. the smallest i with e <= t_i; n for errors beyond the last one.
    # Comparing against the threshold tensor itself (not e / step) keeps any step exact.
    idx = torch.searchsorted(thresholds, err.flatten().contiguous())
    # A scatter into the known n + 1 bins: bincount would read the largest index on the host.
    w = torch.ones_like(idx) if weights is None else _pixel_weights(weights, err)
    return torch.zeros(len(thresholds) + 1, dtype=w.dtype, device=w.device).scatter_add_(0, idx, w)


def auc_from_histogram(hist):
    """AuC (0..100) from an :func:`error_histogram` (summed over any number of batches).

    Returns:
        0-d tensor; NaN when the histogram is empty (no pixels, or zero total weight).
    """
    hist = hist.to(accumulation_dtype(hist.device))
    within = hist[:-1].cumsum(0)  # (n,) pixels with error <= t_i
    return 100 * (within / hist.sum()).mean()


def ab_auc(pred_ab, true_ab, weights=None, max_threshold=AUC_MAX_THRESHOLD, step=AUC_STEP):
    """Area under the cumulative ab-error curve, normalised to 100 (ECCV16 Table 1).

    AuC = 100 * mean over thresholds t = 0, step, ..., max_threshold of the fraction of pixels
    whose ab error is <= t. With ``weights`` each pixel counts with its weight: pass the class
    rebalancing weight of each pixel's ground-truth bin for the "rebalanced" AuC.

    Args:
        pred_ab, true_ab: (B, 2, H, W) in Lab ab units.
        weights: optional per-pixel weights, (B, H, W) or (B, 1, H, W), non-negative.
        max_threshold, step: the thresholds in ab units (default 0..150 in steps of 1).

    Returns:
        0-d tensor on the inputs' device: 100 for a perfect prediction, NaN for no pixels.
    """
    return auc_from_histogram(error_histogram(pred_ab, true_ab, weights, max_threshold, step))


def psnr(pred_rgb, true_rgb, data_range=1.0):
    """Peak signal-to-noise ratio of each image, in dB.

    Args:
        pred_rgb, true_rgb: (B, C, H, W), values on a scale of ``data_range`` (sRGB in [0, 1]).

    Returns:
        (B,): 10 log10(data_range^2 / MSE) per image; +inf for an exact match.
    """
    dtype = accumulation_dtype(pred_rgb.device)
    diff = pred_rgb.to(dtype) - true_rgb.to(dtype)
    mse = diff.pow(2).flatten(1).mean(1)  # (B,)
    return 10 * torch.log10(data_range ** 2 / mse)


def colourfulness(rgb):
    """Colourfulness M of each image (Hasler & Süsstrunk 2003).

    On 0..255 values: rg = R - G, yb = (R + G) / 2 - B, and
    M = sqrt(σ_rg² + σ_yb²) + 0.3 sqrt(μ_rg² + μ_yb²), with population standard deviations
    over the image's pixels. 0 for a grey image; about 100+ for very colourful photos.

    Args:
        rgb: (B, 3, H, W) sRGB in [0, 1].

    Returns:
        (B,).
    """
    r, g, b = (255 * rgb.to(accumulation_dtype(rgb.device))).flatten(2).unbind(1)  # each (B, H*W)
    rg = r - g
    yb = 0.5 * (r + g) - b
    spread = (rg.var(1, unbiased=False) + yb.var(1, unbiased=False)).sqrt()
    mean = (rg.mean(1).pow(2) + yb.mean(1).pow(2)).sqrt()
    return spread + 0.3 * mean


def _add(total, x):
    return x if total is None else total + x


class ColorMetrics:
    """Streaming colour-quality metrics over an evaluation set (ECCV16 Table 1 plus extras).

    Each :meth:`update` adds a batch; :meth:`compute` gives the metrics of everything added.
    AuC is accumulated as per-threshold pixel counts, so it equals :func:`ab_auc` on all the
    pixels at once exactly (integer counts; the rebalanced version up to float64 rounding).
    PSNR and colourfulness are per image, averaged over images. Feeding
    ``pred_ab = torch.zeros_like(true_ab)`` gives the grey baseline.

    State stays on the inputs' device until :meth:`compute`, so updates never synchronise.

    Args:
        max_threshold, step: AuC thresholds in ab units (default 0..150 in steps of 1).
    """

    def __init__(self, max_threshold=AUC_MAX_THRESHOLD, step=AUC_STEP):
        auc_thresholds(max_threshold, step)  # fail now on bad thresholds, not at the first batch
        self.max_threshold = max_threshold
        self.step = step
        self.reset()

    def reset(self):
        """Forget everything added so far."""
        self._hist = None  # (n + 1,) int64 pixel counts per threshold bin
        self._hist_weighted = None  # the same, weighted; None until a batch brings weights
        self._weighted_batches = 0
        self._batches = 0
        self._psnr_sum = None  # sums over images, accumulation dtype
        self._colourfulness_sum = None
        self._images = 0

    @torch.no_grad()
    def update(self, pred_ab, true_ab, L, weights=None):
        """Add a batch.

        Args:
            pred_ab: (B, 2, H, W) predicted ab (zeros for the grey baseline).
            true_ab: (B, 2, H, W) ground-truth ab.
            L: (B, 1, H, W) Lab lightness in [0, 100]; joined with each ab map to give the
                sRGB images that PSNR and colourfulness are measured on.
            weights: optional (B, H, W) or (B, 1, H, W) per-pixel weights (class rebalancing
                weight of each pixel's ground-truth bin) for ``auc_rebalanced``. Give them for
                every batch or for none.
        """
        err = ab_error(pred_ab, true_ab)  # (B, H, W)
        thresholds = auc_thresholds(self.max_threshold, self.step, err.device, err.dtype)
        self._hist = _add(self._hist, _histogram(err, None, thresholds))
        if weights is not None:
            self._hist_weighted = _add(self._hist_weighted, _histogram(err, weights, thresholds))
            self._weighted_batches += 1
        self._batches += 1

        # sRGB of prediction and truth share L, so PSNR measures the colour alone
        # (plus whatever clipping to the sRGB gamut does to each).
        pred_rgb = color.lab_to_rgb(torch.cat([L, pred_ab.to(L.dtype)], dim=1))  # (B, 3, H, W)
        true_rgb = color.lab_to_rgb(torch.cat([L, true_ab.to(L.dtype)], dim=1))
        self._psnr_sum = _add(self._psnr_sum, psnr(pred_rgb, true_rgb).sum())
        self._colourfulness_sum = _add(self._colourfulness_sum, colourfulness(pred_rgb).sum())
        self._images += L.shape[0]

    def reduce(self, sum_over_ranks, device=None):
        """Sum the accumulated counts over the processes of a distributed run, in place.

        Args:
            sum_over_ranks: sums a tensor over ranks in place
                (``splitbrain.distributed.all_reduce_sum``); every rank must call this.
            device: where to sum when this rank added nothing (an empty shard): the device
                the collective backend works on (CUDA for NCCL). Default: the CPU.
        """
        n = len(auc_thresholds(self.max_threshold, self.step)) + 1
        fields = ("_hist", "_hist_weighted", "_psnr_sum", "_colourfulness_sum")
        device = next((getattr(self, f).device for f in fields if getattr(self, f) is not None),
                      torch.device(device or "cpu"))
        # One float64 vector: two histograms, two sums, three counts. float64 keeps integer
        # pixel counts exact up to 2^53.
        parts = [self._hist, self._hist_weighted, self._psnr_sum, self._colourfulness_sum]
        sizes = [n, n, 1, 1]
        flat = torch.cat([torch.zeros(k, dtype=torch.float64, device=device) if p is None
                          else p.reshape(-1).to(device, torch.float64)
                          for p, k in zip(parts, sizes)]
                         + [torch.tensor([self._batches, self._weighted_batches, self._images],
                                         dtype=torch.float64, device=device)])
        flat = sum_over_ranks(flat)
        hist, hist_w, psnr_sum, colour_sum, counts = flat.split(sizes + [3])
        self._batches, self._weighted_batches, self._images = (int(c) for c in counts.tolist())
        self._hist = hist.round().long()
        self._hist_weighted = hist_w if self._weighted_batches else None
        self._psnr_sum, self._colourfulness_sum = psnr_sum[0], colour_sum[0]
        return self

    def compute(self):
        """Metrics of everything added since construction or :meth:`reset`.

        Returns:
            dict of floats: ``auc`` (0..100), ``auc_rebalanced`` (only when weights were given),
            ``psnr`` (dB; +inf if every image is exact), ``colourfulness`` (of the prediction).
            All NaN when nothing was added.

        Raises:
            ValueError: if weights were given for some batches but not others.
        """
        if self._batches == 0:
            nan = math.nan
            return {"auc": nan, "psnr": nan, "colourfulness": nan}
        out = {"auc": auc_from_histogram(self._hist).item()}
        if self._weighted_batches:
            if self._weighted_batches != self._batches:
                raise ValueError(f"weights were given for {self._weighted_batches} of "
                                 f"{self._batches} batches; the rebalanced AuC needs all or none")
            out["auc_rebalanced"] = auc_from_histogram(self._hist_weighted).item()
        out["psnr"] = (self._psnr_sum / self._images).item()
        out["colourfulness"] = (self._colourfulness_sum / self._images).item()
        return out
