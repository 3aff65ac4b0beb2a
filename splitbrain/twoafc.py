"""A two-alternative forced-choice (2AFC) check of image distances that needs no download.

From the photos bundled with scikit-image and scikit-learn, each triplet is a reference crop and
two distortions of it of the same kind at two strengths (blur, noise, JPEG, colour shift). The
weaker distortion is the one a distance should call closer; a distance scores 1 on a triplet
when it does, 0.5 on a tie and 0 otherwise (as in the 2AFC protocol of Zhang et al., CVPR 2018,
where the judgements came from people rather than from a known order).

The "lin" weights of a feature distance are fitted on the triplets of some photos and scored
on the others: the split is by photo, never by crop, so no test pixel was seen in fitting.
"""

import io
import math
from dataclasses import dataclass

import kornia
import numpy as np
import torch
from PIL import Image

from . import color, perceptual
from .data import SAMPLE_PHOTOS, sample_photo

KINDS = ("blur", "noise", "jpeg", "colour")
# Six strengths per kind, weakest first, about 1.3x apart; a triplet takes two neighbours, so
# the two distortions are close and the choice is not trivial.
LEVELS = {
    "blur": (0.8, 1.0, 1.3, 1.7, 2.2, 2.8),            # Gaussian sigma, pixels
    "noise": (0.03, 0.04, 0.05, 0.065, 0.085, 0.11),   # std of Gaussian noise, sRGB in [0, 1]
    "jpeg": (50, 40, 30, 22, 15, 10),                  # JPEG quality (lower is stronger)
    "colour": (6.0, 8.0, 10.0, 13.0, 17.0, 22.0),      # length of an (a, b) shift, Lab units
}
TEST_PHOTOS = SAMPLE_PHOTOS[-3:]  # stereo_motorcycle, china, flower; the other four fit "lin"


@dataclass
class Triplets:
    """N triplets of 8-bit sRGB crops, (N, 3, S, S) each, and where they come from.

    Attributes:
        ref, near, far: the reference, its weaker and its stronger distortion.
        kind: (N,) index into ``KINDS``; photo: (N,) index into ``SAMPLE_PHOTOS``.
    """

    ref: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor
    kind: torch.Tensor
    photo: torch.Tensor

    def __len__(self):
        return len(self.kind)


def _quantize(rgb):
    """Float sRGB in [0, 1] -> uint8, as a saved image would hold it."""
    return rgb.clamp(0, 1).mul(255).round().to(torch.uint8)


def distort(rgb, kind, level, gen, angle=0.0):
    """One distortion of a float sRGB crop (3, H, W) in [0, 1] -> uint8 (3, H, W).

    Args:
        kind: one of ``KINDS``; level: its strength (see ``LEVELS``).
        gen: torch.Generator for the noise.
        angle: direction of a colour shift in the ab plane (radians).
    """
    if kind == "blur":
        radius = math.ceil(3 * level)
        out = kornia.filters.gaussian_blur2d(rgb[None], (2 * radius + 1,) * 2, (level, level),
                                             border_type="reflect")[0]
    elif kind == "noise":
        out = rgb + level * torch.randn(rgb.shape, generator=gen)
    elif kind == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(_quantize(rgb).permute(1, 2, 0).numpy()).save(buffer, "JPEG",
                                                                      quality=int(level))
        return torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1)
    elif kind == "colour":
        lab = color.rgb_to_lab(rgb[None])
        shift = torch.tensor([0.0, level * math.cos(angle), level * math.sin(angle)])
        out = color.lab_to_rgb(lab + shift.view(1, 3, 1, 1))[0]
    else:
        raise ValueError(f"unknown distortion {kind!r}; valid: {', '.join(KINDS)}")
    return _quantize(out)


def _scaled_photo(name, scale):
    """A bundled photo with its short side resized to ``scale`` pixels, float (3, H, W)."""
    img = Image.fromarray(np.ascontiguousarray(sample_photo(name)[..., :3]))
    factor = scale / min(img.size)
    img = img.resize((round(img.width * factor), round(img.height * factor)), Image.LANCZOS)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255


def make_triplets(size=64, per_kind=16, seed=0, scale=128, photos=SAMPLE_PHOTOS):
    """``per_kind`` triplets per photo and distortion kind, fixed by ``seed``.

    Each triplet has its own generator, seeded by (seed, photo, kind, i): its crop position,
    strengths, noise and colour direction do not depend on how many others are made.

    Args:
        size: crop side in pixels; scale: short side of each photo before cropping.
        photos: names among ``SAMPLE_PHOTOS``.
    """
    if size > scale:
        raise ValueError(f"crop size {size} is larger than the photos' short side {scale}")
    refs, nears, fars, kinds, sources = [], [], [], [], []
    for name in photos:
        p = SAMPLE_PHOTOS.index(name)
        photo = _scaled_photo(name, scale)
        for k, kind in enumerate(KINDS):
            for i in range(per_kind):
                gen = torch.Generator().manual_seed(((seed * 97 + p) * 11 + k) * 100_003 + i)
                top = int(torch.randint(0, photo.shape[1] - size + 1, (), generator=gen))
                left = int(torch.randint(0, photo.shape[2] - size + 1, (), generator=gen))
                lo = int(torch.randint(0, len(LEVELS[kind]) - 1, (), generator=gen))
                hi = lo + 1
                angle = float(torch.rand((), generator=gen)) * 2 * math.pi
                ref = _quantize(photo[:, top:top + size, left:left + size])
                crop = ref.float() / 255
                refs.append(ref)
                nears.append(distort(crop, kind, LEVELS[kind][lo], gen, angle))
                fars.append(distort(crop, kind, LEVELS[kind][hi], gen, angle))
                kinds.append(k)
                sources.append(p)
    return Triplets(torch.stack(refs), torch.stack(nears), torch.stack(fars),
                    torch.tensor(kinds), torch.tensor(sources))


