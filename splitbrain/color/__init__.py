"""The colour core: Lab conversion, ab and L quantisation, soft encoding, rebalancing, decoding.

Everything here runs batched on the tensor's device. See DESIGN §1 for the definitions.
"""

from .lab import (AB_SCALE, L_CENTER, L_NORMS, L_RANGE, denormalize_l, grey_rgb, lab_to_rgb,
                  lightness, normalize_l, rgb_to_lab, sample_ab, to_float_rgb)
from .prior import (GREY_THRESHOLD, AbHistogram, colorful_mask, prior_entropy,
                    rebalance_weights, smooth_prior)
from .quantize import (AB_GRID, L_BIN_WIDTH, NUM_AB_BINS, NUM_L_BINS, ab_bin_centres,
                       annealed_mean, dense_target, l_bin_centres, nearest_ab_bin, quantize_l,
                       soft_encode)

__all__ = [
    "AB_GRID", "AB_SCALE", "GREY_THRESHOLD", "L_BIN_WIDTH", "L_CENTER", "L_NORMS", "L_RANGE",
    "NUM_AB_BINS", "NUM_L_BINS", "AbHistogram", "ab_bin_centres", "annealed_mean",
    "colorful_mask", "dense_target", "denormalize_l", "grey_rgb", "l_bin_centres",
    "lab_to_rgb", "nearest_ab_bin", "normalize_l", "prior_entropy", "quantize_l",
    "rebalance_weights", "lightness", "rgb_to_lab", "sample_ab", "smooth_prior", "soft_encode", "to_float_rgb",
]
