"""The colour core against independent references: skimage for Lab, brute force for k-NN."""

import math

import numpy as np
import pytest
import skimage.color
import skimage.data
import torch

from splitbrain import color
from references import dense_target

# The bin table of docs/reference.md §1, written out independently of the code under test.
GAMUT_TABLE = """
-90 50 90 | -80 20 90 | -70 0 90 | -60 -20 90 | -50 -30 100 | -40 -40 100 | -30 -50 100
-20 -50 100 | -10 -60 100 | 0 -70 100 | 10 -80 90 | 20 -80 90 | 30 -90 90 | 40 -100 90
50 -100 80 | 60 -110 80 | 70 -110 80 | 80 -110 70 | 90 -110 70 | 100 -90 0
"""


def expected_centres():
    rows = [r.split() for r in GAMUT_TABLE.replace("\n", "|").split("|") if r.strip()]
    return [(int(a), b) for a, lo, hi in rows for b in range(int(lo), int(hi) + 1, 10)]


def brute_force_knn(ab, k):
    """Distances to every centre, sorted: (N, k) distances and indices, float64."""
    points = ab.permute(0, 2, 3, 1).reshape(-1, 2).double()
    dist = torch.cdist(points, color.ab_bin_centres(dtype=torch.float64))
    d, i = dist.sort(dim=1)
    return d[:, :k], i[:, :k]


