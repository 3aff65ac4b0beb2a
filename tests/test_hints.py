"""User colour hints (SIGGRAPH 2017): the simulated hints' statistics, the network's hint
inputs, training, the points-vs-quality metric, and colorize --hints with every bad input."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.color import rgb2lab

from splitbrain import color
from splitbrain.colorize import Colorizer, colorize, load_colorizer
from splitbrain.hints import (Hint, HintFileError, HintSampler, evaluate_hints, hex_to_ab,
                              hint_input, load_hint_file, no_hints, render_hints)
from splitbrain.metrics import ColorMetrics
from splitbrain.models import build_model
from splitbrain.objectives import HintsObjective, update_colour_metrics
from tools_util import run_tool


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- simulation ---------------------------------------------------------------------------------

def test_the_number_of_points_is_geometric_with_the_papers_p():
    n = HintSampler().count(200_000, gen())  # p = 1/8, at most 64
    p = 1 / 8
    for k in range(12):  # P(n = k) = p (1 - p)^k; the standard error is below 0.001
        assert abs(float((n == k).float().mean()) - p * (1 - p) ** k) < 0.004
    truncated_mean = sum(k * p * (1 - p) ** k for k in range(64)) + 64 * (1 - p) ** 64
    assert abs(float(n.float().mean()) - truncated_mean) < 0.05
    assert int(n.max()) <= 64 and int(n.min()) == 0


def test_patch_sides_are_uniform_over_the_range():
    # Centres stay near the middle of a 64 px image, so no 1..9 px patch is clipped.
    sampler = HintSampler(patch=(1, 9), spread=0.01)
    _, mask = sampler(torch.zeros(9000, 2, 64, 64), gen(), points=1)
    areas = mask.sum((1, 2, 3)).long()
    sides = areas.float().sqrt().round().long()
    assert torch.equal(sides * sides, areas)  # every patch a whole square
    freq = torch.bincount(sides, minlength=10)[1:].float() / len(sides)
    assert torch.all((freq - 1 / 9).abs() < 0.02)


@pytest.mark.parametrize("location", ["gauss", "uniform"])
def test_centres_follow_the_stated_distribution(location):
    size, count = 100, 40_000  # a column of 100 rows: standard errors about 0.13 rows
    sampler = HintSampler(patch=(1, 1), location=location, spread=0.25)
    _, mask = sampler(torch.zeros(count, 2, size, 1), gen(), points=1)
    rows = mask[:, 0].sum(-1).argmax(-1).float()  # the row of each image's one pixel
    rng = np.random.default_rng(0)
    if location == "gauss":  # a normal at the centre, sd a quarter of the side, clamped
        ref = np.clip(np.floor(size / 2 + 0.25 * size * rng.standard_normal(10**6)), 0, size - 1)
    else:
        ref = np.floor(rng.uniform(0, size, 10**6))
    assert abs(float(rows.mean()) - ref.mean()) < 0.5
    assert abs(float(rows.std()) - ref.std()) < 0.5


def test_a_hint_is_the_truths_mean_over_its_patch_and_later_points_win():
    ab = torch.randn(6, 2, 24, 20) * 30
    sampler = HintSampler(patch=(1, 9), location="uniform")
    hint_ab, mask = sampler(ab, gen(3), points=12)
    y0, y1, x0, x1 = sampler._boxes(ab, 12, gen(3))  # the same draw
    expected_ab, expected_mask = torch.zeros_like(ab), torch.zeros_like(mask)
    for b in range(6):  # brute force: paint the patches in order
        for m in range(12):
            rows, cols = slice(int(y0[b, m]), int(y1[b, m])), slice(int(x0[b, m]), int(x1[b, m]))
            mean = ab[b, :, rows, cols].mean((1, 2))
            expected_ab[b, :, rows, cols] = mean[:, None, None]
            expected_mask[b, :, rows, cols] = 1
    assert torch.equal(mask, expected_mask)
    assert torch.allclose(hint_ab, expected_ab, atol=1e-4)


def test_revealed_points_are_nested_and_zero_points_is_no_hint():
    ab = torch.randn(4, 2, 32, 32) * 30
    maps = HintSampler().reveal(ab, [0, 1, 5, 20], gen())
    assert maps[0][1].sum() == 0 and maps[0][0].abs().sum() == 0
    for fewer, more in ((1, 5), (5, 20)):
        assert torch.all(maps[more][1] >= maps[fewer][1])  # more points only add hints
    assert maps[20][1].sum() > maps[1][1].sum()


def test_a_training_step_draws_the_hints_of_its_step():
    """A resumed run (objective.step set) sees the hints an uninterrupted one saw."""
    torch.manual_seed(0)
    model = build_model("eccv16_small", hints=True)
    rgb = torch.rand(2, 3, 32, 32)
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            seen.append(x[:, 1:].clone())
            return self.net(x)

    spy = Spy().train()
    first = HintsObjective(HintSampler(), seed=5)
    for _ in range(4):
        first(spy, rgb)
    resumed = HintsObjective(HintSampler(), seed=5)
    resumed.step = 3
    resumed(spy, rgb)
    assert torch.equal(seen[-1], seen[3]) and not torch.equal(seen[1], seen[3])
    # Under torchrun each rank draws its own hints for its images; rank 0 draws as one process.
    for rank in (0, 1):
        other = HintsObjective(HintSampler(), seed=5, rank=rank)
        other.step = 3
        other(spy, rgb)
        assert torch.equal(seen[-1], seen[3]) == (rank == 0)


@pytest.mark.parametrize("bad", [dict(p=0), dict(max_points=300), dict(patch=(0, 3)),
                                 dict(patch=(5, 2)), dict(location="edge"), dict(spread=0)])
def test_bad_hint_settings_are_refused_with_the_setting_named(bad):
    with pytest.raises(ValueError, match=list(bad)[0]):
        HintSampler(**bad)


def test_bad_hint_config_values_stop_training_before_anything_is_written(tmp_path):
    code = run_tool("train", ["--task", "hints", f"run.out={tmp_path / 'run'}",
                              "hints.patch=[0,3]", "model.name=alexnet_colorization_small"])
    assert code == 2 and not (tmp_path / "run").exists()


# --- the network --------------------------------------------------------------------------------

def test_the_hints_network_takes_four_channels_and_gives_ab_and_a_distribution():
    torch.manual_seed(0)
    model = build_model("eccv16_small", hints=True).eval()
    L = torch.rand(2, 1, 32, 32) * 100
    out = model(no_hints(L))
    assert out.shape == (2, 2 + color.NUM_AB_BINS, 8, 8)
    assert torch.equal(no_hints(L), torch.cat([L, torch.zeros(2, 3, 32, 32)], 1))
    hint_ab, mask = render_hints([Hint(16, 16, (60.0, 40.0), 5)], (32, 32), (32, 32))
    x = hint_input(L, hint_ab.expand(2, -1, -1, -1), mask.expand(2, -1, -1, -1))
    change = (model.forward_features(x, "conv1")["conv1"]
              - model.forward_features(no_hints(L), "conv1")["conv1"]).abs()  # (2, C, 16, 16)
    assert change[:, :, 8, 8].min() >= 0 and change[:, :, 7:10, 7:10].max() > 1e-3
    assert change[:, :, :4].max() == 0  # far from the hint nothing changes
    with pytest.raises(ValueError, match="hint mask"):
        model(L)


def test_render_hints_maps_photo_pixels_to_the_working_grid():
    # A 400 x 200 photo at a 100 x 50 working size: pixel (399, 199) is working (99, 49).
    hint_ab, mask = render_hints([Hint(399, 199, (10.0, -20.0), 1), Hint(0, 0, (5.0, 5.0), 3)],
                                 (400, 200), (100, 50))
    assert mask[0, 0, 49, 99] == 1 and hint_ab[0, :, 49, 99].tolist() == [10.0, -20.0]
    assert mask[0, 0, :2, :2].sum() == 4 and mask.sum() == 5  # a 3 px patch clipped at 0
    assert hint_ab[0, :, 1, 1].tolist() == [5.0, 5.0]


def test_hex_colours_become_their_lab_ab():
    from skimage.color import rgb2lab

    for text in ("#c03020", "#2050e0", "#808080"):
        rgb = np.array([[[int(text[i:i + 2], 16) / 255 for i in (1, 3, 5)]]])
        ref = rgb2lab(rgb)[0, 0, 1:]
        assert np.allclose(hex_to_ab(text), ref, atol=0.05)
    for bad in ("c03020", "#c0302", "#gg0000", "#c0302000"):
        with pytest.raises(ValueError):
            hex_to_ab(bad)


# --- training, and what hints do to a prediction ----------------------------------------------

def photo_crops(n, size, seed):
    """``n`` random ``size``-pixel crops of scikit-image's colour photographs, RGB in [0, 1]."""
    from skimage import data as skdata

    g = gen(seed)
    photos = [torch.from_numpy(getattr(skdata, name)()).permute(2, 0, 1).float() / 255
              for name in ("astronaut", "chelsea", "coffee", "rocket")]
    crops = []
    for i in range(n):
        img = F.interpolate(photos[i % len(photos)][None], scale_factor=0.25, mode="area")[0]
        y, x = (int(torch.randint(0, d - size + 1, (), generator=g)) for d in img.shape[1:])
        crops.append(img[:, y:y + size, x:x + size])
    return torch.stack(crops)


