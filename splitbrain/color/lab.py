"""sRGB <-> CIE Lab and the constants that map Lab onto network inputs and outputs.

Every normalisation constant in the project lives here. Two conventions exist for the L input:
the Caffe training nets feed ``L - 50`` ("center"); the published PyTorch port of the ECCV16
model feeds ``(L - 50) / 100`` ("unit"). A checkpoint records which one its network expects.
"""

import functools

import kornia
import torch
import torch.nn.functional as F

L_RANGE = (0.0, 100.0)
L_CENTER = 50.0
AB_SCALE = 110.0  # ab regression targets and outputs are ab / AB_SCALE

# Row of the sRGB (D65) linear RGB -> XYZ matrix that gives Y, as kornia uses it.
_Y_FROM_LINEAR = torch.tensor([0.212671, 0.715160, 0.072169])

# scheme name -> (shift, scale): normalised = (L - shift) / scale
L_NORMS = {
    "unit": (L_CENTER, 100.0),
    "center": (L_CENTER, 1.0),
}


def rgb_to_lab(rgb):
    """Convert sRGB (D65) to CIE Lab on the tensor's device.

    Args:
        rgb: float tensor in [0, 1], shape (*, 3, H, W).

    Returns:
        Lab tensor of the same shape: L in [0, 100], a and b in about [-110, 110].
    """
    return kornia.color.rgb_to_lab(rgb)


def lab_to_rgb(lab, clip=True):
    """Convert CIE Lab back to sRGB in [0, 1] (clipped unless ``clip=False``)."""
    return kornia.color.lab_to_rgb(lab, clip=clip)


def to_float_rgb(rgb):
    """uint8 sRGB (0..255) -> float in [0, 1]; float input is returned as it is."""
    return rgb.float().div_(255) if rgb.dtype == torch.uint8 else rgb


@functools.lru_cache(maxsize=8)
def _y_lut(device):
    """(3, 256): each 8-bit level's linear-light contribution to Y, per channel."""
    levels = torch.arange(256, dtype=torch.float32).div(255).expand(3, 1, 256)  # (3, 1, 256)
    linear = kornia.color.rgb_to_linear_rgb(levels.contiguous())[:, 0]  # (3, 256)
    return (_Y_FROM_LINEAR[:, None] * linear).to(device)


def lightness(rgb):
    """CIE L of an sRGB batch, (B, 3, H, W) -> (B, 1, H, W); equal to ``rgb_to_lab(rgb)[:, :1]``.

    L depends only on the luminance Y, so this skips the X and Z work that a full conversion
    does: the training step needs L at full resolution but ab only at the output resolution.
    For 8-bit input (uint8) the sRGB decoding is a 256-entry table lookup per channel.
    """
    if rgb.dtype == torch.uint8:
        lut = _y_lut(rgb.device)  # (3, 256)
        idx = rgb.long()
        y = lut[0][idx[:, 0]] + lut[1][idx[:, 1]] + lut[2][idx[:, 2]]  # (B, H, W)
        y = y.unsqueeze(1)
    else:
        linear = kornia.color.rgb_to_linear_rgb(rgb)
        y = torch.einsum("c,bchw->bhw", _Y_FROM_LINEAR.to(linear), linear).unsqueeze(1)
    # CIE f(t) with the same linear segment below (6/29)^3 as kornia's rgb_to_lab.
    f = torch.where(y > 0.008856, y.clamp(min=0.008856).pow(1 / 3), 7.787 * y + 4 / 29)
    return 116.0 * f - 16.0


def sample_ab(rgb, size):
    """ab of an sRGB batch sampled at a coarser grid of ``size`` = (h, w) pixels.

    Nearest sampling, so for an output at 1/s resolution this takes every s-th pixel, as the
    official training layer does; only the sampled pixels are converted.

    Args:
        rgb: (B, 3, H, W), float in [0, 1] or uint8.

    Returns:
        (B, 2, h, w).
    """
    (H, W), (h, w) = rgb.shape[-2:], tuple(size)
    if H % h == 0 and W % w == 0:
        rgb = rgb[:, :, ::H // h, ::W // w]  # the same pixels nearest sampling picks
    else:
        rgb = F.interpolate(to_float_rgb(rgb), size=(h, w), mode="nearest")
    return rgb_to_lab(to_float_rgb(rgb))[:, 1:]


def _l_norm(scheme):
    try:
        return L_NORMS[scheme]
    except KeyError:
        raise ValueError(f"unknown L normalisation {scheme!r}; valid: {sorted(L_NORMS)}") from None


def normalize_l(L, scheme="unit"):
    """Map Lab lightness to the network's input range (see ``L_NORMS``)."""
    shift, scale = _l_norm(scheme)
    return (L - shift) / scale


def denormalize_l(x, scheme="unit"):
    """Inverse of :func:`normalize_l`."""
    shift, scale = _l_norm(scheme)
    return x * scale + shift


def grey_rgb(rgb):
    """The lightness of an sRGB batch rendered back as a grey sRGB image (a = b = 0)."""
    lab = rgb_to_lab(rgb)
    return lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(lab[:, 1:])], dim=1))
