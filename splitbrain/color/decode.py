"""From a network's output back to colour: head kinds, annealed-mean decoding, joining with L.

Every network head is one of two kinds, named the same in configs, code and checkpoints:

- ``"cl"``: classification, logits over bins (313 ab bins, or 50 L bins), decoded with the
  annealed mean;
- ``"reg"``: regression, the values themselves in network units (ab / AB_SCALE, or L
  normalised with the "unit" scheme).
"""

import torch
import torch.nn.functional as F

from .lab import AB_SCALE, denormalize_l, lab_to_rgb
from .quantize import annealed_mean, device_ab_centres, l_bin_centres

HEADS = ("cl", "reg")


def check_head(head):
    """Raise ValueError unless ``head`` is one of ``HEADS``."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid: {', '.join(HEADS)} "
                         f"(cl: classification over bins, reg: L2 regression)")


def decode_ab(output, head, temperature=0.38, centres=None):
    """Network output at its own resolution -> ab in Lab units, (B, 2, h, w).

    Args:
        output: (B, Q, h, w) logits for a "cl" head, (B, 2, h, w) ab / AB_SCALE for "reg".
        head: "cl" or "reg".
        temperature: annealed-mean temperature for a "cl" head.
        centres: (Q, 2) bin centres (defaults to the standard 313).
    """
    check_head(head)
    if head == "reg":
        return output.float() * AB_SCALE
    if centres is None:
        centres = device_ab_centres(output.device)
    return annealed_mean(output, centres, temperature)


def decode_l(output, head, temperature=0.38):
    """Network output -> L in [0, 100], (B, 1, h, w): 50 bins for "cl", unit-normalised "reg"."""
    check_head(head)
    if head == "reg":
        return denormalize_l(output.float(), "unit")
    return annealed_mean(output, l_bin_centres(device=output.device), temperature)


def join_lab(L, ab):
    """Full-resolution L (B, 1, H, W) with ab upsampled (bilinear) to its size -> sRGB."""
    ab = F.interpolate(ab.float(), size=L.shape[-2:], mode="bilinear", align_corners=False)
    return lab_to_rgb(torch.cat([L.float(), ab], dim=1))