def test_the_loss_falls_on_a_small_model_trained_in_the_test():
    torch.manual_seed(0)
    model = build_model("eccv16_small", hints=True).train()
    objective = HintsObjective(HintSampler(patch=(1, 5)), seed=0, grey_mask=False)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    batch = photo_crops(8, 32, seed=0)  # one batch, fitted; each step draws its own hints
    losses = []
    for step in range(40):
        loss, logs, _ = objective(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(logs["loss"]))
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])


class HintEcho(torch.nn.Module):
    """A constructed hints network: at every output pixel, the mean hint under it (else the
    automatic colour ``auto``); its distribution peaks at the bins nearest that colour."""

    hints, in_channels = True, 4

    def __init__(self, auto=(5.0, -5.0)):
        super().__init__()
        self.register_buffer("auto", torch.tensor(auto).view(1, 2, 1, 1))
        self.register_buffer("centres", color.ab_bin_centres())
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device

    def forward(self, x):
        ab, mask = x[:, 1:3], x[:, 3:]
        hinted = F.avg_pool2d(ab * mask, 4) / F.avg_pool2d(mask, 4).clamp(min=1e-6)
        out = torch.where(F.avg_pool2d(mask, 4) > 0, hinted, self.auto)  # (B, 2, h, w)
        dist = (out[:, None] - self.centres.view(1, -1, 2, 1, 1)).square().sum(2)
        return torch.cat([out / color.AB_SCALE, -dist / 50], 1)  # (B, 2 + 313, h, w)