def flat(t):
    """(B, k, H, W) -> (B*H*W, k)."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


# --- Lab ------------------------------------------------------------------------------------

def test_lab_matches_skimage_on_random_colours():
    rgb = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ours = color.rgb_to_lab(rgb).permute(0, 2, 3, 1).numpy()
    ref = skimage.color.rgb2lab(rgb.permute(0, 2, 3, 1).double().numpy())
    np.testing.assert_allclose(ours, ref, atol=2e-3)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_lab_matches_skimage_on_photos(name):
    img = getattr(skimage.data, name)()[::4, ::4]
    rgb = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    ours = color.rgb_to_lab(rgb)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, skimage.color.rgb2lab(img), atol=2e-3)


def test_lab_round_trip():
    rgb = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(color.lab_to_rgb(color.rgb_to_lab(rgb)), rgb, atol=1e-4, rtol=0)


def test_lightness_and_sampled_ab_equal_full_conversion():
    rgb = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(2))
    lab = color.rgb_to_lab(rgb)
    torch.testing.assert_close(color.lightness(rgb), lab[:, :1], atol=1e-4, rtol=0)
    # Sampling at a 1/4-resolution grid takes every 4th pixel (the official ground truth).
    torch.testing.assert_close(color.sample_ab(rgb, (4, 6)), lab[:, 1:, ::4, ::4],
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(color.sample_ab(rgb, (16, 24)), lab[:, 1:], atol=1e-4, rtol=0)


def test_eight_bit_input_gives_the_same_lab_as_float():
    u8 = torch.randint(0, 256, (2, 3, 16, 24), dtype=torch.uint8,
                       generator=torch.Generator().manual_seed(8))
    lab = color.rgb_to_lab(u8.float() / 255)
    torch.testing.assert_close(color.lightness(u8), lab[:, :1], atol=1e-4, rtol=0)
    torch.testing.assert_close(color.sample_ab(u8, (4, 6)), lab[:, 1:, ::4, ::4],
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(color.sample_ab(u8, (5, 7)),
                               color.sample_ab(u8.float() / 255, (5, 7)), atol=1e-4, rtol=0)


@pytest.mark.parametrize("scheme", sorted(color.L_NORMS))
def test_l_normalisation_round_trip(scheme):
    L = torch.linspace(0, 100, 11)
    torch.testing.assert_close(color.denormalize_l(color.normalize_l(L, scheme), scheme), L)
    assert color.normalize_l(torch.tensor(50.0), scheme) == 0


def test_unknown_l_normalisation_is_an_error():
    with pytest.raises(ValueError, match="unit"):
        color.normalize_l(torch.zeros(1), "imagenet")


# --- bins -----------------------------------------------------------------------------------

def test_bin_table_matches_design():
    centres = color.ab_bin_centres()
    assert centres.shape == (313, 2) == (color.NUM_AB_BINS, 2)
    assert [tuple(map(int, c)) for c in centres.tolist()] == expected_centres()
    # class index = position in (a, b)-ascending order
    assert [tuple(c) for c in centres.tolist()] == sorted(tuple(c) for c in centres.tolist())


def dense_ab_grid(step):
    """ab on a dense grid over [-128, 127]^2, including points on bin centres and midpoints."""
    axis = torch.arange(-128.0, 127.0 + 1e-9, step)
    a, b = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([a, b])[None]  # (1, 2, n, n)


@pytest.mark.parametrize("k", [1, 5, 10])
def test_soft_encoding_matches_brute_force_on_dense_grid(k):
    # Step 2.5 hits bin centres, the midpoints between bins (ties) and everything in between.
    ab = dense_ab_grid(2.5)
    idx, w = color.soft_encode(ab, k=k, sigma=5.0)
    assert idx.shape == w.shape == (1, k, *ab.shape[-2:])
    ref_d, _ = brute_force_knn(ab, k + 1)
    # The chosen bins are k nearest: their distances equal the k smallest distances, and the
    # first is the nearest (the order of the rest is not specified).
    centres = color.ab_bin_centres(dtype=torch.float64)
    points = ab.permute(0, 2, 3, 1).reshape(-1, 1, 2).double()
    chosen_d = (points - centres[flat(idx)]).norm(dim=-1)
    torch.testing.assert_close(chosen_d.sort(1).values, ref_d[:, :k], atol=1e-4, rtol=0)
    torch.testing.assert_close(chosen_d[:, 0], ref_d[:, 0], atol=1e-4, rtol=0)
    # Weights are the normalised Gaussian of those distances (tie order does not matter).
    ref_w = torch.exp(-ref_d[:, :k] ** 2 / (2 * 5.0**2))
    ref_w = ref_w / ref_w.sum(1, keepdim=True)
    torch.testing.assert_close(flat(w).double().sort(1).values, ref_w.sort(1).values,
                               atol=1e-4, rtol=0)
    # No bin is chosen twice for the same pixel.
    assert (flat(idx).sort(1).values.diff(dim=1) > 0).all()


def assert_k_nearest(ab, k):
    """soft_encode picks k nearest bins (distances equal brute force's), the nearest first."""
    idx, _ = color.soft_encode(ab, k=k, sigma=5.0)
    ref_d, _ = brute_force_knn(ab, k)
    points = ab.permute(0, 2, 3, 1).reshape(-1, 1, 2).double()
    chosen = (points - color.ab_bin_centres(dtype=torch.float64)[flat(idx)]).norm(dim=-1)
    torch.testing.assert_close(chosen.sort(1).values, ref_d, atol=1e-4, rtol=0)
    torch.testing.assert_close(chosen[:, 0], ref_d[:, 0], atol=1e-4, rtol=0)
    if k > 1:
        assert (flat(idx).sort(1).values.diff(dim=1) > 0).all()


@pytest.mark.parametrize("k", [1, 2, 3, 10, 16])
def test_soft_encoding_exact_where_neighbours_tie(k):
    # Around bin centres several bins tie for the k-th place, and the cells of the lookup
    # table have corners on multiples of 1/4: probe both, off by 0 and by tiny amounts.
    centres = color.ab_bin_centres()
    offsets = torch.tensor([0.0, 1e-3, -1e-3, 0.25, -0.25, 0.5, 5.0, -5.0, 2.5])
    oa, ob = torch.meshgrid(offsets, offsets, indexing="ij")
    points = centres[:, None, :] + torch.stack([oa.flatten(), ob.flatten()], -1)
    assert_k_nearest(points.reshape(-1, 2).T.reshape(1, 2, -1, 1), k)


@pytest.mark.parametrize("k", [1, 10])
def test_soft_encoding_exact_on_random_values_over_the_whole_range(k):
    ab = torch.rand(1, 2, 200, 200, generator=torch.Generator().manual_seed(k)) * 256 - 128
    assert_k_nearest(ab, k)


def test_soft_encoding_beyond_the_lookup_table_k_is_exact():
    # Large k is served by the candidate search alone.
    ab = torch.rand(1, 2, 20, 20, generator=torch.Generator().manual_seed(5)) * 220 - 110
    assert_k_nearest(ab, 40)


def test_lookup_table_serves_almost_every_pixel_of_photos():
    # The fast path (no search, no sort) must be the common one on real photos.
    from splitbrain.color import quantize
    cell_row = quantize._local_table(10, torch.device("cpu"))[0]
    nf = int(2 * quantize._TABLE_RANGE / quantize._FINE)
    served = []
    for name in ["astronaut", "chelsea", "coffee"]:
        rgb = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1)[None]
        x = color.sample_ab(rgb, [s // 2 for s in rgb.shape[-2:]]).permute(0, 2, 3, 1)
        cell = ((x.reshape(-1, 2) + quantize._TABLE_RANGE) / quantize._FINE).floor().long()
        served.append((cell_row[cell[:, 0] * nf + cell[:, 1]] >= 0).float().mean().item())
    assert min(served) > 0.95, served


def test_soft_encoding_random_values_dense_target_matches_reference():
    ab = torch.rand(3, 2, 7, 9, generator=torch.Generator().manual_seed(3)) * 255 - 128
    idx, w = color.soft_encode(ab, k=10, sigma=5.0)
    dense = dense_target(idx, w)
    assert dense.shape == (3, 313, 7, 9)
    torch.testing.assert_close(dense.sum(1), torch.ones(3, 7, 9))
    # Reference dense target from the brute-force neighbours.
    ref_d, ref_i = brute_force_knn(ab, 10)
    ref_w = torch.softmax(-ref_d**2 / 50, dim=1).float()
    ref = torch.zeros(3 * 7 * 9, 313).scatter_(1, ref_i, ref_w)
    torch.testing.assert_close(flat(dense), ref, atol=1e-4, rtol=0)


def test_nearest_bin_matches_brute_force():
    ab = torch.rand(2, 2, 31, 31, generator=torch.Generator().manual_seed(4)) * 255 - 128
    _, ref_i = brute_force_knn(ab, 1)
    assert torch.equal(color.nearest_ab_bin(ab).flatten(), ref_i[:, 0])


def test_soft_encoding_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        color.soft_encode(torch.zeros(1, 3, 4, 4))


def test_l_quantisation_round_trip():
    L = torch.linspace(0, 100, 1001).view(1, 1, 1, -1)
    q = color.quantize_l(L)
    assert q.min() == 0 and q.max() == color.NUM_L_BINS - 1
    centres = color.l_bin_centres()
    # Decoding a bin gives its centre, within half a bin width of the original value.
    assert (centres[q] - L[0, 0]).abs().max() <= color.L_BIN_WIDTH / 2 + 1e-6
    assert torch.equal(color.quantize_l(centres.view(1, 1, 1, -1))[0, 0], torch.arange(50))


# --- prior and rebalancing ------------------------------------------------------------------

def hand_smoothed(counts, sigma):
    """Gaussian smoothing over the ab plane as a direct sum over pairs of bins."""
    c = color.ab_bin_centres(dtype=torch.float64).numpy()
    d2 = ((c[:, None] - c[None]) ** 2).sum(-1)
    p = counts / counts.sum()
    s = np.exp(-d2 / (2 * sigma**2)) @ p
    return s / s.sum()


def test_prior_smoothing_matches_hand_computation():
    rng = np.random.default_rng(0)
    counts = np.zeros(313)
    counts[rng.choice(313, 40, replace=False)] = rng.integers(1, 1000, 40)
    ours = color.smooth_prior(torch.from_numpy(counts), sigma=5.0).numpy()
    np.testing.assert_allclose(ours, hand_smoothed(counts, 5.0), atol=1e-6)
    assert ours.sum() == pytest.approx(1.0)


def test_rebalancing_weights_match_hand_computation():
    rng = np.random.default_rng(1)
    prior = rng.random(313)
    prior[:100] = 0  # bins never seen must still get finite weights
    prior /= prior.sum()
    lam = 0.5
    w = 1 / ((1 - lam) * prior + lam / 313)
    w /= (prior * w).sum()
    ours = color.rebalance_weights(torch.from_numpy(prior), lam).double().numpy()
    np.testing.assert_allclose(ours, w, rtol=1e-5)
    assert np.isfinite(ours).all() and (prior * ours).sum() == pytest.approx(1.0, rel=1e-5)
    # Rare colours are boosted, common ones damped.
    assert ours[prior.argmax()] < 1 < ours[0]


def test_histogram_streams_over_batches():
    ab = torch.rand(6, 2, 8, 8, generator=torch.Generator().manual_seed(5)) * 200 - 100
    one = color.AbHistogram()
    one.update(ab)
    streamed = color.AbHistogram()
    for chunk in ab.split(2):
        streamed.update(chunk)
    assert torch.equal(one.counts, streamed.counts)
    assert one.counts.sum() == 6 * 64
    _, ref_i = brute_force_knn(ab, 1)
    assert torch.equal(one.counts, torch.bincount(ref_i[:, 0], minlength=313).double())


def test_histogram_skips_masked_images_and_empty_prior_is_an_error():
    hist = color.AbHistogram()
    grey = torch.zeros(2, 2, 4, 4)
    hist.update(grey, mask=color.colorful_mask(grey))
    assert hist.counts.sum() == 0
    with pytest.raises(ValueError, match="empty"):
        hist.prior()


def test_small_dataset_prior_gives_finite_weights():
    hist = color.AbHistogram()
    hist.update(torch.full((1, 2, 4, 4), 30.0))  # a single colour
    w = color.rebalance_weights(hist.prior())
    assert torch.isfinite(w).all() and w.min() > 0


def test_grey_mask():
    ab = torch.zeros(3, 2, 5, 5)
    ab[1, 0, 2, 2] = 5.0  # at the threshold: still grey
    ab[2, 1, 0, 0] = -5.5  # one pixel past it: colourful
    assert color.colorful_mask(ab).tolist() == [False, False, True]


# --- decoding -------------------------------------------------------------------------------

def test_annealed_mean_limits():
    logits = torch.randn(2, 313, 3, 4, generator=torch.Generator().manual_seed(6))
    centres = color.ab_bin_centres()
    mode = centres[logits.argmax(1)].permute(0, 3, 1, 2)
    torch.testing.assert_close(color.annealed_mean(logits, centres, 0), mode)
    torch.testing.assert_close(color.annealed_mean(logits * 50, centres, 0.01), mode,
                               atol=1e-3, rtol=0)
    mean = torch.einsum("bqhw,qc->bchw", logits.softmax(1), centres)
    torch.testing.assert_close(color.annealed_mean(logits, centres, 1.0), mean)


def test_annealed_mean_is_softmax_of_log_probabilities_over_t():
    logits = torch.randn(1, 313, 2, 2, generator=torch.Generator().manual_seed(7))
    z = logits.softmax(1)
    t = 0.38
    f = torch.exp(torch.log(z) / t)
    f = f / f.sum(1, keepdim=True)
    ref = torch.einsum("bqhw,qc->bchw", f, color.ab_bin_centres())
    torch.testing.assert_close(color.annealed_mean(logits, color.ab_bin_centres(), t), ref,
                               atol=1e-4, rtol=0)


def test_annealing_sharpens_towards_saturated_colours():
    # A bimodal distribution between a saturated red and its opposite: the mean is grey-ish,
    # the annealed mean keeps more of the dominant colour.
    centres = color.ab_bin_centres()
    logits = torch.full((1, 313, 1, 1), -20.0)
    red = int(((centres - torch.tensor([60.0, 40.0])).norm(dim=1)).argmin())
    green = int(((centres - torch.tensor([-60.0, 40.0])).norm(dim=1)).argmin())
    logits[0, red], logits[0, green] = math.log(0.6), math.log(0.4)
    sat = [color.annealed_mean(logits, centres, t).norm() for t in (1.0, 0.38)]
    assert sat[1] > sat[0]


@pytest.mark.parametrize("k", [1, 10])
def test_synchronisation_free_k_nn_path_equals_the_cpu_path(k):
    # Accelerators search every pixel instead of finding the few outside the lookup table
    # with nonzero() (a host-device synchronisation); both must give the same bins.
    from splitbrain.color.quantize import _nearest

    ab = torch.rand(1, 2, 120, 120, generator=torch.Generator().manual_seed(k)) * 256 - 128
    bins_cpu, d2_cpu = _nearest(ab, k, sync_free=False)
    bins_free, d2_free = _nearest(ab, k, sync_free=True)
    torch.testing.assert_close(d2_free.sort(1).values, d2_cpu.sort(1).values)
    assert torch.equal(bins_free[:, 0], bins_cpu[:, 0])
    ref_d, _ = brute_force_knn(ab, k)
    torch.testing.assert_close(d2_free.double().sort(1).values.sqrt(), ref_d, atol=1e-4, rtol=0)


# --- any float input: valid bins, finite weights ----------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(ANY_FLOAT, ANY_FLOAT), min_size=1, max_size=40),
       st.sampled_from([1, 2, 10, 16, 40]))
def test_soft_encoding_of_any_float_gives_valid_bins_and_weights(values, k):
    ab = torch.tensor(values, dtype=torch.float32).T.reshape(1, 2, -1, 1)
    idx, w = color.soft_encode(ab, k=k, sigma=5.0)
    assert idx.min() >= 0 and idx.max() < color.NUM_AB_BINS
    assert torch.isfinite(w).all() and (w >= 0).all()
    torch.testing.assert_close(w.sum(1), torch.ones_like(w.sum(1)))
    near = color.nearest_ab_bin(ab)
    assert near.min() >= 0 and near.max() < color.NUM_AB_BINS
    # Inside the valid square nothing changed: the nearest bin is the true nearest bin.
    inside = torch.isfinite(ab).all(1) & (ab.abs() < 127).all(1)  # (1, N, 1)
    if inside.any():
        d = torch.cdist(ab[0].permute(1, 2, 0).reshape(-1, 2).double(),
                        color.ab_bin_centres(dtype=torch.float64))
        best = d.min(1).values
        chosen = d.gather(1, near.reshape(-1, 1)).squeeze(1)
        mask = inside.reshape(-1)
        torch.testing.assert_close(chosen[mask], best[mask], atol=1e-4, rtol=0)


@settings(max_examples=100, deadline=None)
@given(st.lists(ANY_FLOAT, min_size=3, max_size=30))
def test_lab_of_rgb_in_range_round_trips_and_bad_floats_never_index_out_of_range(values):
    from splitbrain.hostsync import HostSyncWatch

    rgb = torch.tensor(values, dtype=torch.float32)[: len(values) // 3 * 3].reshape(1, 3, -1, 1)
    lab = color.rgb_to_lab(torch.nan_to_num(rgb).clamp(0, 1))
    assert torch.isfinite(lab).all()
    assert (lab[:, 0] >= -1e-3).all() and (lab[:, 0] <= 100 + 1e-3).all()
    # On a GPU (here: a CPU step under the sync watch, which stands for one) the range is not
    # checked, as that would synchronise: 0-255 floats still give valid bins and weights.
    bad = rgb * 255
    with HostSyncWatch(device=[bad]):
        idx, w = color.soft_encode(color.rgb_to_lab(bad)[:, 1:], k=10)
    assert idx.max() < color.NUM_AB_BINS and torch.isfinite(w).all()


# --- bad arguments: a ValueError that says what is wrong, never a silent NaN -------------------

@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, width=32), min_size=3, max_size=30))
def test_float_rgb_outside_0_1_is_refused_on_the_cpu_and_inside_is_converted(values):
    rgb = torch.tensor(values, dtype=torch.float32)[: len(values) // 3 * 3].reshape(1, 3, -1, 1)
    low, high = float(rgb.min()), float(rgb.max())
    if low >= 0 and high <= 1:
        assert torch.isfinite(color.rgb_to_lab(rgb)).all()
        assert torch.isfinite(color.lightness(rgb)).all()
    elif low < -1e-3 or high > 1 + 1e-3:
        for convert in (color.rgb_to_lab, color.lightness, color.grey_rgb):
            with pytest.raises(ValueError, match=r"float sRGB must be in \[0, 1\], got values "
                                                 r"in \["):
                convert(rgb)


def test_0_255_floats_are_refused_with_the_way_out_and_uint8_is_never_checked():
    photo = torch.from_numpy(skimage.data.astronaut()[::8, ::8]).permute(2, 0, 1)[None]
    with pytest.raises(ValueError) as refused:
        color.rgb_to_lab(photo.float())  # 0-255 floats: L would be about 7689
    assert str(refused.value) == ("rgb_to_lab: float sRGB must be in [0, 1], got values in "
                                  "[0, 255] (0-255 values? divide by 255 or pass uint8)")
    torch.testing.assert_close(color.rgb_to_lab(photo), color.rgb_to_lab(photo.float() / 255))
    assert color.rgb_to_lab(photo)[:, 0].max() <= 100 + 1e-3


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf"))))
def test_soft_encoding_refuses_a_width_that_is_not_a_finite_positive_number(sigma):
    with pytest.raises(ValueError, match=r"sigma \(the Gaussian width in ab units\) must be a "
                                         r"finite number > 0, got"):
        color.soft_encode(torch.zeros(1, 2, 2, 2), 10, sigma)


def test_soft_encoding_with_sigma_0_is_a_value_error_not_a_zero_division():
    with pytest.raises(ValueError) as refused:
        color.soft_encode(torch.zeros(1, 2, 2, 2), 10, 0.0)
    assert str(refused.value) == ("sigma (the Gaussian width in ab units) must be a finite "
                                  "number > 0, got 0.0")


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.floats(max_value=-1e-30), st.just(float("nan")), st.just(float("inf")),
                 st.just(float("-inf"))))
def test_annealed_mean_refuses_a_temperature_that_is_not_finite_and_non_negative(t):
    logits = torch.zeros(1, 313, 1, 1)
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 0 \(0 "
                                         r"decodes the most likely value\), got"):
        color.annealed_mean(logits, color.ab_bin_centres(), t)
    with pytest.raises(ValueError, match="temperature"):
        color.decode_ab(logits, "cl", t)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1, width=32), min_size=313, max_size=313),
       st.lists(st.integers(0, 312), min_size=1, max_size=5, unique=True),
       st.sampled_from([float("nan"), float("inf"), -float("inf")]))
def test_rebalancing_refuses_a_prior_with_nan_or_inf_and_never_returns_nan(values, where, bad):
    prior = torch.tensor(values, dtype=torch.float64)
    if prior.sum() > 0:
        assert torch.isfinite(color.rebalance_weights(prior / prior.sum())).all()
    prior[where] = bad
    with pytest.raises(ValueError) as refused:
        color.rebalance_weights(prior)
    assert str(refused.value).startswith(
        f"the ab prior must be finite probabilities >= 0 with a positive sum, but "
        f"{len(where)} of its 313 entries are NaN or infinite")
