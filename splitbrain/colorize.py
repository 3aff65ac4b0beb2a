"""Colorize photographs at their full resolution.

The network sees the L channel at a working size; its ab prediction is upsampled to the
photo's own size and joined with the photo's own full-resolution L, so every detail of the
original's lightness is kept. A :class:`Colorizer` bundles a model with what decoding needs,
read from any checkpoint that can colorize (see :func:`load_colorizer`).
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import checkpoint as ckpt
from . import color
from .hints import hint_input, render_hints, working_point
from .images import load_rgb
from .models import SplitBrain, half_name


@dataclass
class Colorizer:
    """A model mapping L to ab, and how to decode its output.

    Attributes:
        model: takes raw Lab L (B, 1, H, W), returns (B, Q, h, w) logits or (B, 2, h, w) ab/110.
        head: "cl" or "reg" (see :mod:`splitbrain.color.decode`).
        centres: (Q, 2) ab value of each class.
        temperature: annealed-mean temperature.
        size: the short side of the network's working size, in pixels.
        about: what the checkpoint holds, in words (task and network), for people to read.
        takes_hints: the model takes user colour hints (a ``--task hints`` checkpoint): its
            input is L, hint ab and mask (:mod:`splitbrain.hints`), its output ab / 110 then
            the logits of the ab distribution (``head`` is "reg").
    """

    model: torch.nn.Module
    head: str = "cl"
    centres: torch.Tensor = None
    temperature: float = 0.38
    size: int = 256
    about: str = ""
    takes_hints: bool = False

    @property
    def device(self):
        return next(self.model.parameters()).device

    def work_size(self, H, W):
        """The working size (h, w) for a photo of H x W pixels."""
        scale = self.size / min(H, W)
        return max(1, round(H * scale)), max(1, round(W * scale))

    def _forward(self, L, hints=None):
        """The network's output for full-resolution L (B, 1, H, W), at the working size.

        Args:
            hints: None, or one list of :class:`splitbrain.hints.Hint` per image (in the
                photo's pixels).
        """
        H, W = L.shape[-2:]
        work = self.work_size(H, W)
        scale = self.size / min(H, W)
        # Antialiased resize: the network sees the photo, not aliasing from a large downscale.
        small = F.interpolate(L, size=work, mode="bilinear", antialias=scale < 1,
                              align_corners=False).to(self.device)
        if not self.takes_hints:
            if hints is not None and any(hints):
                raise ValueError("this model has no hint inputs: colour hints need a checkpoint "
                                 "from tools/train.py --task hints")
            return self.model(small)
        maps = [render_hints(h if hints is not None else [], (W, H), work[::-1], small.device)
                for h in (hints if hints is not None else [None] * L.shape[0])]
        hint_ab = torch.cat([m[0] for m in maps])
        mask = torch.cat([m[1] for m in maps])
        return self.model(hint_input(small, hint_ab, mask))

    @torch.no_grad()
    def predict_small_ab(self, L, hints=None):
        """ab at the working size for full-resolution L maps (B, 1, H, W): (B, 2, h, w).

        Args:
            hints: None, or a list per image of :class:`splitbrain.hints.Hint` (the model
                must take hints unless every list is empty).
        """
        output = self._forward(L, hints)
        if self.takes_hints:
            output = output[:, :2]
        ab = color.decode_ab(output, self.head, self.temperature, self.centres)
        if not torch.isfinite(ab).all():
            raise ValueError("the model predicted non-finite colours: its weights are broken "
                             "(a diverged training run?); use an earlier checkpoint")
        return ab.float().cpu()

    @torch.no_grad()
    def suggest(self, L, x, y, hints=(), count=6):
        """The most likely colours at a photo pixel, from the model's ab distribution there.

        Args:
            L: (1, 1, H, W) the photo's full-resolution lightness.
            x, y: the pixel, in the photo's own coordinates.
            hints: the photo's current hints (they change the distribution).
            count: how many colours.

        Returns:
            [(a, b, probability)], most likely first.
        """
        if not self.takes_hints:
            raise ValueError("this model predicts no colour distribution with hints; suggested "
                             "colours need a checkpoint from tools/train.py --task hints")
        H, W = L.shape[-2:]
        logits = self._forward(L, [list(hints)])[0, 2:]  # (313, h, w)
        col, row = working_point(x, y, (W, H), logits.shape[:0:-1])
        prob = torch.softmax(logits[:, row, col].float(), dim=0)
        top = prob.topk(min(count, prob.numel()))
        centres = self.centres.to(prob.device)
        return [(float(centres[i, 0]), float(centres[i, 1]), float(p))
                for p, i in zip(top.values, top.indices)]

    @torch.no_grad()
    def predict_ab(self, L, hints=None):
        """ab for a batch of full-resolution L maps (B, 1, H, W), at that same resolution."""
        return F.interpolate(self.predict_small_ab(L, hints), size=L.shape[-2:],
                             mode="bilinear", align_corners=False)


def upsample_rows(ab, size, rows):
    """Rows ``rows`` (a slice) of ``ab`` (B, 2, h, w) bilinearly resized to ``size`` = (H, W).

    Equal to ``F.interpolate(ab, size, mode="bilinear", align_corners=False)[..., rows, :]``
    without making the whole (B, 2, H, W) map.
    """
    (H, W), B = size, ab.shape[0]
    ys = (torch.arange(rows.start, rows.stop, dtype=torch.float32) + 0.5) * (2 / H) - 1
    xs = (torch.arange(W, dtype=torch.float32) + 0.5) * (2 / W) - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (r, W, 2) as (x, y)
    return F.grid_sample(ab, grid.expand(B, -1, -1, -1), mode="bilinear",
                         padding_mode="border", align_corners=False)


@torch.no_grad()
def colorize_tensor(rgb, colorizer, chunk_rows=256, grey=False, hints=None):
    """sRGB batch (B, 3, H, W), uint8 or float in [0, 1] -> colorized uint8 sRGB, same size.

    Only the lightness of the input is used: a colour photo is re-coloured from its L. The
    full-resolution side (upsampled ab, Lab -> sRGB) runs ``chunk_rows`` rows at a time, so
    a 24-megapixel photo needs a few hundred MB, not several GB.

    Args:
        grey: return the input's lightness as grey sRGB (uint8) instead of the colorization.
        hints: None, or one list of :class:`splitbrain.hints.Hint` per image.

    Returns:
        (B, 3, H, W) uint8.
    """
    L = color.lightness(rgb)  # (B, 1, H, W), full resolution
    H, W = L.shape[-2:]
    ab_small = None if grey else colorizer.predict_small_ab(L, hints)
    out = torch.empty(L.shape[0], 3, H, W, dtype=torch.uint8)
    for start in range(0, H, chunk_rows):
        rows = slice(start, min(start + chunk_rows, H))
        L_rows = L[:, :, rows].cpu()
        ab = (torch.zeros(L.shape[0], 2, *L_rows.shape[-2:]) if grey
              else upsample_rows(ab_small, (H, W), rows))
        rgb_rows = color.lab_to_rgb(torch.cat([L_rows, ab], dim=1))
        out[:, :, rows] = rgb_rows.clamp_(0, 1).mul_(255).round_().byte()
    return out


def colorize(image, colorizer, hints=None):
    """Colorize one photograph.

    Args:
        image: a PIL image (any mode; converted to sRGB) or a path to one.
        colorizer: a :class:`Colorizer`, or a path to a checkpoint to load one from.
        hints: a list of :class:`splitbrain.hints.Hint` in the photo's pixels, or None.

    Returns:
        An RGB PIL image with exactly the input's size.
    """
    if not isinstance(colorizer, Colorizer):
        colorizer = load_colorizer(colorizer)
    if not isinstance(image, Image.Image):
        image = load_rgb(image)
    elif image.mode != "RGB":
        image = image.convert("RGB")
    rgb = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None]  # uint8
    return Image.fromarray(to_hwc(colorize_tensor(
        rgb, colorizer, hints=None if hints is None else [list(hints)])[0]))


def to_hwc(rgb):
    """(3, H, W) uint8 tensor -> (H, W, 3) uint8 array, as PIL takes it."""
    return rgb.permute(1, 2, 0).numpy()


# --- loading ------------------------------------------------------------------------------

def colorizer_from_checkpoint(state, path="checkpoint"):
    """A Colorizer from a checkpoint dict of :func:`splitbrain.checkpoint.load`.

    A ``--task colorize`` checkpoint (the ECCV16 release loads as one) colorizes with its
    model; a split-brain checkpoint with its L -> ab half, fed from L alone.

    Raises:
        CheckpointError: another task, or a split-brain model without an L -> ab half.
    """
    task, c = state.get("task"), state.get("color", {})
    if task not in ("colorize", "splitbrain", "hints"):
        raise ckpt.CheckpointError(
            f"{path} is a {task!r} checkpoint, which cannot colorize; pass a checkpoint from "
            f"tools/train.py --task colorize, splitbrain or hints, or the ECCV16 release")
    model = ckpt.build_model(state, path)
    about = f"task {task}, network {state['model']['name']}"
    if state.get("source"):
        about += f" ({state['source']})"
    if task == "colorize":
        return Colorizer(model, c["head"], c["ab_centres"].float(), c["temperature"],
                         about=about)
    if task == "hints":
        return Colorizer(model, "reg", c["ab_centres"].float(), c["temperature"],
                         about=about + ", takes colour hints", takes_hints=True)
    try:
        half = model.half("l2ab") if isinstance(model, SplitBrain) else model
    except ValueError:
        half = None
    if half is None or half_name(half.spec) != "l2ab":
        raise ckpt.CheckpointError(f"{path} has no L -> ab half, so it cannot colorize; pass a "
                                   f"checkpoint trained with model.half=both or l2ab")
    return Colorizer(_LabInput(half), half.head_type, c["ab_centres"].float(), c["temperature"],
                     about=about + ", its L -> ab half")


def load_colorizer(path, device="cpu", temperature=None, size=256):
    """A Colorizer from any checkpoint that can colorize, on ``device``, in eval mode.

    Accepts a ``--task colorize`` or ``--task hints`` checkpoint, a split-brain checkpoint (its
    L -> ab half), or the official ECCV16 release weights. Anything else is a clear CheckpointError.

    Args:
        temperature: annealed-mean temperature (default: the checkpoint's).
        size: short side of the network's working size.
    """
    colorizer = colorizer_from_checkpoint(ckpt.load(path), path)
    if temperature is not None:
        colorizer.temperature = temperature
    colorizer.size = size
    colorizer.model.to(device).eval()
    return colorizer


class _LabInput(torch.nn.Module):
    """Feeds a split-brain half, which selects its channels from Lab, from L alone."""

    def __init__(self, half):
        super().__init__()
        self.net = half

    def forward(self, L):
        return self.net(torch.cat([L, torch.zeros_like(L).expand(-1, 2, -1, -1)], dim=1))
