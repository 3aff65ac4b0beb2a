"""What a training step optimises, per task: targets built on the device, then the loss.

An objective turns a batch of sRGB images into a loss, the numbers worth logging, and a
:class:`Prediction` that validation metrics and image grids read without converting the batch
to Lab a second time. Lab conversion and soft encoding run here, batched on the training
device, not per image in the data workers. Decoding belongs to the colour core
(:mod:`splitbrain.color.decode`); an objective only knows its annealing temperature.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import color, losses, perceptual
from .metrics import ColorMetrics
from .models import half_name


@dataclass
class Prediction:
    """A forward pass of an objective.

    Attributes:
        output: the network's output: a tensor, or for split-brain a list with one per half.
        L: (B, 1, H, W) the batch's lightness at full resolution.
        lab: (B, 3, H, W) the batch in Lab at full resolution, when the step computed it.
    """

    output: object
    L: torch.Tensor
    lab: torch.Tensor = None

    def true_ab(self, rgb):
        """The batch's ab at full resolution, (B, 2, H, W), converted only if not at hand."""
        if self.lab is not None:
            return self.lab[:, 1:]
        return color.sample_ab(rgb, rgb.shape[-2:])


def update_colour_metrics(metrics, pred_ab, true_ab, L, class_weights=None):
    """Add a batch to ``{"model": ColorMetrics, "grey": ColorMetrics}`` at full resolution.

    Args:
        pred_ab: (B, 2, h, w) predicted ab, upsampled here; true_ab: (B, 2, H, W); L: (B, 1, H, W).
        class_weights: (313,) weights for the rebalanced AuC, or None.
    """
    pred_ab = F.interpolate(pred_ab, size=L.shape[-2:], mode="bilinear", align_corners=False)
    weights = None
    if class_weights is not None:
        weights = class_weights.to(true_ab.device)[color.nearest_ab_bin(true_ab)]
    metrics["model"].update(pred_ab, true_ab, L, weights)
    metrics["grey"].update(torch.zeros_like(true_ab), true_ab, L, weights)


def _grey(lightness):
    """L (B, 1, H, W) in [0, 100] as a grey sRGB image (B, 3, H, W) in [0, 1]."""
    return lightness.expand(-1, 3, -1, -1).clamp(0, 100) / 100


class PerceptualTerm:
    """An extra colorization loss: the perceptual distance of the decoded colours to the truth.

    The predicted ab is decoded differentiably (the annealed mean is a softmax; a "reg" head
    is already ab), upsampled to the input size, joined with the input's own L, and compared
    with the true Lab through a frozen feature network (:mod:`splitbrain.perceptual`). Only
    the colorizer receives gradients: the feature network is in eval mode with
    ``requires_grad`` off and is not part of the trained model.

    Args:
        features: a frozen feature network that reads colour (e.g. a split-brain model).
        weight: the term's factor in the loss (> 0).
        layers: the feature taps used.
        lin: optional "lin" weights, layer -> (C,).
    """

    def __init__(self, features, weight, layers=perceptual.DEFAULT_LAYERS, lin=None):
        perceptual.require_colour(features)
        self.features = perceptual.freeze(features)
        self.layers = perceptual.check_layers(features, layers)
        if lin is not None:
            perceptual.check_weights(lin, features, self.layers)
        self.weight, self.lin = weight, lin

    def to(self, device):
        self.features.to(device)
        self.lin = None if self.lin is None else {k: v.to(device) for k, v in self.lin.items()}
        return self

    def __call__(self, pred_ab, rgb, keep=None):
        """Weighted mean distance over the batch.

        Args:
            pred_ab: (B, 2, h, w) predicted ab in Lab units; rgb: (B, 3, H, W) the truth.
            keep: (B,) per-image weights (the grey mask: 0 for grey images), or None.
        """
        truth = color.rgb_to_lab(color.to_float_rgb(rgb))  # (B, 3, H, W)
        ab = F.interpolate(pred_ab.float(), size=truth.shape[-2:], mode="bilinear",
                           align_corners=False)  # (B, 2, H, W)
        pred = torch.cat([truth[:, :1], ab], 1)  # the truth's L: only colour differs
        d = perceptual.lab_distance(pred, truth, self.features, self.layers, self.lin)  # (B,)
        return self.weight * (d if keep is None else d * keep).mean()


