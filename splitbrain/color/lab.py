"""sRGB <-> CIE Lab and the constants that map Lab onto network inputs and outputs.

Every normalisation constant in the project lives here. Two conventions exist for the L input:
the Caffe training nets feed ``L - 50`` ("center"); the published PyTorch port of the ECCV16
model feeds ``(L - 50) / 100`` ("unit"). A checkpoint records which one its network expects.
"""

import contextlib
import functools

import kornia
import torch
import torch.nn.functional as F

from ..hostsync import upload, watching

L_CENTER = 50.0
AB_SCALE = 110.0  # ab regression targets and outputs are ab / AB_SCALE
# Lab channel indices: the L half and the ab half of a Lab tensor (B, 3, H, W).
L_CHANNELS = [0]
AB_CHANNELS = [1, 2]

# sRGB (D65) linear RGB -> XYZ, the matrix kornia.color.rgb_to_xyz applies; row 1 gives Y.
_XYZ_FROM_LINEAR = torch.tensor([[0.412453, 0.357580, 0.180423],
                                 [0.212671, 0.715160, 0.072169],
                                 [0.019334, 0.119193, 0.950227]])
_Y_FROM_LINEAR = _XYZ_FROM_LINEAR[1]
# Its inverse as kornia.color.xyz_to_rgb applies it.
_LINEAR_FROM_XYZ = torch.tensor([[3.2404813432005266, -1.5371515162713185, -0.4985363261688878],
                                 [-0.9692549499965682, 1.8759900014898907, 0.0415559265582928],
                                 [0.0556466391351772, -0.2040413383665112, 1.0573110696453443]],
                                dtype=torch.float64)

def select_channels(x, channels):
    """``x[:, channels]`` for a list of channel indices, without a host-to-device copy.

    Indexing a device tensor with a Python list first copies the list to the device with a
    blocking copy (a host-device synchronisation every step on a GPU); runs of consecutive
    channels are taken as views instead and joined.
    """
    runs, start = [], 0
    for i in range(1, len(channels) + 1):
        if i == len(channels) or channels[i] != channels[i - 1] + 1:
            runs.append(x[:, channels[start]:channels[i - 1] + 1])
            start = i
    return runs[0] if len(runs) == 1 else torch.cat(runs, dim=1)


# scheme name -> (shift, scale): normalised = (L - shift) / scale
L_NORMS = {
    "unit": (L_CENTER, 100.0),
    "center": (L_CENTER, 1.0),
}


def rgb_to_lab(rgb):
    """Convert sRGB (D65) to CIE Lab on the tensor's device, in float32 even under autocast.

    kornia decodes the sRGB curve; its XYZ matrix and D65 white are applied from tables made
    once per device (kornia's own conversion builds them from Python numbers at every call,
    a blocking host-to-device copy on a GPU), with the exact CIE f (within 4e-5 of kornia's
    rounded constants in L).

    Args:
        rgb: float tensor in [0, 1] or uint8 tensor, shape (*, 3, H, W).

    Returns:
        Lab tensor of the same shape: L in [0, 100], a and b in about [-110, 110].

    Raises:
        ValueError: float input on the CPU outside [0, 1] (0-255 floats, say); see
            :func:`check_float_rgb` for where this is checked.
    """
    check_float_rgb(rgb, "rgb_to_lab")
    with _full_precision(rgb.device):
        return _lab_from_linear(kornia.color.rgb_to_linear_rgb(to_float_rgb(rgb)))


# Float sRGB a little outside [0, 1] (rounding, resampling) is still sRGB; 0-255 is not.
_RGB_SLACK = 1e-3


