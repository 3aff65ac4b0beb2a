"""What a training step optimises, per task: targets built on the device, then the loss.

An objective turns a batch of sRGB images into a loss (and the numbers worth logging), and a
trained model's output back into colours. Lab conversion and soft encoding run here, batched
on the training device, not per image in the data workers.
"""

import torch
import torch.nn.functional as F

from . import color, losses

LOSSES = ("classification", "regression")


def decode_ab(output, head, temperature=0.38, centres=None):
    """Network output at its own resolution -> ab in Lab units, (B, 2, h, w).

    Args:
        output: (B, 313, h, w) logits for a "classification" head, (B, 2, h, w) ab / AB_SCALE
            for a "regression" head.
        head: "classification" or "regression".
        temperature: annealed-mean temperature for a classification head.
        centres: (313, 2) bin centres (defaults to the standard 313).
    """
    if head == "regression":
        return output.float() * color.AB_SCALE
    if centres is None:
        centres = color.ab_bin_centres(device=output.device)
    return color.annealed_mean(output, centres, temperature)


def join_lab(L, ab):
    """Full-resolution L with ab upsampled (bilinear) to its size -> sRGB (B, 3, H, W)."""
    ab = F.interpolate(ab.float(), size=L.shape[-2:], mode="bilinear", align_corners=False)
    return color.lab_to_rgb(torch.cat([L.float(), ab], dim=1))


def update_colour_metrics(metrics, rgb, pred_ab, class_weights=None):
    """Add a batch to ``{"model": ColorMetrics, "grey": ColorMetrics}`` at full resolution.

    Args:
        rgb: (B, 3, H, W) ground truth; pred_ab: (B, 2, h, w) predicted ab, upsampled here.
        class_weights: (313,) weights for the rebalanced AuC, or None.
    """
    lab = color.rgb_to_lab(rgb)  # (B, 3, H, W)
    L, true_ab = lab[:, :1], lab[:, 1:]
    pred_ab = F.interpolate(pred_ab, size=L.shape[-2:], mode="bilinear", align_corners=False)
    weights = None
    if class_weights is not None:
        weights = class_weights.to(rgb.device)[color.nearest_ab_bin(true_ab)]
    metrics["model"].update(pred_ab, true_ab, L, weights)
    metrics["grey"].update(torch.zeros_like(true_ab), true_ab, L, weights)


