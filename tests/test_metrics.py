"""Colour metrics against hand computations, numpy formulas and skimage."""

import math

import numpy as np
import pytest
import skimage.data
import skimage.metrics
import torch

from splitbrain import color
from splitbrain.metrics import ColorMetrics, ab_auc, auc_thresholds, colourfulness, psnr

THRESHOLDS = range(151)  # 0..150 in steps of 1, written out independently of the code


def random_batch(seed, b=2, h=6, w=5):
    """Random Lab batch: L (B, 1, H, W), true and predicted ab (B, 2, H, W)."""
    g = torch.Generator().manual_seed(seed)
    L = torch.rand(b, 1, h, w, generator=g) * 100
    true_ab = (torch.rand(b, 2, h, w, generator=g) - 0.5) * 160
    pred_ab = true_ab + torch.randn(b, 2, h, w, generator=g) * 40
    weights = torch.rand(b, h, w, generator=g) * 6 + 0.1
    return L, true_ab, pred_ab, weights


def reference_auc(err, weights=None):
    """100 * mean over the 151 thresholds of the (weighted) fraction with error <= t, in numpy."""
    err = np.asarray(err, dtype=np.float64).ravel()
    w = np.ones_like(err) if weights is None else np.asarray(weights, np.float64).ravel()
    return 100 * np.mean([w[err <= t].sum() / w.sum() for t in THRESHOLDS])


def photo_rgb(name="astronaut", stride=4):
    img = getattr(skimage.data, name)()[::stride, ::stride]
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255


# --- AuC ------------------------------------------------------------------------------------

def test_auc_of_perfect_prediction_is_100():
    _, true_ab, _, weights = random_batch(0)
    assert ab_auc(true_ab, true_ab).item() == 100
    assert ab_auc(true_ab, true_ab, weights).item() == pytest.approx(100, abs=1e-12)


@pytest.mark.parametrize("e", [0, 1, 2.5, 37, 149.5, 150, 151, 400])
def test_auc_of_constant_error_matches_hand_formula(e):
    _, true_ab, _, _ = random_batch(1)
    true_ab = true_ab.round()  # integers, so adding e to a is exact in fp32
    pred_ab = true_ab.clone()
    pred_ab[:, 0] += e
    expected = 100 * sum(t >= e for t in THRESHOLDS) / 151
    assert ab_auc(pred_ab, true_ab).item() == pytest.approx(expected, abs=1e-12)


def test_auc_uses_the_l2_distance_in_the_ab_plane():
    true_ab = torch.zeros(1, 2, 2, 2)
    pred_ab = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)  # error 5, not 7
    assert ab_auc(pred_ab, true_ab).item() == pytest.approx(100 * 146 / 151, abs=1e-12)


def test_auc_matches_brute_force_on_random_errors():
    _, true_ab, pred_ab, weights = random_batch(2, b=3, h=10, w=9)
    err = (pred_ab - true_ab).double().pow(2).sum(1).sqrt().numpy()
    assert ab_auc(pred_ab, true_ab).item() == pytest.approx(reference_auc(err), abs=1e-10)
    assert ab_auc(pred_ab, true_ab, weights).item() == pytest.approx(
        reference_auc(err, weights.numpy()), abs=1e-10)


def test_rebalanced_auc_with_equal_weights_equals_raw():
    _, true_ab, pred_ab, _ = random_batch(3)
    raw = ab_auc(pred_ab, true_ab).item()
    equal = torch.full(true_ab[:, 0].shape, 2.7)
    assert ab_auc(pred_ab, true_ab, equal).item() == pytest.approx(raw, abs=1e-10)


def test_rebalanced_auc_hand_weighted_example():
    # Two pixels: one exact with weight 3, one off by 10 in b with weight 1. For t < 10 the
    # weighted fraction within t is 3/4, from t = 10 on it is 1.
    true_ab = torch.zeros(1, 2, 1, 2)
    pred_ab = torch.tensor([[[[0.0, 0.0]], [[0.0, 10.0]]]])
    weights = torch.tensor([[[3.0, 1.0]]])
    expected = 100 * (10 * 0.75 + 141 * 1.0) / 151
    assert ab_auc(pred_ab, true_ab, weights).item() == pytest.approx(expected, abs=1e-12)
    # (B, 1, H, W) weights mean the same thing.
    assert ab_auc(pred_ab, true_ab, weights[:, None]).item() == pytest.approx(expected, abs=1e-12)
    # Unweighted, the same two pixels give 1/2 below 10.
    assert ab_auc(pred_ab, true_ab).item() == pytest.approx(100 * (5 + 141) / 151, abs=1e-12)


def test_auc_with_coarser_thresholds():
    assert auc_thresholds(150, 10).tolist() == list(range(0, 151, 10))
    true_ab = torch.zeros(1, 2, 1, 1)
    pred_ab = torch.tensor([25.0, 0.0]).view(1, 2, 1, 1)
    # Thresholds 0, 10, ..., 150: the error 25 is within 30..150, 13 of the 16.
    assert ab_auc(pred_ab, true_ab, step=10).item() == pytest.approx(100 * 13 / 16, abs=1e-12)
    with pytest.raises(ValueError, match="multiple"):
        auc_thresholds(150, 7)


# --- PSNR and colourfulness -----------------------------------------------------------------