def check_float_rgb(rgb, what="rgb"):
    """Raise ValueError when float sRGB on the CPU is outside [0, 1]: 0-255 floats would give
    L in the thousands without a word.

    Checked on CPU tensors outside a :class:`hostsync.HostSyncWatch` only: reading the range of
    a device tensor is a host-device synchronisation, which must never happen inside a training
    step (``run.sync_debug``), and the watch makes a CPU step stand for a GPU one. uint8 input
    is always in range; NaN is let through (it stays visible as NaN). The datasets serve uint8,
    so the training step pays nothing; float callers on the CPU pay one pass over the values.
    """
    if rgb.dtype == torch.uint8 or rgb.device.type != "cpu" or watching() \
            or not rgb.is_floating_point() or rgb.numel() == 0:
        return
    low, high = torch.aminmax(rgb.detach())
    if low < -_RGB_SLACK or high > 1 + _RGB_SLACK:
        hint = " (0-255 values? divide by 255 or pass uint8)" if high > 1.5 else ""
        raise ValueError(f"{what}: float sRGB must be in [0, 1], got values in "
                         f"[{float(low):.4g}, {float(high):.4g}]{hint}")


def lab_to_rgb(lab, clip=True):
    """Convert CIE Lab back to sRGB in [0, 1] (clipped unless ``clip=False``).

    The inverse of :func:`rgb_to_lab`: the exact inverse CIE f, kornia's XYZ -> linear sRGB
    matrix from a table made once per device, kornia's sRGB curve. Computed in float32 (or
    float64 for float64 input) even under autocast; returned in the input's dtype.
    """
    dtype = lab.dtype
    with _full_precision(lab.device):
        lab = lab if dtype == torch.float64 else lab.float()
        L, a, b = lab[..., 0, :, :], lab[..., 1, :, :], lab[..., 2, :, :]
        fy = (L + 16.0) / 116.0
        f = (fy + a / 500.0, fy, (fy - b / 200.0).clamp(min=0))
        xyz = torch.stack([_cie_f_inverse(t) * w for t, w in zip(f, _WHITE)], dim=-3)
        linear = torch.einsum("oc,...chw->...ohw", _rgb_matrix(lab.device, lab.dtype), xyz)
        rgb = kornia.color.linear_rgb_to_rgb(linear)
        return (rgb.clamp(0.0, 1.0) if clip else rgb).to(dtype)


def to_float_rgb(rgb):
    """uint8 sRGB (0..255) -> float in [0, 1]; float input is returned as it is."""
    return rgb.float().div_(255) if rgb.dtype == torch.uint8 else rgb


# CIE f(t) is t^(1/3) above (6/29)^3 and, below, its tangent line there: t / (3 (6/29)^2) + 4/29.
# Being a tangent, f(t) = cbrt(max(t, knee)) + slope * min(t - knee, 0) exactly, with no branch.
# (kornia rounds these constants to 0.008856 and 7.787; the two agree within 4e-5 in L.)
_F_KNEE = (6 / 29) ** 3
_F_SLOPE = (29 / 6) ** 2 / 3
_F_EDGE = 6 / 29  # f at the knee: the inverse is t^3 above, linear below


# D65 reference white, as kornia's rgb_to_lab divides XYZ by it.
_WHITE = (0.95047, 1.0, 1.08883)


def _cie_f_(t):
    """CIE f(t): the cube root with its linear toe. Overwrites ``t`` (one allocation, not two)
    unless ``t`` needs a gradient.

    The cube root is exp2(log2(t) / 3): on the CPU that is about twice as fast as pow(t, 1/3)
    (both vectorised), and within 1e-7 of it relative, i.e. 1e-5 in L.
    """
    if t.requires_grad and torch.is_grad_enabled():
        return t.clamp(min=_F_KNEE).log2().div(3).exp2() + (t - _F_KNEE).clamp(max=0) * _F_SLOPE
    f = t.clamp(min=_F_KNEE).log2_().mul_(1 / 3).exp2_()
    return f.add_(t.sub_(_F_KNEE).clamp_(max=0), alpha=_F_SLOPE)


def _cie_f_inverse(f):
    """The inverse of :func:`_cie_f_`: f^3 above the knee's f (6/29), the line below it."""
    return torch.where(f > _F_EDGE, f.pow(3), (f - 4 / 29) / _F_SLOPE)


