"""The perceptual distance from our features, its lin weights, its loss term, evaluate's
--metric perceptual, and the 2AFC check on the bundled photos."""

import re

import kornia
import numpy as np
import pytest
import torch

from splitbrain import checkpoint as ckpt
from splitbrain import color, config, perceptual, tasks, twoafc
from splitbrain.data import SamplePhotos, build_dataset, sample_photo
from splitbrain.models import build_model
from splitbrain.objectives import ColorizationObjective, PerceptualTerm, SplitBrainObjective
from tools_util import run_tool

SB = "splitbrain_alexnet_small"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_model(path, model, name, task, cfg=None, **extra):
    ckpt.save({"task": task, "model": {"name": name, "kwargs": {}},
               "state_dict": model.state_dict(), "config": cfg or {}, **extra}, path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A split-brain checkpoint after 25 steps on the bundled photos (a tiny trained net)."""
    torch.manual_seed(0)
    model = build_model(SB)
    objective = SplitBrainObjective(model.split)
    data = SamplePhotos("train", 64, length=16 * 25, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(25):
        rgb = torch.stack([data[i][0] for i in range(16 * step, 16 * step + 16)])
        loss, _, _ = objective(model, rgb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return save_model(tmp_path_factory.mktemp("sb") / "sb.pt", model, SB, "splitbrain")


@pytest.fixture(scope="module")
def nets(trained):
    return {"random": perceptual.random_features(SB, seed=1),
            "trained": perceptual.load_features(trained)}


def crops(n=4, size=64, name="chelsea"):
    """n float sRGB crops (n, 3, size, size) of a bundled photo."""
    photo = torch.from_numpy(np.array(sample_photo(name))).permute(2, 0, 1).float() / 255
    return torch.stack([photo[:, 40 * i:40 * i + size, 60 * i:60 * i + size] for i in range(n)])


# --- the distance -----------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["random", "trained"])
def test_zero_for_identical_images_symmetric_and_non_negative(nets, which):
    model = nets[which]
    x, y = crops(), crops(name="astronaut")
    assert torch.equal(perceptual.distance(x, x, model), torch.zeros(4))
    d_xy, d_yx = perceptual.distance(x, y, model), perceptual.distance(y, x, model)
    torch.testing.assert_close(d_xy, d_yx, rtol=1e-5, atol=1e-7)
    assert (d_xy > 0).all()
    assert perceptual.distance(x, y, model, weights=_ones(model)).min() >= 0


def _ones(model, layers=perceptual.DEFAULT_LAYERS):
    return {n: torch.ones(model.feature_channels[n]) for n in layers}


@pytest.mark.parametrize("which", ["random", "trained"])
@pytest.mark.parametrize("kind", ["blur", "noise"])
def test_grows_with_distortion_strength(nets, which, kind):
    x = crops(2)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    out = []
    for level in (0.5, 1.0, 2.0, 4.0):
        if kind == "blur":
            y = kornia.filters.gaussian_blur2d(x, (25, 25), (level, level), "reflect")
        else:
            y = (x + 0.025 * level * noise).clamp(0, 1)
        out.append(perceptual.distance(x, y, nets[which]))
    d = torch.stack(out)  # (levels, B)
    assert (d[1:] > d[:-1]).all(), d


def test_matches_a_hand_computation_from_the_features(nets):
    """One layer by numpy from forward_features: unit along channels, squared difference,
    channel sum (optionally weighted), spatial mean."""
    model = nets["trained"]
    x, y = crops(2), crops(2, name="coffee")
    lab = [color.rgb_to_lab(t) for t in (x, y)]
    with torch.no_grad():
        fx, fy = (model.forward_features(t, ["conv2"])["conv2"].numpy() for t in lab)
    w = torch.rand(model.feature_channels["conv2"], generator=torch.Generator().manual_seed(3))
    nx = fx / (np.sqrt((fx ** 2).sum(1, keepdims=True)) + 1e-10)
    ny = fy / (np.sqrt((fy ** 2).sum(1, keepdims=True)) + 1e-10)
    expected = ((nx - ny) ** 2 * w.numpy()[None, :, None, None]).sum(1).mean((1, 2))
    got = perceptual.distance(x, y, model, layers="conv2", weights={"conv2": w})
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)
    # Layers add up.
    both = perceptual.distance(x, y, model, layers=["conv1", "conv2"])
    one = [perceptual.distance(x, y, model, layers=[n]) for n in ("conv1", "conv2")]
    torch.testing.assert_close(both, one[0] + one[1])


def test_colour_counts_for_split_brain_but_not_for_an_l_only_network(nets):
    lab = color.rgb_to_lab(crops(2))
    shifted = lab + torch.tensor([0.0, 12.0, -8.0]).view(1, 3, 1, 1)  # same L, other colours
    eccv = perceptual.random_features("eccv16_small")
    assert not perceptual.sees_colour(eccv) and perceptual.sees_colour(nets["trained"])
    assert torch.equal(perceptual.lab_distance(lab, shifted, eccv), torch.zeros(2))
    assert (perceptual.lab_distance(lab, shifted, nets["trained"]) > 0).all()
    with pytest.raises(perceptual.PerceptualError, match="reads L only"):
        perceptual.require_colour(eccv)


def test_bad_layers_training_mode_and_shapes_are_clear_errors(nets):
    x = crops(1)
    with pytest.raises(perceptual.PerceptualError, match=r"unknown layer\(s\) \['conv9'\].*valid"):
        perceptual.distance(x, x, nets["random"], layers="conv1,conv9")
    with pytest.raises(perceptual.PerceptualError, match="model.eval"):
        perceptual.distance(x, x, build_model(SB))
    with pytest.raises(perceptual.PerceptualError, match="same shape"):
        perceptual.distance(x, x[..., :32], nets["random"])


# --- lin weights ------------------------------------------------------------------------------

def test_lin_fit_is_non_negative_and_weighs_the_informative_channel(tmp_path, nets):
    g = torch.Generator().manual_seed(0)
    n = 200
    near = {"conv1": torch.rand(n, 3, generator=g)}
    far = {"conv1": near["conv1"].clone()}
    far["conv1"][:, 0] += 0.2  # channel 0: the far image is always farther
    far["conv1"][:, 1] -= 0.2  # channel 1: misleading
    far["conv1"][:, 2] += 0.1 * torch.randn(n, generator=g)  # channel 2: noise
    w = perceptual.fit_lin_weights(near, far)["conv1"]
    assert (w >= 0).all() and w[0] > 1 > w[1], w
    correct = (perceptual.combine(far, {"conv1": w}) > perceptual.combine(near, {"conv1": w}))
    assert correct.float().mean() > (perceptual.combine(far) > perceptual.combine(near)).float().mean()
    # A file round trip, checked against the network it was fitted for.
    model = nets["random"]
    lin = {k: v * 2 for k, v in _ones(model).items()}
    perceptual.save_lin_weights(tmp_path / "w.pt", lin, "test")
    back = perceptual.load_lin_weights(tmp_path / "w.pt", model)
    assert all(torch.equal(back[k], lin[k]) for k in lin)
    with pytest.raises(perceptual.PerceptualError, match="channels"):
        perceptual.load_lin_weights(tmp_path / "w.pt", perceptual.random_features("eccv16_small"))
    with pytest.raises(perceptual.PerceptualError, match="not found"):
        perceptual.load_lin_weights(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(perceptual.PerceptualError, match="not a lin-weights file"):
        perceptual.load_lin_weights(tmp_path / "junk.pt")


# --- the loss term ----------------------------------------------------------------------------

def _colorize_setup(tmp_path, *overrides):
    cfg = config.resolve("colorize", overrides=["data.crop=32", "data.val_crop=32",
                                                "color.prior_images=4", *overrides])
    train_set = build_dataset("sample", "train", 32, train=True, length=8)
    torch.manual_seed(0)
    return cfg, tasks.setup("colorize", cfg, train_set, torch.device("cpu"), lambda m: None)


def test_weight_zero_loads_nothing_and_leaves_the_loss_bitwise_unchanged(tmp_path):
    missing = tmp_path / "no_such_file.pt"  # never opened at weight 0
    cfg, s = _colorize_setup(tmp_path, f"loss.perceptual_ckpt={missing}")
    tasks.check_config("colorize", cfg)
    assert s.objective.perceptual is None
    plain = tasks.colorize_objective(cfg, s.model, s.extra["color"]["prior"])
    rgb = torch.stack([SamplePhotos("val", 32, length=4)[i][0] for i in range(4)])
    assert torch.equal(s.objective(s.model, rgb)[0], plain(s.model, rgb)[0])


def test_the_term_trains_the_colorizer_only_and_its_loss_falls(trained):
    features = perceptual.load_features(trained)
    frozen = {k: v.clone() for k, v in features.state_dict().items()}
    torch.manual_seed(0)
    model = build_model("eccv16_small")
    term = PerceptualTerm(features, weight=1.0)
    objective = ColorizationObjective(rebalance=False, grey_mask=False, perceptual=term)
    rgb = torch.stack([SamplePhotos("train", 64, length=4, augment=False)[i][0]
                       for i in range(4)])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    terms = []
    for _ in range(30):
        loss, logs, _ = objective(model, rgb)
        opt.zero_grad()
        loss.backward()
        if not terms:  # the term alone reaches the colorizer
            grads = torch.autograd.grad(term(color.decode_ab(model(color.lightness(rgb)), "cl"),
                                             rgb), list(model.parameters()), allow_unused=True)
            assert any(g is not None and g.abs().sum() > 0 for g in grads)
        opt.step()
        terms.append(float(logs["loss_perceptual"]))
        torch.testing.assert_close(logs["loss"], logs["loss_colour"] + logs["loss_perceptual"])
    assert all(p.grad is None for p in features.parameters())
    assert all(torch.equal(v, frozen[k]) for k, v in features.state_dict().items())
    assert not features.training
    assert terms[-1] < 0.7 * terms[0], terms


def test_bad_perceptual_settings_stop_training_before_any_file(tmp_path, trained, capsys):
    l_only = save_model(tmp_path / "colorize.pt", build_model("eccv16_small"), "eccv16_small",
                        "colorize")
    cases = [(["loss.perceptual_weight=-1"], r"loss\.perceptual_weight=-1\.0: must be >= 0"),
             (["loss.perceptual_weight=1", f"loss.perceptual_ckpt={tmp_path / 'x.pt'}"],
              r"loss\.perceptual_ckpt=.*file not found"),
             (["loss.perceptual_weight=1", f"loss.perceptual_ckpt={l_only}"], "reads L only"),
             (["loss.perceptual_weight=1", f"loss.perceptual_ckpt={trained}",
               "loss.perceptual_layers=[conv9]"], r"unknown layer\(s\) \['conv9'\]"),
             (["loss.perceptual_weight=1", f"loss.perceptual_ckpt={trained}",
               "color.temperature=0"], "has no gradient")]
    for i, (overrides, message) in enumerate(cases):
        out = tmp_path / f"run{i}"
        assert run_tool("train", ["--task", "colorize", f"run.out={out}", "run.device=cpu",
                                  *overrides]) == 2
        assert re.search(message, capsys.readouterr().err), message
        assert not out.exists()


# --- tools/evaluate.py --metric perceptual ---------------------------------------------------------

@pytest.fixture(scope="module")
def colorizer(tmp_path_factory):
    cfg = config.resolve("colorize", overrides=["data.val_crop=32", "data.val_length=6"])
    spec = tasks.colorize_model_spec(cfg)
    torch.manual_seed(0)
    model = build_model(spec["name"], **spec["kwargs"])
    prior = torch.full((313,), 1 / 313, dtype=torch.float64)
    path = tmp_path_factory.mktemp("col") / "col.pt"
    ckpt.save({"task": "colorize", "model": spec, "state_dict": model.state_dict(),
               "config": cfg, "color": tasks.colorize_color_state(cfg, model, prior)}, path)
    return path, model.eval()


def test_evaluate_prints_the_distance_of_the_output_and_of_grey(colorizer, trained, capsys):
    path, model = colorizer
    assert run_tool("evaluate", ["--ckpt", path, "--metric", "perceptual", "--features",
                                 trained, "--layers", "conv1,conv2", "--device", "cpu"]) == 0
    rows = dict(re.findall(r"\| (grey|model) \| ([\d.]+) \|", capsys.readouterr().out))
    # Reference: the same crops, colorized by hand (annealed mean at T = 0.38, bilinear ab,
    # the input's L), and the grey image of each.
    features = perceptual.load_features(trained)
    rgb = torch.stack([SamplePhotos("val", 32, length=6, seed=0, augment=False)[i][0]
                       for i in range(6)])
    truth = rgb.float() / 255
    L = color.rgb_to_lab(truth)[:, :1]
    with torch.no_grad():
        ab = color.annealed_mean(model(L), color.ab_bin_centres(), 0.38)
    ab = torch.nn.functional.interpolate(ab, size=(32, 32), mode="bilinear")
    ours = color.lab_to_rgb(torch.cat([L, ab], 1))
    for name, image in (("model", ours), ("grey", color.grey_rgb(truth))):
        expected = perceptual.distance(image, truth, features, ["conv1", "conv2"]).mean()
        assert float(rows[name]) == pytest.approx(float(expected), abs=2e-4), name


def test_evaluate_refuses_bad_feature_inputs(colorizer, trained, tmp_path, capsys):
    path, _ = colorizer
    base = ["--ckpt", path, "--metric", "perceptual", "--device", "cpu"]
    cases = [(["--features", path], "reads L only"),
             (["--features", trained, "--layers", "conv1,fc9"], r"unknown layer\(s\) \['fc9'\]"),
             (["--features", tmp_path / "missing.pt"], "checkpoint not found"),
             ([], "needs --features")]
    for extra, message in cases:
        assert run_tool("evaluate", [*base, *extra]) == 2
        assert re.search(message, capsys.readouterr().err), message


# --- 2AFC -----------------------------------------------------------------------------------

def test_2afc_table_is_reproducible_from_a_fixed_seed(tmp_path, capsys):
    argv = ["--random", SB, "--layers", "conv1,conv2", "--size", "32", "--scale", "48",
            "--per-kind", "2"]
    tables = []
    for seed in (0, 0, 1):
        assert run_tool("perceptual_2afc", [*argv, "--seed", seed]) == 0
        tables.append(capsys.readouterr().out)
    assert tables[0] == tables[1] and "| SSIM |" in tables[0]
    assert f"| random-init {SB} conv1-2 + lin |" in tables[0]
    first, again = (twoafc.make_triplets(32, 2, seed=0, scale=48) for _ in range(2))
    assert torch.equal(first.near, again.near) and torch.equal(first.far, again.far)
    assert not torch.equal(first.ref, twoafc.make_triplets(32, 2, seed=1, scale=48).ref)
    out = tmp_path / "t.md"
    assert run_tool("perceptual_2afc", [*argv, "--out", out]) == 0
    assert out.read_text() == tables[0]
    assert run_tool("perceptual_2afc", [*argv, "--out", out]) == 2  # never overwritten unasked


def test_2afc_l2_picks_the_less_noisy_image():
    t = twoafc.make_triplets(32, 6, seed=0, scale=48)
    noise = t.kind == twoafc.KINDS.index("noise")
    near, far = twoafc.pair_distances(t, twoafc.pixel_l2)
    assert noise.sum() == 6 * 7 and twoafc.judge(near[noise], far[noise]).min() == 1
    # The labels are right: the far image is the more distorted in pixels for every kind but
    # JPEG (whose error need not grow with compression on every crop).
    assert (far[~noise] >= near[~noise]).float().mean() > 0.9


def test_2afc_bad_inputs_exit_non_zero_with_a_message(tmp_path, capsys):
    cases = [(["--layers", "conv9"], r"unknown layer\(s\) \['conv9'\]"),
             (["--features", tmp_path / "missing.pt"], "checkpoint not found"),
             (["--test-photos", "nope"], "--test-photos"),
             (["--size", "500"], "larger than")]
    for extra, message in cases:
        assert run_tool("perceptual_2afc", ["--per-kind", "1", *extra]) == 2
        assert re.search(message, capsys.readouterr().err), message


def test_2afc_scores_right_wrong_and_ties_and_tables_by_kind():
    scores = twoafc.judge(torch.tensor([1.0, 2.0, 2.0, 0.0]), torch.tensor([2.0, 1.0, 2.0, 3.0]))
    assert scores.tolist() == [1.0, 0.0, 0.5, 1.0]
    kinds = torch.tensor([0, 0, 1, 3])  # blur, blur, noise, colour; no jpeg triplet
    row = twoafc.table({"d": scores}, kinds).splitlines()[-1]
    assert row == "| d | 50.0 | 50.0 | - | 100.0 | 62.5 |"


def test_a_run_from_before_the_loss_keys_resumes_with_the_term_off(tmp_path, capsys):
    out = tmp_path / "run"
    tiny = ["--task", "colorize", f"run.out={out}", "data.crop=32", "data.val_crop=32",
            "data.train_length=8", "data.val_length=4", "optim.batch_size=4",
            "color.prior_images=4", "run.device=cpu"]
    assert run_tool("train", [*tiny, "optim.iterations=1"]) == 0
    state = ckpt.load(out / "latest.pt")
    del state["config"]["loss"]  # as a checkpoint written before the loss section existed
    ckpt.save(state, out / "latest.pt")
    capsys.readouterr()
    assert run_tool("train", [*tiny, "--resume", "optim.iterations=2"]) == 0
    assert "added since this run started, at their defaults: loss.perceptual_weight" in \
        capsys.readouterr().out
    resumed = ckpt.load(out / "latest.pt")
    assert resumed["step"] == 2 and resumed["config"]["loss"]["perceptual_weight"] == 0


def test_grey_images_that_the_grey_mask_drops_get_no_perceptual_term(nets):
    term = PerceptualTerm(nets["random"], weight=1.0)
    torch.manual_seed(0)
    model = build_model("eccv16_small").eval()
    grey = (crops(2).mean(1, keepdim=True).expand(-1, 3, -1, -1) * 255).round().to(torch.uint8)
    for grey_mask, expect_zero in ((True, True), (False, False)):
        objective = ColorizationObjective(rebalance=False, grey_mask=grey_mask, perceptual=term)
        _, logs, _ = objective(model, grey)
        assert (float(logs["loss_perceptual"]) == 0) == expect_zero