class ColorizationObjective:
    """L -> ab, as a class-rebalanced soft classification (Zhang et al., ECCV 2016) or L2.

    Args:
        head: "cl" (cross-entropy over the 313 bins) or "reg" (L2 on ab).
        k, sigma: soft-encoding neighbours and Gaussian width (k = 1 gives 1-hot targets).
        class_weights: (313,) rebalancing weights, or None; also used for the rebalanced AuC.
        rebalance: weight each pixel's loss by its colour's class weight.
        grey_mask: give grey images inside a colour dataset weight 0.
        temperature: annealed-mean temperature for metrics, image grids and the perceptual
            term's decoding.
        perceptual: a :class:`PerceptualTerm` added to the loss, or None (the default: the
            step is exactly the one without it).
    """

    def __init__(self, head="cl", k=10, sigma=5.0, class_weights=None, rebalance=True,
                 grey_mask=True, temperature=0.38, perceptual=None):
        color.check_head(head)
        self.head, self.k, self.sigma = head, k, sigma
        self.class_weights = class_weights
        self.rebalance = rebalance and class_weights is not None
        self.grey_mask = grey_mask
        self.temperature = temperature
        self.perceptual = perceptual

    def __call__(self, model, rgb):
        """Loss of ``model`` on an sRGB batch (B, 3, H, W), uint8 or float in [0, 1].

        Returns:
            loss: scalar; logs: dict of scalar tensors; a :class:`Prediction`.
        """
        L = color.lightness(rgb)  # (B, 1, H, W)
        output = model(L)  # (B, 313 or 2, h, w)
        ab = color.sample_ab(rgb, output.shape[-2:])  # (B, 2, h, w), ground truth at output res
        logs, pixel_w, keep = {}, None, None
        if self.grey_mask:
            keep = color.colorful_mask(ab).float()  # (B,)
            pixel_w = keep[:, None, None].expand(-1, *ab.shape[-2:])  # (B, h, w)
            logs["grey_fraction"] = 1 - keep.mean()
        if self.head == "reg":
            loss = losses.l2_regression(output, ab / color.AB_SCALE, pixel_w)
        else:
            idx, w = color.soft_encode(ab, self.k, self.sigma)  # (B, k, h, w) each
            if self.rebalance:
                # The first of the k bins is the nearest one; a pixel's weight is its bin's.
                cw = self.class_weights.to(ab.device)[idx[:, 0]]  # (B, h, w)
                pixel_w = cw if pixel_w is None else pixel_w * cw
            loss = losses.soft_cross_entropy(output, idx, w, pixel_w)
        if self.perceptual is not None:
            logs["loss_colour"] = loss.detach()
            term = self.perceptual(color.decode_ab(output, self.head, self.temperature), rgb,
                                   keep)
            logs["loss_perceptual"] = term.detach()
            loss = loss + term
        logs["loss"] = loss.detach()
        return loss, logs, Prediction(output, L)

    def predict_ab(self, pred):
        """Predicted ab at the network's resolution, (B, 2, h, w)."""
        return color.decode_ab(pred.output, self.head, self.temperature)

    def new_metrics(self):
        """Fresh colour-metrics accumulators: the model's, and the all-grey baseline's."""
        return {"model": ColorMetrics(), "grey": ColorMetrics()}

    def update_metrics(self, metrics, rgb, pred):
        """Add a batch's full-resolution colour errors to ``metrics`` (from :meth:`new_metrics`)."""
        update_colour_metrics(metrics, self.predict_ab(pred), pred.true_ab(rgb), pred.L,
                              self.class_weights)

    def histograms(self, pred):
        """Predicted bin of every pixel, for a TensorBoard histogram ("cl" heads only)."""
        return {"predicted_bins": pred.output.argmax(1)} if self.head == "cl" else {}

    def visuals(self, rgb, pred):
        """Image rows for TensorBoard: grey input, prediction, ground truth, each (B, 3, H, W)."""
        return {"input": _grey(pred.L), "prediction": color.join_lab(pred.L, self.predict_ab(pred)),
                "truth": color.to_float_rgb(rgb)}