# --- distances and scores ------------------------------------------------------------------------

def pixel_l2(x, y):
    """Mean squared sRGB difference per pair; x, y float (B, 3, H, W) -> (B,)."""
    return (x - y).pow(2).mean((1, 2, 3))


def ssim_distance(x, y):
    """1 - mean SSIM (11×11 Gaussian window, kornia) per pair -> (B,)."""
    return 1 - kornia.metrics.ssim(x, y, 11).mean((1, 2, 3))


def judge(d_near, d_far):
    """2AFC score per triplet: 1 when the weaker distortion is closer, 0.5 on a tie, else 0."""
    return (d_near < d_far).double() + 0.5 * (d_near == d_far).double()


def _batches(n, batch):
    return [slice(i, min(i + batch, n)) for i in range(0, n, batch)]


@torch.no_grad()
def pair_distances(triplets, fn, batch=64):
    """(d(ref, near), d(ref, far)), each (N,), for a distance ``fn(x, y)`` on float sRGB."""
    near, far = [], []
    for s in _batches(len(triplets), batch):
        ref = triplets.ref[s].float() / 255
        near.append(fn(ref, triplets.near[s].float() / 255))
        far.append(fn(ref, triplets.far[s].float() / 255))
    return torch.cat(near), torch.cat(far)


@torch.no_grad()
def feature_terms(triplets, model, layers, batch=64):
    """:func:`splitbrain.perceptual.channel_terms` of both pairs: two dicts layer -> (N, C)."""
    near, far = {}, {}
    for s in _batches(len(triplets), batch):
        ref = color.rgb_to_lab(triplets.ref[s].float() / 255)
        for out, other in ((near, triplets.near[s]), (far, triplets.far[s])):
            lab = color.rgb_to_lab(other.float() / 255)
            for name, t in perceptual.channel_terms(ref, lab, model, layers).items():
                out.setdefault(name, []).append(t)
    return ({k: torch.cat(v) for k, v in near.items()}, {k: torch.cat(v) for k, v in far.items()})


def feature_rows(label, triplets, model, layer_sets, test, batch=64):
    """2AFC scores of one feature network, per layer set, with and without fitted lin weights.

    Args:
        test: (N,) bool, the triplets scored; the others fit the lin weights.

    Returns:
        (rows, lins): rows maps a row label to the test triplets' (N_test,) scores; lins maps
        each layer set (a tuple) to its fitted weights.
    """
    union = tuple(dict.fromkeys(n for layers in layer_sets for n in layers))
    near, far = feature_terms(triplets, model, union, batch)
    rows, lins = {}, {}
    for layers in layer_sets:
        def pick(terms, mask, layers=layers):
            return {n: terms[n][mask] for n in layers}

        name = f"{label} {layer_set_name(layers)}"
        rows[name] = judge(perceptual.combine(pick(near, test)),
                           perceptual.combine(pick(far, test)))
        lin = perceptual.fit_lin_weights(pick(near, ~test), pick(far, ~test))
        rows[f"{name} + lin"] = judge(perceptual.combine(pick(near, test), lin),
                                      perceptual.combine(pick(far, test), lin))
        lins[layers] = lin
    return rows, lins


def layer_set_name(layers):
    """("conv1", "conv2", "conv3") -> "conv1-3"; other sets joined with commas."""
    nums = [n[4:] for n in layers if n.startswith("conv") and n[4:].isdigit()]
    if len(nums) == len(layers) > 1 and [int(x) for x in nums] == list(
            range(int(nums[0]), int(nums[0]) + len(nums))):
        return f"conv{nums[0]}-{nums[-1]}"
    return ",".join(layers)


def table(rows, kinds):
    """Markdown table: one row per distance, % of triplets judged right per kind and overall.

    Args:
        rows: label -> (N,) scores; kinds: (N,) index into ``KINDS`` of the same triplets.
    """
    lines = ["| distance | " + " | ".join(KINDS) + " | all |",
             "|---|" + "---|" * (len(KINDS) + 1)]
    for label, scores in rows.items():
        cells = [scores[kinds == k] for k in range(len(KINDS))] + [scores]
        lines.append(f"| {label} | " + " | ".join(
            f"{100 * float(c.mean()):.1f}" if len(c) else "-" for c in cells) + " |")
    return "\n".join(lines)
