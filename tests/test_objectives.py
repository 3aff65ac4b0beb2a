"""Training objectives against independent references: skimage Lab, brute-force bins, dense CE."""

import numpy as np
import pytest
import skimage.color
import skimage.data
import torch
import torch.nn.functional as F

from splitbrain import color
from splitbrain.metrics import ColorMetrics
from splitbrain.models import build_model
from splitbrain.objectives import ColorizationObjective, SplitBrainObjective


def photo_batch(n=2, size=32):
    """uint8 sRGB crops of a real photo, (n, 3, size, size)."""
    img = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1)
    return torch.stack([img[:, 40 * i:40 * i + size, 60 * i:60 * i + size] for i in range(n)])


def skimage_lab(rgb):
    """(B, 3, H, W) uint8 -> float64 Lab (B, 3, H, W) through skimage, independently of kornia."""
    arr = rgb.permute(0, 2, 3, 1).numpy()
    return torch.from_numpy(np.stack([skimage.color.rgb2lab(a) for a in arr])).permute(0, 3, 1, 2)


class FixedOutput(torch.nn.Module):
    """A 'network' that ignores its input and returns the given tensor (with a gradient)."""

    def __init__(self, output):
        super().__init__()
        self.output = torch.nn.Parameter(output.clone())

    def forward(self, x):
        return self.output


def reference_soft_ce(logits, true_ab, k, sigma, class_weights, keep):
    """-mean_pixels w * sum_q Z_q log softmax(logits)_q with a dense, brute-force target."""
    centres = color.ab_bin_centres().double()
    ab = true_ab.double().permute(0, 2, 3, 1).reshape(-1, 2)  # (N, 2)
    d2 = ((ab[:, None] - centres[None]) ** 2).sum(-1)  # (N, 313)
    near = d2.topk(k, largest=False)
    target = torch.zeros_like(d2)
    w = torch.exp(-near.values / (2 * sigma ** 2))
    target.scatter_(1, near.indices, w / w.sum(1, keepdim=True))
    B, _, h, w_ = true_ab.shape
    log_prob = F.log_softmax(logits.double(), 1).permute(0, 2, 3, 1).reshape(-1, 313)
    per_pixel = -(target * log_prob).sum(1)
    pixel_w = class_weights.double()[near.indices[:, 0]]
    pixel_w = pixel_w * keep.double().repeat_interleave(h * w_)
    return (per_pixel * pixel_w).mean()


def test_colorization_loss_matches_a_dense_brute_force_reference():
    rgb = photo_batch()
    grey = rgb.float().mean(1, keepdim=True).round().byte().expand(-1, 3, -1, -1)
    rgb = torch.cat([rgb, grey])  # the grey image must get weight 0
    logits = torch.randn(4, 313, 8, 8, generator=torch.Generator().manual_seed(0))
    weights = torch.rand(313, generator=torch.Generator().manual_seed(1)) + 0.5
    objective = ColorizationObjective("cl", k=10, sigma=5.0, class_weights=weights)
    loss, logs, pred = objective(FixedOutput(logits), rgb)
    # Ground truth at the output resolution: every 4th pixel, converted by skimage.
    true_ab = skimage_lab(rgb)[:, 1:, ::4, ::4]
    keep = torch.tensor([1.0, 1.0, 0.0, 0.0])
    ref = reference_soft_ce(logits, true_ab, 10, 5.0, weights, keep)
    assert float(loss.detach()) == pytest.approx(float(ref), rel=2e-3)
    assert float(logs["grey_fraction"]) == pytest.approx(0.5)
    assert pred.output.shape == logits.shape and pred.lab is None  # no full Lab in training
    torch.testing.assert_close(pred.L.double(), skimage_lab(rgb)[:, :1], atol=0.02, rtol=0)


def test_regression_loss_is_l2_on_ab_over_110():
    rgb = photo_batch()
    out = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.3
    loss, _, _ = ColorizationObjective("reg", grey_mask=False)(FixedOutput(out), rgb)
    target = skimage_lab(rgb)[:, 1:, ::4, ::4] / 110
    ref = (out.double() - target).square().sum(1).mean()
    assert float(loss.detach()) == pytest.approx(float(ref), rel=1e-3)


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="unknown head 'classification'; valid: cl, reg"):
        ColorizationObjective("classification")