class SplitBrainObjective:
    """Each half of a split-brain model predicts the channels the other half sees.

    Zhang, Isola, Efros, "Split-Brain Autoencoders", CVPR 2017. For Lab, F1 sees L and
    predicts ab over the 313 bins; F2 sees ab and predicts L over 50 bins of width 2. Heads
    are "cl" (cross-entropy over bins; 1-hot targets unless ``k > 1``) or "reg" (L2). The total
    loss is the sum of the halves' losses; each is logged on its own.

    Args:
        halves: the model's split, ``[{"inputs": [...], "targets": [...], "head": ...}, ...]``.
        k, sigma: soft encoding of ab targets (k = 1: 1-hot, the paper's default).
        class_weights: (313,) rebalancing weights for ab classification, or None (default).
        temperature: annealed-mean temperature for metrics and image grids.

    Attributes:
        names: a name per half for logs: "l2ab" / "ab2l" for the Lab halves, else "half<i>".
    """

    def __init__(self, halves, k=1, sigma=5.0, class_weights=None, temperature=0.38):
        for half in halves:
            color.check_head(half["head"])
            if half["head"] == "cl" and half["targets"] not in (color.AB_CHANNELS,
                                                                color.L_CHANNELS):
                raise ValueError(f"classification targets must be Lab ab {color.AB_CHANNELS} or "
                                 f"L {color.L_CHANNELS}, got {half['targets']}; use a 'reg' head")
        self.halves = halves
        self.names = [half_name(h) or f"half{i}" for i, h in enumerate(halves)]
        self.k, self.sigma, self.class_weights = k, sigma, class_weights
        self.temperature = temperature

    def __call__(self, model, rgb):
        lab = color.rgb_to_lab(rgb)  # (B, 3, H, W)
        outputs = model(lab)  # one (B, Q_i, h_i, w_i) per half
        if torch.is_tensor(outputs):  # a half trained alone
            outputs = [outputs]
        total, logs = 0.0, {}
        for half, name, out in zip(self.halves, self.names, outputs):
            # Ground truth at the head's resolution, nearest sampling: (B, C, h, w).
            target = F.interpolate(color.select_channels(lab, half["targets"]),
                                   size=out.shape[-2:], mode="nearest")
            loss = self._half_loss(out, target, half["targets"], half["head"])
            logs[f"loss_{name}"] = loss.detach()
            total = total + loss
        logs["loss"] = total.detach()
        return total, logs, Prediction(outputs, lab[:, :1], lab)

    def _half_loss(self, out, target, channels, head):
        if head == "reg":
            if channels == color.L_CHANNELS:
                return losses.l2_regression(out, color.normalize_l(target, "unit"))
            if channels == color.AB_CHANNELS:
                return losses.l2_regression(out, target / color.AB_SCALE)
            raise ValueError(f"no regression normalisation for Lab channels {channels}")
        if channels == color.L_CHANNELS:
            return losses.hard_cross_entropy(out, color.quantize_l(target))
        idx, w = color.soft_encode(target, self.k, self.sigma)  # (B, k, h, w)
        pixel_w = None
        if self.class_weights is not None:
            pixel_w = self.class_weights.to(out.device)[idx[:, 0]]
        return losses.soft_cross_entropy(out, idx, w, pixel_w)

    def _half(self, name):
        """Index of the half called ``name``, or None when it is not trained."""
        return self.names.index(name) if name in self.names else None

    def predict_ab(self, pred):
        """The L -> ab half's prediction as ab (B, 2, h, w)."""
        i = self._half("l2ab")
        return color.decode_ab(pred.output[i], self.halves[i]["head"], self.temperature)

    def predict_l(self, pred):
        """The ab -> L half's prediction as L (B, 1, h, w)."""
        i = self._half("ab2l")
        return color.decode_l(pred.output[i], self.halves[i]["head"], self.temperature)

    def new_metrics(self):
        """Colour metrics of the L -> ab half (if trained), with the all-grey baseline."""
        if self._half("l2ab") is None:
            return {}
        return {"model": ColorMetrics(), "grey": ColorMetrics()}

    def update_metrics(self, metrics, rgb, pred):
        if metrics:
            update_colour_metrics(metrics, self.predict_ab(pred), pred.true_ab(rgb), pred.L)

    def histograms(self, pred):
        return {f"predicted_bins_{name}": out.argmax(1)
                for name, half, out in zip(self.names, self.halves, pred.output)
                if half["head"] == "cl"}

    def visuals(self, rgb, pred):
        """L -> ab colorization beside the truth, and ab -> L lightness beside the true L."""
        rows = {"input_L": _grey(pred.L)}
        if self._half("l2ab") is not None:
            rows["l2ab_colour"] = color.join_lab(pred.L, self.predict_ab(pred))
            rows["truth"] = color.to_float_rgb(rgb)
        if self._half("ab2l") is not None:
            pred_l = F.interpolate(self.predict_l(pred), size=pred.L.shape[-2:],
                                   mode="bilinear", align_corners=False)
            rows["ab2l_lightness"] = _grey(pred_l)
            rows["true_lightness"] = _grey(pred.L)
        return rows


