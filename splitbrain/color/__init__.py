"""The colour core: Lab conversion, ab and L quantisation, soft encoding, rebalancing, decoding.

Everything here runs batched on the tensor's device. docs/reference.md §1 gives the definitions.
"""

from .decode import HEADS, check_head, decode_ab, decode_l, join_lab
from .lab import (AB_CHANNELS, AB_SCALE, L_CENTER, L_CHANNELS, L_NORMS, denormalize_l,
                  grey_rgb, lab_to_rgb, lightness, normalize_l, rgb_to_lab, sample_ab,
                  select_channels, to_float_rgb)
from .quantize import (AB_GRID, L_BIN_WIDTH, NUM_AB_BINS, NUM_L_BINS, ab_bin_centres,
                       annealed_mean, l_bin_centres, nearest_ab_bin, quantize_l, soft_encode)
from .rebalance import (GREY_THRESHOLD, AbHistogram, colorful_mask, prior_entropy,
                        rebalance_weights, smooth_prior)

__all__ = [
    "AB_CHANNELS", "AB_GRID", "AB_SCALE", "GREY_THRESHOLD", "HEADS", "L_BIN_WIDTH", "L_CENTER",
    "L_CHANNELS", "L_NORMS", "NUM_AB_BINS", "NUM_L_BINS", "AbHistogram", "ab_bin_centres",
    "annealed_mean", "check_head", "colorful_mask", "decode_ab", "decode_l", "denormalize_l",
    "grey_rgb", "join_lab", "l_bin_centres", "lab_to_rgb", "lightness", "nearest_ab_bin",
    "normalize_l", "prior_entropy", "quantize_l", "rebalance_weights", "rgb_to_lab",
    "sample_ab", "select_channels", "smooth_prior", "soft_encode", "to_float_rgb",
]