def test_temperature_belongs_to_the_objective():
    rgb = photo_batch()
    logits = torch.randn(2, 313, 8, 8, generator=torch.Generator().manual_seed(0))
    objective = ColorizationObjective("cl", class_weights=torch.ones(313), temperature=1.0)
    _, _, pred = objective(FixedOutput(logits), rgb)
    mean = objective.predict_ab(pred)
    objective.temperature = 0
    mode = objective.predict_ab(pred)
    centres = color.ab_bin_centres()
    torch.testing.assert_close(mean, torch.einsum("bqhw,qc->bchw", logits.softmax(1), centres))
    torch.testing.assert_close(mode, centres[logits.argmax(1)].permute(0, 3, 1, 2))


def test_validation_metrics_equal_those_of_an_independent_full_resolution_conversion():
    rgb = photo_batch()
    logits = torch.randn(2, 313, 8, 8, generator=torch.Generator().manual_seed(0))
    weights = torch.rand(313, generator=torch.Generator().manual_seed(1)) + 0.5
    objective = ColorizationObjective("cl", class_weights=weights, temperature=0.38)
    _, _, pred = objective(FixedOutput(logits), rgb)
    metrics = objective.new_metrics()
    objective.update_metrics(metrics, rgb, pred)
    # The reference: kornia's full Lab of the batch, the same decoded prediction.
    lab = color.rgb_to_lab(rgb)
    pred_ab = F.interpolate(color.annealed_mean(logits, color.ab_bin_centres(), 0.38),
                            size=(32, 32), mode="bilinear", align_corners=False)
    ref = ColorMetrics()
    ref.update(pred_ab, lab[:, 1:], lab[:, :1], weights[color.nearest_ab_bin(lab[:, 1:])])
    ours, theirs = metrics["model"].compute(), ref.compute()
    for key in theirs:
        assert ours[key] == pytest.approx(theirs[key], abs=0.05), key


@pytest.mark.parametrize("heads", [["cl", "cl"], ["reg", "cl"]])
def test_split_brain_loss_is_the_sum_of_independent_half_losses(heads):
    torch.manual_seed(0)
    model = build_model("splitbrain_alexnet_small", heads=heads).eval()
    objective = SplitBrainObjective(model.split, k=1)
    assert objective.names == ["l2ab", "ab2l"]
    rgb = photo_batch(2, 96)
    total, logs, pred = objective(model, rgb)
    lab = skimage_lab(rgb).float()
    out_ab, out_l = pred.output
    h, w = out_ab.shape[-2:]
    true_ab = F.interpolate(lab[:, 1:], size=(h, w), mode="nearest")
    true_l = F.interpolate(lab[:, :1], size=out_l.shape[-2:], mode="nearest")
    if heads[0] == "cl":
        d2 = ((true_ab.permute(0, 2, 3, 1)[..., None, :] - color.ab_bin_centres()) ** 2).sum(-1)
        ref_ab = F.cross_entropy(out_ab, d2.argmin(-1))
    else:
        ref_ab = (out_ab - true_ab / 110).square().sum(1).mean()
    ref_l = F.cross_entropy(out_l, (true_l[:, 0] / 2).floor().long().clamp(0, 49))
    assert float(logs["loss_l2ab"]) == pytest.approx(ref_ab.item(), rel=1e-3)
    assert float(logs["loss_ab2l"]) == pytest.approx(ref_l.item(), rel=1e-3)
    assert float(total.detach()) == pytest.approx((ref_ab + ref_l).item(), rel=1e-3)
    torch.testing.assert_close(pred.lab, color.rgb_to_lab(rgb))


def test_split_brain_half_alone_has_no_colour_metrics_but_draws_lightness():
    model = build_model("splitbrain_alexnet_small", half="ab2l").eval()
    objective = SplitBrainObjective([model.spec])
    assert objective.names == ["ab2l"] and objective.new_metrics() == {}
    rgb = photo_batch(2, 96)
    _, logs, pred = objective(model, rgb)
    assert set(logs) == {"loss", "loss_ab2l"}
    rows = objective.visuals(rgb, pred)
    assert set(rows) == {"input_L", "ab2l_lightness", "true_lightness"}
    assert all(r.shape == (2, 3, 96, 96) for r in rows.values())