# --- autoencoder ------------------------------------------------------------------------------

# Raw Lab -> the network's scale: L (L - 50) / 100, ab / 110; the neutral grey (50, 0, 0) is 0.
_LAB_SHIFT = (50.0, 0.0, 0.0)
_LAB_SCALE = (100.0, color.AB_SCALE, color.AB_SCALE)


def _per_channel(values, like):
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)


def normalize_lab(lab):
    """Raw Lab (B, 3, H, W) -> (L - 50) / 100, a / 110, b / 110: the autoencoder's targets."""
    return (lab - _per_channel(_LAB_SHIFT, lab)) / _per_channel(_LAB_SCALE, lab)


def corrupt_lab(lab, noise=0.0, drop=0.0, generator=None):
    """A corrupted copy of a raw Lab batch: the denoising autoencoder's input.

    Args:
        lab: (B, 3, H, W) raw Lab.
        noise: standard deviation of Gaussian noise added to every channel, in the network's
            units (so 0.1 is 10 L units and 11 ab units).
        drop: probability that a pixel is dropped: its three channels replaced by the neutral
            grey (L 50, a 0, b 0), which the network sees as 0. Each pixel independently;
            the split-brain paper's "drop" autoencoder drops half (0.5).
        generator: a ``torch.Generator`` on ``lab``'s device, or None for the global one.

    Returns:
        (B, 3, H, W); ``lab`` itself when both are 0.
    """
    if noise < 0 or not 0 <= drop < 1:
        raise ValueError(f"corruption needs noise >= 0 and 0 <= drop < 1, got noise={noise}, "
                         f"drop={drop}")
    x = lab
    if noise > 0:
        x = x + noise * _per_channel(_LAB_SCALE, lab) * torch.randn(
            lab.shape, generator=generator, device=lab.device, dtype=lab.dtype)
    if drop > 0:
        b, _, h, w = lab.shape
        keep = torch.rand((b, 1, h, w), generator=generator, device=lab.device) >= drop
        x = torch.where(keep, x, _per_channel(_LAB_SHIFT, lab))
    return x