class ColorizationObjective:
    """L -> ab, as a class-rebalanced soft classification (Zhang et al., ECCV 2016) or L2.

    Args:
        loss: "classification" (cross-entropy over the 313 bins) or "regression" (L2 on ab).
        k, sigma: soft-encoding neighbours and Gaussian width (k = 1 gives 1-hot targets).
        class_weights: (313,) rebalancing weights, or None; also used for the rebalanced AuC.
        rebalance: weight each pixel's loss by its colour's class weight.
        grey_mask: give grey images inside a colour dataset weight 0.
    """

    def __init__(self, loss="classification", k=10, sigma=5.0, class_weights=None,
                 rebalance=True, grey_mask=True):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
        self.loss, self.k, self.sigma = loss, k, sigma
        self.class_weights = class_weights
        self.rebalance = rebalance and class_weights is not None
        self.grey_mask = grey_mask

    def __call__(self, model, rgb):
        """Loss of ``model`` on an sRGB batch (B, 3, H, W) in [0, 1].

        Returns:
            loss: scalar; logs: dict of scalar tensors; output: the network output.
        """
        L = color.lightness(rgb)  # (B, 1, H, W)
        output = model(L)  # (B, 313 or 2, h, w)
        ab = color.sample_ab(rgb, output.shape[-2:])  # (B, 2, h, w), ground truth at output res
        pixel_w = self._pixel_weights(ab)
        if self.loss == "regression":
            loss = losses.l2_regression(output, ab / color.AB_SCALE, pixel_w)
        else:
            idx, w = color.soft_encode(ab, self.k, self.sigma)  # (B, k, h, w) each
            if self.rebalance:
                # The first of the k bins is the nearest one; a pixel's weight is its bin's.
                cw = self.class_weights.to(ab.device)[idx[:, 0]]  # (B, h, w)
                pixel_w = cw if pixel_w is None else pixel_w * cw
            loss = losses.soft_cross_entropy(output, idx, w, pixel_w)
        logs = {"loss": loss.detach()}
        if self.grey_mask:
            logs["grey_fraction"] = 1 - color.colorful_mask(ab).float().mean()
        return loss, logs, output

    def _pixel_weights(self, ab):
        if not self.grey_mask:
            return None
        keep = color.colorful_mask(ab).float()  # (B,)
        return keep[:, None, None].expand(-1, *ab.shape[-2:])  # (B, h, w)

    def new_metrics(self):
        """Fresh colour-metrics accumulators: the model's, and the all-grey baseline's."""
        from .metrics import ColorMetrics
        return {"model": ColorMetrics(), "grey": ColorMetrics()}

    def update_metrics(self, metrics, rgb, output, temperature=0.38):
        """Add a batch's full-resolution colour errors to ``metrics`` (from :meth:`new_metrics`).

        The grey prediction (ab = 0) is accumulated alongside as the baseline.
        """
        update_colour_metrics(metrics, rgb, decode_ab(output, self.loss, temperature),
                              self.class_weights)

    def histograms(self, output):
        """Predicted bin of every pixel, for a TensorBoard histogram (classification only)."""
        return {"predicted_bins": output.argmax(1)} if self.loss == "classification" else {}

    def visuals(self, rgb, output, temperature=0.38):
        """Image rows for TensorBoard: grey input, prediction, ground truth, each (B, 3, H, W)."""
        L = color.lightness(rgb)
        pred = join_lab(L, decode_ab(output, self.loss, temperature))
        return {"input": L.expand(-1, 3, -1, -1) / 100, "prediction": pred,
                "truth": color.to_float_rgb(rgb)}


# --- split-brain ------------------------------------------------------------------------------

AB_CHANNELS, L_CHANNELS = [1, 2], [0]


def _normalise_lab(values, channels):
    """Lab channels -> regression units: L via the "unit" scheme, ab / AB_SCALE."""
    if channels == L_CHANNELS:
        return color.normalize_l(values, "unit")
    if channels == AB_CHANNELS:
        return values / color.AB_SCALE
    raise ValueError(f"no regression normalisation for Lab channels {channels}")