def echo_colorizer(size=32):
    return Colorizer(HintEcho(), "reg", color.ab_bin_centres(), size=size, takes_hints=True)


def test_a_hint_at_a_point_colours_the_photo_there_and_not_far_away():
    """Through colorize: the photo's pixel coordinates reach the right working pixel."""
    img = Image.fromarray(np.full((120, 160, 3), 128, np.uint8))  # grey, 160 x 120
    red = hex_to_ab("#d02020")
    auto = np.asarray(colorize(img, echo_colorizer(), hints=[]))
    # 9 working pixels: every cell of the echo's 4-pixel grid that the upsampling mixes at the
    # point lies under the hint (a smaller patch blends in the automatic colour there).
    hinted = np.asarray(colorize(img, echo_colorizer(), hints=[Hint(130, 30, red, 9)]))
    lab = rgb2lab(hinted / 255.0)
    assert np.allclose(lab[30, 130, 1:], red, atol=3)  # the hint's colour at its point
    assert np.array_equal(hinted[100:, :60], auto[100:, :60])  # far away: the automatic colour
    assert np.allclose(rgb2lab(auto / 255.0)[60, 80, 1:], (5, -5), atol=1)


def test_suggested_colours_at_a_hinted_point_are_the_bins_nearest_the_hint():
    img = np.full((1, 3, 64, 64), 128, np.uint8)
    L = color.lightness(torch.from_numpy(img))
    ab = (42.0, 17.0)
    got = echo_colorizer().suggest(L, 20, 40, hints=[Hint(20, 40, ab, 3)], count=3)
    centres = color.ab_bin_centres()
    nearest = (centres - torch.tensor(ab)).square().sum(1).argsort()[:3]
    assert [(a, b) for a, b, _ in got] == [tuple(centres[i].tolist()) for i in nearest]
    with pytest.raises(ValueError, match="--task hints"):
        Colorizer(HintEcho(), "reg", color.ab_bin_centres()).suggest(L, 1, 1)