class AutoencoderObjective:
    """Lab -> Lab reconstruction (L2), from a clean or a corrupted input.

    The autoencoder baselines of Zhang, Isola, Efros, "Split-Brain Autoencoders", CVPR 2017
    (Table 2): a plain autoencoder (``noise = drop = 0``) and a denoising one. The target is
    always the clean image, normalised by :func:`normalize_lab` and sampled at the head's
    resolution (nearest, as the cross-channel targets are); only the input is corrupted.

    Corruption is drawn from a generator seeded by ``seed`` and the number of training
    steps taken (``step``, which a resumed run sets), so a resumed run corrupts its batches
    exactly as an uninterrupted one; evaluation (the model in eval mode) uses one fixed draw.

    Args:
        noise, drop: see :func:`corrupt_lab`.
        seed: the run's seed.
    """

    def __init__(self, noise=0.0, drop=0.0, seed=0):
        corrupt_lab(torch.zeros(1, 3, 1, 1), noise, drop)  # validates both
        self.noise, self.drop, self.seed = noise, drop, seed
        self.step = 0
        self.class_weights = None  # no colour classes; kept for the shared set-up code

    def _generator(self, device, training):
        if self.noise == 0 and self.drop == 0:
            return None
        # Training step s draws from seed (seed, s); evaluation always from (seed, -1).
        index = self.step if training else -1
        return torch.Generator(device=device).manual_seed(
            (self.seed * 1_000_003 + index) % (2 ** 63))

    def __call__(self, model, rgb):
        """Loss of ``model`` on an sRGB batch (B, 3, H, W), uint8 or float in [0, 1]."""
        lab = color.rgb_to_lab(rgb)  # (B, 3, H, W)
        training = model.training and torch.is_grad_enabled()
        x = corrupt_lab(lab, self.noise, self.drop, self._generator(lab.device, training))
        if training:
            self.step += 1
        output = model(x)  # (B, 3, h, w) normalised Lab
        target = F.interpolate(normalize_lab(lab), size=output.shape[-2:], mode="nearest")
        loss = losses.l2_regression(output, target)
        return loss, {"loss": loss.detach()}, _Reconstruction(output, lab[:, :1], lab, x)

    def new_metrics(self):
        return {}  # no colour prediction to score

    def update_metrics(self, metrics, rgb, pred):
        pass

    def histograms(self, pred):
        return {}

    def visuals(self, rgb, pred):
        """The (corrupted) input, the reconstruction (upsampled) and the truth, as sRGB."""
        size = pred.L.shape[-2:]
        recon = pred.output * _per_channel(_LAB_SCALE, pred.output) + _per_channel(
            _LAB_SHIFT, pred.output)
        recon = F.interpolate(recon, size=size, mode="bilinear", align_corners=False)
        return {"input": color.lab_to_rgb(_in_gamut(pred.input)),
                "reconstruction": color.lab_to_rgb(_in_gamut(recon)),
                "truth": color.to_float_rgb(rgb)}


def _in_gamut(lab):
    """Raw Lab clamped to L in [0, 100], ab in [-110, 110], for display."""
    return torch.cat([lab[:, :1].clamp(0, 100), lab[:, 1:].clamp(-110, 110)], dim=1)


@dataclass
class _Reconstruction(Prediction):
    input: torch.Tensor = None  # (B, 3, H, W): what the network saw


# --- user hints -------------------------------------------------------------------------------