class SplitBrainObjective:
    """Each half of a split-brain model predicts the channels the other half sees.

    Zhang, Isola, Efros, "Split-Brain Autoencoders", CVPR 2017. For Lab, F1 sees L and
    predicts ab over the 313 bins; F2 sees ab and predicts L over 50 bins of width 2. Heads
    are "cl" (cross-entropy over bins; 1-hot targets unless ``k > 1``) or "reg" (L2). The total
    loss is the sum of the halves' losses; each is logged on its own.

    Args:
        halves: the model's split, ``[{"inputs": [...], "targets": [...], ...}, ...]``.
        heads: "cl" or "reg" per half.
        names: a name per half, used in logs.
        k, sigma: soft encoding of ab targets (k = 1: 1-hot, the paper's default).
        class_weights: (313,) rebalancing weights for ab classification, or None (default).
    """

    def __init__(self, halves, heads, names, k=1, sigma=5.0, class_weights=None):
        for half, head in zip(halves, heads):
            if head not in ("cl", "reg"):
                raise ValueError(f"unknown head {head!r}; valid: cl, reg")
            if head == "cl" and half["targets"] not in (AB_CHANNELS, L_CHANNELS):
                raise ValueError(f"classification targets must be Lab ab {AB_CHANNELS} or "
                                 f"L {L_CHANNELS}, got {half['targets']}; use a 'reg' head")
        self.halves, self.heads, self.names = halves, heads, names
        self.k, self.sigma, self.class_weights = k, sigma, class_weights

    def __call__(self, model, rgb):
        lab = color.rgb_to_lab(rgb)  # (B, 3, H, W)
        outputs = model(lab)  # one (B, Q_i, h_i, w_i) per half
        if torch.is_tensor(outputs):  # a half trained alone
            outputs = [outputs]
        total, logs = 0.0, {}
        for half, head, name, out in zip(self.halves, self.heads, self.names, outputs):
            # Ground truth at the head's resolution, nearest sampling: (B, C, h, w).
            target = F.interpolate(lab[:, half["targets"]], size=out.shape[-2:], mode="nearest")
            loss = self._half_loss(out, target, half["targets"], head)
            logs[f"loss_{name}"] = loss.detach()
            total = total + loss
        logs["loss"] = total.detach()
        return total, logs, outputs

    def _half_loss(self, out, target, channels, head):
        if head == "reg":
            return losses.l2_regression(out, _normalise_lab(target, channels))
        if channels == L_CHANNELS:
            return losses.hard_cross_entropy(out, color.quantize_l(target))
        idx, w = color.soft_encode(target, self.k, self.sigma)  # (B, k, h, w)
        pixel_w = None
        if self.class_weights is not None:
            pixel_w = self.class_weights.to(out.device)[idx[:, 0]]
        return losses.soft_cross_entropy(out, idx, w, pixel_w)

    def _half(self, targets):
        """Index of the half predicting ``targets``, or None when it is not trained."""
        return next((i for i, h in enumerate(self.halves) if h["targets"] == targets), None)

    def predict_ab(self, outputs, temperature=0.38):
        """The L -> ab half's prediction as ab (B, 2, h, w)."""
        i = self._half(AB_CHANNELS)
        head = "regression" if self.heads[i] == "reg" else "classification"
        return decode_ab(outputs[i], head, temperature)

    def predict_l(self, outputs, temperature=0.38):
        """The ab -> L half's prediction as L (B, 1, h, w)."""
        i = self._half(L_CHANNELS)
        if self.heads[i] == "reg":
            return color.denormalize_l(outputs[i].float(), "unit")
        return color.annealed_mean(outputs[i], color.l_bin_centres(), temperature)

    def new_metrics(self):
        """Colour metrics of the L -> ab half (if trained), with the all-grey baseline."""
        from .metrics import ColorMetrics
        if self._half(AB_CHANNELS) is None:
            return {}
        return {"model": ColorMetrics(), "grey": ColorMetrics()}

    def update_metrics(self, metrics, rgb, outputs, temperature=0.38):
        if not metrics:
            return
        update_colour_metrics(metrics, rgb, self.predict_ab(outputs, temperature))

    def histograms(self, outputs):
        return {f"predicted_bins_{name}": out.argmax(1)
                for name, head, out in zip(self.names, self.heads, outputs) if head == "cl"}

    def visuals(self, rgb, outputs, temperature=0.38):
        """L -> ab colorization beside the truth, and ab -> L lightness beside the true L."""
        L = color.rgb_to_lab(rgb)[:, :1]
        grey = lambda lightness: lightness.expand(-1, 3, -1, -1).clamp(0, 100) / 100  # noqa: E731
        rows = {"input_L": grey(L)}
        if self._half(AB_CHANNELS) is not None:
            rows["l2ab_colour"] = join_lab(L, self.predict_ab(outputs, temperature))
            rows["truth"] = color.to_float_rgb(rgb)
        if self._half(L_CHANNELS) is not None:
            pred_l = F.interpolate(self.predict_l(outputs, temperature), size=L.shape[-2:],
                                   mode="bilinear", align_corners=False)
            rows["ab2l_lightness"] = grey(pred_l)
            rows["true_lightness"] = grey(L)
        return rows