def flat_colours(n, size, seed):
    """Photos of one flat, saturated colour each: a hint anywhere says the colour everywhere."""
    g = gen(seed)
    hue = torch.rand(n, generator=g)
    rgb = torch.stack([(hue * 6 - k).remainder(6).sub(3).abs().sub(1).clamp(0, 1)
                       for k in (0, 4, 2)], 1)  # (n, 3) saturated colours on the hue circle
    rgb = rgb * (0.5 + 0.5 * torch.rand(n, 1, generator=g))
    return rgb[:, :, None, None].expand(-1, -1, size, size).contiguous()


def test_more_points_give_better_colour_and_zero_points_is_the_automatic_output():
    model = HintEcho()
    images = flat_colours(24, 32, 1234)
    loader = [images[:12], images[12:]]
    res = evaluate_hints(model, HintSampler(patch=(1, 5)), loader, "cpu", (0, 1, 5, 20), seed=0)
    assert res[20]["psnr"] > res[5]["psnr"] > res[1]["psnr"] > res[0]["psnr"]
    ref = {"model": ColorMetrics(), "grey": ColorMetrics()}  # the automatic mode, by hand
    with torch.no_grad():
        for rgb in loader:
            lab = color.rgb_to_lab(rgb)
            ab = model(no_hints(lab[:, :1]))[:, :2] * color.AB_SCALE
            update_colour_metrics(ref, ab, lab[:, 1:], lab[:, :1])
    assert res[0] == pytest.approx(ref["model"].compute())
    assert res["grey"] == pytest.approx(ref["grey"].compute())


# --- training through the tool, the metric's tool, colorize --hints ------------------------------

HINTS_TINY = ["--task", "hints", "data.crop=32", "data.val_crop=32", "data.train_length=8",
              "data.val_length=4", "optim.batch_size=4", "color.prior_images=4",
              "run.device=cpu"]  # conftest's trained_hints, two steps of it


@pytest.fixture
def hints_ckpt(trained_hints):
    return trained_hints