class HintsObjective:
    """L + simulated colour hints -> ab (Zhang, Zhu et al., SIGGRAPH 2017).

    Hints are drawn from each image's own ab by a :class:`splitbrain.hints.HintSampler` (some
    images get none, so the automatic mode is trained too). The network (an ECCV16 with
    ``hints=True``) outputs ab / 110 and the logits of the ab distribution. The loss is the
    Huber loss of the ab (in Lab units, ``delta`` = 1 as in the official code: L1 beyond one ab
    unit) plus ``cl_weight`` times the soft cross-entropy of the distribution, which only
    suggests colours at a clicked point. Grey images get weight 0 when ``grey_mask`` is on.

    Hints are drawn from a generator seeded by ``seed``, the training step (``step``, which a
    resumed run sets) and the process's ``rank`` under torchrun (each rank's images get their
    own draw, not a copy of rank 0's), so a resumed run sees exactly the hints of an
    uninterrupted one; evaluation (the model in eval mode) uses one fixed draw per rank.

    Args:
        sampler: a ``HintSampler``.
        k, sigma: soft encoding of the distribution's targets.
        class_weights: (313,) weights for the rebalanced AuC of validation, or None.
        grey_mask, temperature: as for :class:`ColorizationObjective`.
        cl_weight: the distribution's share of the loss (>= 0).
        huber_delta: where the ab loss turns from quadratic to linear, in ab units.
        seed: the run's seed.
        rank: this process's rank under torchrun (0 alone).
    """

    head = "reg"

    def __init__(self, sampler, k=10, sigma=5.0, class_weights=None, grey_mask=True,
                 temperature=0.38, cl_weight=1.0, huber_delta=1.0, seed=0, rank=0):
        self.sampler, self.k, self.sigma, self.rank = sampler, k, sigma, rank
        self.class_weights, self.grey_mask, self.temperature = class_weights, grey_mask, temperature
        self.cl_weight, self.huber_delta, self.seed = cl_weight, huber_delta, seed
        self.step = 0

    def _generator(self, device, training):
        index = self.step if training else -1
        return torch.Generator(device=device).manual_seed(
            (self.seed * 1_000_003 + index + 7 + self.rank * 0x9E3779B97F4A7C15) % (2 ** 63))

    def __call__(self, model, rgb):
        from .hints import hint_input

        lab = color.rgb_to_lab(rgb)  # (B, 3, H, W)
        training = model.training and torch.is_grad_enabled()
        hint_ab, mask = self.sampler(lab[:, 1:], self._generator(lab.device, training))
        if training:
            self.step += 1
        output = model(hint_input(lab[:, :1], hint_ab, mask))  # (B, 2 + 313, h, w)
        reg, logits = output[:, :2], output[:, 2:]
        ab = F.interpolate(lab[:, 1:], size=output.shape[-2:], mode="nearest")  # (B, 2, h, w)
        logs, keep = {}, None
        per_pixel = F.huber_loss(reg.float() * color.AB_SCALE, ab, reduction="none",
                                 delta=self.huber_delta).sum(1)  # (B, h, w)
        if self.grey_mask:
            keep = color.colorful_mask(ab).float()  # (B,)
            per_pixel = per_pixel * keep[:, None, None]
            logs["grey_fraction"] = 1 - keep.mean()
        loss_reg = per_pixel.mean()
        idx, w = color.soft_encode(ab, self.k, self.sigma)
        pixel_w = None if keep is None else keep[:, None, None].expand(-1, *ab.shape[-2:])
        loss_cl = losses.soft_cross_entropy(logits, idx, w, pixel_w)
        loss = loss_reg + self.cl_weight * loss_cl
        logs.update(loss_ab=loss_reg.detach(), loss_distribution=loss_cl.detach(),
                    hint_pixels=mask.mean(), loss=loss.detach())
        return loss, logs, _Hinted(output, lab[:, :1], lab, hint_ab, mask)

    def predict_ab(self, pred):
        """The ab regression, in Lab units, at the network's resolution (B, 2, h, w)."""
        return pred.output[:, :2].float() * color.AB_SCALE

    def new_metrics(self):
        return {"model": ColorMetrics(), "grey": ColorMetrics()}

    def update_metrics(self, metrics, rgb, pred):
        update_colour_metrics(metrics, self.predict_ab(pred), pred.true_ab(rgb), pred.L,
                              self.class_weights)

    def histograms(self, pred):
        return {"predicted_bins": pred.output[:, 2:].argmax(1)}

    def visuals(self, rgb, pred):
        """Grey input with the hints painted on, the prediction, the truth."""
        hinted = color.lab_to_rgb(torch.cat([pred.L, pred.hint_ab], 1))
        shown = torch.where(pred.mask.bool(), hinted, _grey(pred.L))
        return {"input_hints": shown,
                "prediction": color.join_lab(pred.L, self.predict_ab(pred)),
                "truth": color.to_float_rgb(rgb)}


@dataclass
class _Hinted(Prediction):
    hint_ab: torch.Tensor = None  # (B, 2, H, W): the hints the network saw
    mask: torch.Tensor = None     # (B, 1, H, W)