def test_psnr_matches_skimage():
    g = torch.Generator().manual_seed(4)
    true = torch.rand(3, 3, 8, 7, generator=g)
    pred = (true + 0.1 * torch.randn(3, 3, 8, 7, generator=g)).clamp(0, 1)
    ours = psnr(pred, true)
    for i in range(3):
        ref = skimage.metrics.peak_signal_noise_ratio(true[i].double().numpy(),
                                                      pred[i].double().numpy(), data_range=1)
        assert ours[i].item() == pytest.approx(ref, rel=1e-6)


def test_colourfulness_of_grey_is_zero():
    levels = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(5))
    assert torch.all(colourfulness(levels.expand(-1, 3, -1, -1)) == 0)


def test_colourfulness_of_two_colours_matches_numpy_formula():
    # 12 pixels of an orange and 4 of a teal, on the 0..255 scale.
    pixels = np.array([[230, 120, 30]] * 12 + [[20, 160, 170]] * 4, dtype=np.float64)
    R, G, B = pixels.T
    rg, yb = R - G, 0.5 * (R + G) - B
    expected = (np.sqrt(np.std(rg) ** 2 + np.std(yb) ** 2)
                + 0.3 * np.sqrt(np.mean(rg) ** 2 + np.mean(yb) ** 2))
    rgb = torch.from_numpy(pixels.T.reshape(1, 3, 4, 4) / 255)
    assert colourfulness(rgb).item() == pytest.approx(expected, rel=1e-9)


# --- the accumulator ------------------------------------------------------------------------

def test_streaming_over_three_batches_equals_one_shot():
    batches = [random_batch(10 + i, b=b) for i, b in enumerate([1, 3, 2])]
    stream = ColorMetrics()
    for L, true_ab, pred_ab, weights in batches:
        stream.update(pred_ab, true_ab, L, weights)
    L, true_ab, pred_ab, weights = (torch.cat(t) for t in zip(*batches))
    once = ColorMetrics()
    once.update(pred_ab, true_ab, L, weights)
    s, o = stream.compute(), once.compute()
    assert set(s) == {"auc", "auc_rebalanced", "psnr", "colourfulness"}
    assert s["auc"] == o["auc"] == ab_auc(pred_ab, true_ab).item()  # integer counts: exact
    assert s["auc_rebalanced"] == pytest.approx(o["auc_rebalanced"], rel=1e-12)
    assert s["auc_rebalanced"] == pytest.approx(ab_auc(pred_ab, true_ab, weights).item(),
                                                rel=1e-12)
    # The fp32 Lab -> sRGB conversion may round differently for a different batch size.
    assert s["psnr"] == pytest.approx(o["psnr"], rel=1e-6)
    assert s["colourfulness"] == pytest.approx(o["colourfulness"], rel=1e-6)


def test_accumulator_psnr_and_colourfulness_are_per_image_means():
    L, true_ab, pred_ab, _ = random_batch(20, b=3)
    m = ColorMetrics()
    m.update(pred_ab, true_ab, L)
    out = m.compute()
    assert "auc_rebalanced" not in out  # no weights given
    pred_rgb = color.lab_to_rgb(torch.cat([L, pred_ab], 1)).double().numpy()
    true_rgb = color.lab_to_rgb(torch.cat([L, true_ab], 1)).double().numpy()
    ref_psnr = np.mean([skimage.metrics.peak_signal_noise_ratio(t, p, data_range=1)
                        for t, p in zip(true_rgb, pred_rgb)])
    assert out["psnr"] == pytest.approx(ref_psnr, rel=1e-6)
    ref_m = []
    for img in pred_rgb * 255:
        rg, yb = img[0] - img[1], 0.5 * (img[0] + img[1]) - img[2]
        ref_m.append(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    assert out["colourfulness"] == pytest.approx(np.mean(ref_m), rel=1e-6)


def test_grey_baseline_on_a_photo():
    lab = color.rgb_to_lab(photo_rgb("astronaut"))  # (1, 3, 128, 128)
    L, true_ab = lab[:, :1], lab[:, 1:]
    weights = torch.rand(true_ab[:, 0].shape, generator=torch.Generator().manual_seed(6)) + 0.5
    grey, perfect = ColorMetrics(), ColorMetrics()
    grey.update(torch.zeros_like(true_ab), true_ab, L, weights)
    perfect.update(true_ab, true_ab, L, weights)
    g, p = grey.compute(), perfect.compute()
    assert p["auc"] == 100 and p["auc_rebalanced"] == pytest.approx(100)
    assert 50 < g["auc"] < 100 and 50 < g["auc_rebalanced"] < 100
    assert math.isfinite(g["psnr"]) and g["psnr"] < p["psnr"]  # perfect: +inf
    # The grey prediction's sRGB is R = G = B up to the Lab round trip.
    assert g["colourfulness"] < 0.1 < p["colourfulness"]


def test_empty_and_inconsistent_accumulators():
    m = ColorMetrics()
    assert all(math.isnan(v) for v in m.compute().values())
    L, true_ab, pred_ab, weights = random_batch(30)
    m.update(pred_ab, true_ab, L, weights)
    m.update(pred_ab, true_ab, L)
    with pytest.raises(ValueError, match="all or none"):
        m.compute()
    m.reset()
    m.update(pred_ab, true_ab, L)
    assert m.compute()["auc"] == ab_auc(pred_ab, true_ab).item()