def test_a_hints_run_resumes_and_its_checkpoint_colorizes(hints_ckpt, tmp_path):
    # Resumed after step 2, the run ends where one run of 4 steps ends: the same hints per step.
    import shutil

    shutil.copytree(hints_ckpt.parent, tmp_path / "resumed")
    assert run_tool("train", ["--task", "hints", "--resume", f"run.out={tmp_path / 'resumed'}",
                              "optim.iterations=4"]) == 0
    assert run_tool("train", [*HINTS_TINY, "optim.iterations=4",
                              f"run.out={tmp_path / 'straight'}"]) == 0
    a, b = (torch.load(tmp_path / name / "latest.pt", weights_only=True)["state_dict"]
            for name in ("resumed", "straight"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = torch.load(hints_ckpt, weights_only=True)
    assert state["task"] == "hints" and state["color"]["hints"]["p"] == 0.125
    colorizer = load_colorizer(hints_ckpt, size=32)
    assert colorizer.takes_hints
    img = Image.fromarray((np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8))
    auto, empty = colorize(img, colorizer), colorize(img, colorizer, hints=[])
    assert auto.size == (40, 30) and np.array_equal(np.asarray(auto), np.asarray(empty))
    suggestions = colorizer.suggest(color.lightness(
        torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None]), 10, 5, count=4)
    assert len(suggestions) == 4 and all(-128 <= a <= 128 and -128 <= b <= 128
                                         for a, b, _ in suggestions)
    probs = [p for _, _, p in suggestions]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_evaluate_prints_the_curve_and_compares_an_automatic_model(hints_ckpt, tmp_path, capsys,
                                                                   trained):
    out = tmp_path / "r.json"
    code = run_tool("evaluate", ["--metric", "hints", "--ckpt", hints_ckpt, "--points", "0,2,5",
                                 "--compare", trained, "--size", "32", "--length", "4",
                                 "--json", out])
    assert code == 0
    text = capsys.readouterr().out
    for row in ("| all grey |", "| 0 points |", "| 2 points |", "| 5 points |", "| automatic"):
        assert row in text
    assert set(json.loads(out.read_text())) == {"grey", "0", "2", "5", "automatic"}
    assert run_tool("evaluate", ["--metric", "hints", "--ckpt", trained]) == 2
    assert "tools/train.py --task hints" in capsys.readouterr().err
    assert run_tool("evaluate", ["--metric", "hints", "--ckpt", hints_ckpt,
                                 "--points", "1,x"]) == 2
    assert "--points" in capsys.readouterr().err


@pytest.fixture
def photos(tmp_path, photo):
    folder = tmp_path / "in"
    folder.mkdir()
    photo("astronaut", (60, 40)).save(folder / "a.jpg")
    photo("coffee", (50, 50)).save(folder / "c.png")
    return folder


def write_hints(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_colorize_with_a_hints_file_gives_the_librarys_pixels(hints_ckpt, photos, tmp_path):
    hints = {"a.jpg": [{"x": 10, "y": 30, "color": "#d02020", "size": 5},
                       {"x": 59.5, "y": 0, "ab": [-40, 50]}]}
    hint_file = write_hints(tmp_path / "h.json", hints)
    code = run_tool("colorize", [photos / "a.jpg", photos / "c.png", "--ckpt", hints_ckpt, "-o",
                                 tmp_path / "out", "--size", "32", "--hints", hint_file])
    assert code == 0
    colorizer = load_colorizer(hints_ckpt, size=32)
    parsed = [Hint(10.0, 30.0, hex_to_ab("#d02020"), 5), Hint(59.5, 0.0, (-40.0, 50.0), 3)]
    with_hints = colorize(photos / "a.jpg", colorizer, hints=parsed)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "a.jpg").convert("RGB")),
                          np.asarray(_jpeg_roundtrip(with_hints)))
    no_hint = np.asarray(colorize(photos / "c.png", colorizer))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "c.png")), no_hint)


def _jpeg_roundtrip(img):
    import io

    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return Image.open(buf).convert("RGB")


def test_a_folders_photos_are_named_by_their_path_below_it(hints_ckpt, photos, tmp_path):
    hint_file = write_hints(tmp_path / "h.json", {"c.png": [{"x": 1, "y": 1, "ab": [60, 60]}]})
    assert run_tool("colorize", [photos, "--ckpt", hints_ckpt, "-o", tmp_path / "out",
                                 "--size", "32", "--hints", hint_file]) == 0
    loaded = load_hint_file(hint_file, [(photos / "c.png", "c.png")])
    assert list(loaded) == [photos / "c.png"] and loaded[photos / "c.png"][0].ab == (60.0, 60.0)