def _lab_from_linear(linear, with_l=True):
    """Linear-light sRGB (*, 3, H, W) -> Lab (or only ab, ``with_l=False``)."""
    xyz = torch.einsum("oc,...chw->...ohw", _xyz_matrix(linear.device, linear.dtype), linear)
    fx, fy, fz = (_cie_f_(xyz[..., i, :, :] / _WHITE[i]) for i in range(3))
    ab = [(fx - fy).mul_(500.0), (fy - fz).mul_(200.0)]
    return torch.stack([fy.mul(116.0).sub_(16.0), *ab] if with_l else ab, dim=-3)


@functools.lru_cache(maxsize=16)
def _rgb_matrix(device, dtype):
    """(3, 3) XYZ -> linear sRGB on ``device`` (kornia.color.xyz_to_rgb's matrix)."""
    return upload(_LINEAR_FROM_XYZ.to(dtype), device)


@functools.lru_cache(maxsize=16)
def _xyz_matrix(device, dtype):
    """(3, 3) linear sRGB -> XYZ on ``device``, copied there once (no per-call host copy)."""
    return upload(_XYZ_FROM_LINEAR.to(dtype), device)


def _full_precision(device):
    """Autocast off: colour targets stay float32 inside a bf16 step."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


@functools.lru_cache(maxsize=8)
def _linear_lut(device):
    """(256,): each 8-bit sRGB level decoded to linear light (kornia's sRGB curve)."""
    levels = torch.arange(256, dtype=torch.float64).div(255).view(1, 1, 256)
    return upload(kornia.color.rgb_to_linear_rgb(levels.expand(3, 1, 256).contiguous())[0, 0],
                  device)


@functools.lru_cache(maxsize=8)
def _y_lut(device):
    """8-bit sRGB levels' linear-light contributions to Y: (65536,) per (R, G) pair, (256,) for B.

    Two lookups and one addition give Y for an 8-bit pixel; the (R, G) table (256 KiB) stays
    in cache where three per-channel lookups would cost one more pass.
    """
    y = _Y_FROM_LINEAR.double()[:, None] * _linear_lut(torch.device("cpu"))  # (3, 256)
    rg = (y[0][:, None] + y[1][None, :]).reshape(-1)  # index R * 256 + G
    return upload(rg.float(), device), upload(y[2].float(), device)


def lightness(rgb):
    """CIE L of an sRGB batch, (B, 3, H, W) -> (B, 1, H, W); equal to ``rgb_to_lab(rgb)[:, :1]``.

    L depends only on the luminance Y, so this skips the X and Z work that a full conversion
    does: the training step needs L at full resolution but ab only at the output resolution.
    For 8-bit input (uint8) the sRGB decoding is a table lookup.
    """
    if rgb.dtype == torch.uint8:
        B, _, H, W = rgb.shape
        lut_rg, lut_b = _y_lut(rgb.device)
        index = rgb[:, 0].int().mul_(256).add_(rgb[:, 1].int())  # (B, H, W): R * 256 + G
        y = lut_rg.index_select(0, index.view(-1))
        y = y.add_(lut_b.index_select(0, index.copy_(rgb[:, 2]).view(-1))).view(B, 1, H, W)
    else:
        check_float_rgb(rgb, "lightness")
        with _full_precision(rgb.device):
            linear = kornia.color.rgb_to_linear_rgb(rgb)
            y = torch.einsum("c,bchw->bhw", _xyz_matrix(linear.device, linear.dtype)[1],
                             linear).unsqueeze(1)
    return _cie_f_(y).mul_(116.0).sub_(16.0)


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
    if rgb.dtype != torch.uint8:
        return rgb_to_lab(rgb)[:, 1:]
    # 8-bit: the sRGB decoding is a lookup, then the XYZ matrix and the CIE f.
    linear = _linear_lut(rgb.device).float().index_select(0, rgb.reshape(-1).int())
    with _full_precision(rgb.device):
        return _lab_from_linear(linear.view(rgb.shape), with_l=False)


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
