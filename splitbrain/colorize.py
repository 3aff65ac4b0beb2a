"""Colorize photographs at their full resolution.

The network sees the L channel at a working size; its ab prediction is upsampled to the
photo's own size and joined with the photo's own full-resolution L, so every detail of the
original's lightness is kept. A :class:`Colorizer` bundles a model with what decoding needs,
read from a splitbrain checkpoint or from the official ECCV16 release weights.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import checkpoint as ckpt
from . import color
from .models import SplitBrain, build_model
from .objectives import decode_ab

# The official PyTorch ECCV16 release multiplies the last layer's logits by this factor (the
# annealing folded into the weights) before its softmax; 1 / 2.606 is its temperature.
OFFICIAL_ECCV16_LOGIT_SCALE = 2.606


@dataclass
class Colorizer:
    """A model mapping L to ab, and how to decode its output.

    Attributes:
        model: takes raw Lab L (B, 1, H, W), returns (B, Q, h, w) logits or (B, 2, h, w) ab/110.
        head: "classification" or "regression".
        centres: (Q, 2) ab value of each class.
        temperature: annealed-mean temperature.
        size: the short side of the network's working size, in pixels.
    """

    model: torch.nn.Module
    head: str = "classification"
    centres: torch.Tensor = None
    temperature: float = 0.38
    size: int = 256

    @property
    def device(self):
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict_ab(self, L):
        """ab for a batch of full-resolution L maps (B, 1, H, W), at that same resolution."""
        H, W = L.shape[-2:]
        scale = self.size / min(H, W)
        work = (max(1, round(H * scale)), max(1, round(W * scale)))
        # Antialiased resize: the network sees the photo, not aliasing from a large downscale.
        small = F.interpolate(L, size=work, mode="bilinear", antialias=scale < 1,
                              align_corners=False)
        ab = decode_ab(self.model(small.to(self.device)), self.head, self.temperature,
                       self.centres)
        return F.interpolate(ab.float().cpu(), size=(H, W), mode="bilinear",
                             align_corners=False)


def colorize_tensor(rgb, colorizer):
    """sRGB batch (B, 3, H, W) in [0, 1] -> colorized sRGB of the same size.

    Only the lightness of the input is used: a colour photo is re-coloured from its L.
    """
    L = color.lightness(rgb)  # (B, 1, H, W), full resolution
    ab = colorizer.predict_ab(L)
    return color.lab_to_rgb(torch.cat([L, ab], dim=1))


def colorize(image, colorizer):
    """Colorize one photograph.

    Args:
        image: a PIL image (any mode; converted to sRGB) or a path to one.
        colorizer: a :class:`Colorizer`, or a path to a checkpoint to load one from.

    Returns:
        An RGB PIL image with exactly the input's size.
    """
    from .images import load_rgb

    if not isinstance(colorizer, Colorizer):
        colorizer = load_colorizer(colorizer)
    if not isinstance(image, Image.Image):
        image = load_rgb(image)
    elif image.mode != "RGB":
        image = image.convert("RGB")
    rgb = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255
    out = colorize_tensor(rgb, colorizer)[0]
    return Image.fromarray(to_uint8(out))


def to_uint8(rgb):
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8 array."""
    return (rgb.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


# --- loading ------------------------------------------------------------------------------

def is_official_eccv16(state):
    return (isinstance(state, dict) and "format" not in state
            and "model1.0.weight" in state and "model_out.weight" in state)


def from_official_eccv16(state, temperature=None, size=256):
    """A Colorizer from the official release state dict (``colorization_release_v2``).

    The release's last layer carries a ×2.606 logit scale; it is divided out here so the
    network returns plain logits, and the default temperature 1/2.606 reproduces the release's
    own decoding exactly. The bin centres are read from its ``model_out`` 1×1 convolution.
    """
    model = build_model("eccv16", l_norm="unit")
    weights = {k: v for k, v in state.items() if k != "model_out.weight"}
    weights = {k: v / OFFICIAL_ECCV16_LOGIT_SCALE if k.startswith("model8.6.") else v
               for k, v in weights.items()}
    own = model.state_dict()
    # Releases converted from Caffe have no BatchNorm step counters; keep ours.
    for k in own:
        if k.endswith("num_batches_tracked") and k not in weights:
            weights[k] = own[k]
    ckpt.load_state_dict(model, weights, "the ECCV16 release weights")
    centres = state["model_out.weight"][:, :, 0, 0].t().float() * color.AB_SCALE  # (313, 2)
    if temperature is None:
        temperature = 1 / OFFICIAL_ECCV16_LOGIT_SCALE
    return Colorizer(model.eval(), "classification", centres, temperature, size)


def load_colorizer(path, device="cpu", temperature=None, size=256):
    """A Colorizer from any checkpoint that can colorize.

    Accepts a ``--task colorize`` checkpoint, a split-brain checkpoint (its L -> ab half), or
    the official ECCV16 release weights. Anything else is a clear CheckpointError.
    """
    path = Path(path)
    if not path.is_file():
        raise ckpt.CheckpointError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise ckpt.CheckpointError(f"cannot read checkpoint {path}: {err}") from None
    if is_official_eccv16(raw):
        colorizer = from_official_eccv16(raw, temperature, size)
    else:
        state = ckpt.load(path)
        builder = COLORIZER_BUILDERS.get(state.get("task"))
        if builder is None:
            raise ckpt.CheckpointError(
                f"{path} is a {state.get('task')!r} checkpoint, which cannot colorize; pass a "
                f"checkpoint from tools/train.py --task colorize or --task splitbrain")
        colorizer = builder(state, path)
        if temperature is not None:
            colorizer.temperature = temperature
        colorizer.size = size
    colorizer.model.to(device).eval()
    return colorizer


def _colorizer_from_colorize_ckpt(state, path):
    spec, c = state["model"], state["color"]
    model = build_model(spec["name"], **spec["kwargs"])
    ckpt.load_state_dict(model, state["state_dict"], path)
    return Colorizer(model, c["head"], c["ab_centres"].float(), c["temperature"])


def _colorizer_from_splitbrain_ckpt(state, path):
    """The L -> ab half of a split-brain model (or an L -> ab half trained alone)."""
    spec, c = state["model"], state["color"]
    model = build_model(spec["name"], **spec["kwargs"])
    ckpt.load_state_dict(model, state["state_dict"], path)
    try:
        half = model.half("l2ab") if isinstance(model, SplitBrain) else model
    except ValueError:
        half = None
    if half is None or (half.inputs, half.targets) != ([0], [1, 2]):
        raise ckpt.CheckpointError(f"{path} has no L -> ab half, so it cannot colorize; pass a "
                                   f"checkpoint trained with model.half=both or l2ab")
    head = "regression" if half.head_type == "reg" else "classification"
    return Colorizer(_LabInput(half), head, c["ab_centres"].float(), c["temperature"])


class _LabInput(torch.nn.Module):
    """Feeds a split-brain half, which selects its channels from Lab, from L alone."""

    def __init__(self, half):
        super().__init__()
        self.net = half

    def forward(self, L):
        return self.net(torch.cat([L, torch.zeros_like(L).expand(-1, 2, -1, -1)], dim=1))


COLORIZER_BUILDERS = {"colorize": _colorizer_from_colorize_ckpt,
                      "splitbrain": _colorizer_from_splitbrain_ckpt}