BAD_HINTS = [
    ({"a.jpg": [{"x": 60, "y": 10, "color": "#d02020"}]},
     ["'a.jpg' entry 1", "outside the photo", "60x40", "0 <= x < 60"]),
    ({"a.jpg": [{"x": 1, "y": -1, "color": "#d02020"}]}, ["entry 1", "outside the photo"]),
    ({"a.jpg": [{"x": 1, "y": 1}, {"x": 1, "y": 1, "color": "red"}]},
     ["'a.jpg' entry 1", "not neither"]),
    ({"a.jpg": [{"x": 1, "y": 1, "color": "#d0202"}]},
     ["entry 1", "'#d0202' is not a colour like", "#c03020"]),
    ({"a.jpg": [{"x": 1, "y": 1, "ab": [200, 0]}]}, ["ab [200, 0]", "-128..128"]),
    ({"a.jpg": [{"x": "1", "y": 1, "ab": [0, 0]}]}, ["needs \"x\" and \"y\""]),
    ({"a.jpg": [{"x": 1, "y": 1, "ab": [0, 0], "radius": 2}]}, ["unknown key", "'radius'"]),
    ({"a.jpg": [{"x": 1, "y": 1, "ab": [0, 0], "size": 0}]}, ["size 0", "1..64"]),
    ({"b.jpg": [{"x": 1, "y": 1, "ab": [0, 0]}]}, ["hints for 'b.jpg', a photo not given",
                                                   "a.jpg"]),
    ({"a.jpg": {"x": 1, "y": 1}}, ["must map to a list"]),
    ("{\"a.jpg\": [", ["is not valid JSON", "the format is"]),
    ([{"x": 1, "y": 1, "ab": [0, 0]}], ["bare list", "2 photos"]),
]


@pytest.mark.parametrize("data,words", BAD_HINTS, ids=range(len(BAD_HINTS)))
def test_a_bad_hints_file_is_named_with_its_entry_and_nothing_is_written(
        hints_ckpt, photos, tmp_path, capsys, data, words):
    hint_file = write_hints(tmp_path / "bad.json", data)
    inputs = [photos / "a.jpg", photos / "c.png"]
    code = run_tool("colorize", [*inputs, "--ckpt", hints_ckpt, "-o", tmp_path / "out",
                                 "--size", "32", "--hints", hint_file])
    err = capsys.readouterr().err
    assert code == 2 and "bad.json" in err
    for word in words:
        assert word in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_hints_for_a_model_without_hint_inputs_or_a_missing_file(trained, hints_ckpt, photos,
                                                                 tmp_path, capsys):
    hint_file = write_hints(tmp_path / "h.json", {"a.jpg": [{"x": 1, "y": 1, "ab": [0, 0]}]})
    code = run_tool("colorize", [photos / "a.jpg", "--ckpt", trained, "-o", tmp_path / "out",
                                 "--hints", hint_file])
    err = capsys.readouterr().err
    assert code == 2 and "no hint inputs" in err and "--task hints" in err
    code = run_tool("colorize", [photos / "a.jpg", "--ckpt", hints_ckpt, "-o", tmp_path / "out",
                                 "--hints", tmp_path / "none.json"])
    assert code == 2 and "hints file not found" in capsys.readouterr().err
    with pytest.raises(HintFileError, match="bare list"):
        load_hint_file(write_hints(tmp_path / "l.json", []), [])


def test_hint_points_are_in_the_upright_photos_pixels_when_exif_turns_it(hints_ckpt, photo,
                                                                           tmp_path, capsys):
    # Stored 60x40 with EXIF orientation 6 (turn 90 degrees): shown, and colorized, as 40x60.
    exif = Image.Exif()
    exif[0x0112] = 6
    photo("astronaut", (60, 40)).save(tmp_path / "turned.jpg", exif=exif)
    inside = write_hints(tmp_path / "in.json", [{"x": 30, "y": 50, "ab": [40, 40]}])
    assert run_tool("colorize", [tmp_path / "turned.jpg", "--ckpt", hints_ckpt, "-o",
                                 tmp_path / "out", "--size", "32", "--hints", inside]) == 0
    assert Image.open(tmp_path / "out" / "turned.jpg").size == (40, 60)
    outside = write_hints(tmp_path / "out.json", [{"x": 50, "y": 10, "ab": [40, 40]}])
    assert run_tool("colorize", [tmp_path / "turned.jpg", "--ckpt", hints_ckpt, "-o",
                                 tmp_path / "out2", "--size", "32", "--hints", outside]) == 2
    assert "outside the photo (40x60 pixels" in capsys.readouterr().err
