"""Linear probes: the frozen-encoder protocol, shared-forward equivalence, accuracy, bad input."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from threadpoolctl import threadpool_limits
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from splitbrain import checkpoint as ckpt
from splitbrain.models import build_model
from splitbrain.models.alexnet import ALEXNET_WIDTHS
from splitbrain.probe import ProtocolError
from splitbrain.probe.data import probe_datasets
from splitbrain.probe.encoder import (PROBE_LAYERS, PROBE_SIZES, RESIZE_MODES, FrozenEncoder,
                                      encoder_input, resize_features)
from splitbrain.probe.solver_sgd import SGDRecipe, build_heads, probe_sgd, train_probes
from splitbrain.probe.heads import from_sklearn, load_heads
from splitbrain.probe.solver_sklearn import knn_accuracy, logistic_probe, probe_sklearn
from tools_util import run_captured, run_tool

ROOT = Path(__file__).resolve().parent.parent
CROP = 64  # the smallest crop at which every AlexNet tap has more than one position
CHANCE = 100 / 7  # the sample photos: 7 classes
TINY = ["data.crop=64", "data.train_length=32", "data.val_length=14", "optim.batch_size=16",
        "optim.iterations=3", "optim.lr_steps=[2]", "run.log_every=1", "run.eval_every=2",
        "run.device=cpu"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny problems: a second thread (torch, BLAS, OpenMP) costs more than it gives, and on a
    busy 2-core machine it spins: 50x slower. (Limits only reach libraries already loaded;
    probe_sklearn imports scikit-learn at module level.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def make_model(name, seed=0):
    """A small model with non-trivial BatchNorm statistics: a forward in train mode moves them."""
    torch.manual_seed(seed)
    model = build_model(name)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model


def save_ckpt(path, name="alexnet_colorization_small", task="colorize"):
    model = make_model(name)
    ckpt.save({"task": task, "model": {"name": name, "kwargs": {}},
               "state_dict": model.state_dict(), "config": {}}, path)
    return path


@pytest.fixture(scope="module")
def sample():
    """Labelled crops of the bundled photos: class = source photo, disjoint train/val regions."""
    train, val, classes = probe_datasets("sample", CROP, CROP, train_length=160, val_length=140)
    return train, val, len(classes)


def short_recipe(iterations=6, **kwargs):
    return SGDRecipe(**{"batch_size": 16, "iterations": iterations, "lr_steps": [4], **kwargs})


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# --- features ----------------------------------------------------------------------------------

def test_probe_sizes_give_about_9k_values_per_layer_at_alexnet_widths():
    dims = {name: w * PROBE_SIZES[name] ** 2
            for name, w in zip(PROBE_LAYERS, ALEXNET_WIDTHS)}
    assert dims == {"conv1": 9600, "conv2": 9216, "conv3": 9600, "conv4": 9600, "conv5": 9216}


@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_features_are_resized_to_the_probe_size_and_flattened(mode):
    model = make_model("alexnet_colorization_small")
    encoder = FrozenEncoder(model, "all", resize=mode)
    features = encoder(torch.rand(2, 3, 227, 227))  # conv1 55×55, conv2 27×27, conv3-5 13×13
    for name, f in features.items():
        assert f.shape == (2, encoder.dims[name]) and f.dtype == torch.float32
        assert encoder.dims[name] == model.feature_channels[name] * PROBE_SIZES[name] ** 2
    x = torch.arange(16.0).view(1, 1, 4, 4)
    pooled = resize_features(x, 2, "avgpool")
    assert torch.equal(pooled, torch.tensor([[2.5, 4.5, 10.5, 12.5]]))  # 2×2 block means


def test_each_encoder_gets_its_own_input():
    rgb = torch.rand(2, 3, CROP, CROP)
    colorization = make_model("alexnet_colorization_small")
    assert encoder_input(colorization, rgb).shape == (2, 1, CROP, CROP)  # L
    splitbrain = make_model("splitbrain_alexnet_small")
    lab = encoder_input(splitbrain, rgb)
    assert lab.shape == (2, 3, CROP, CROP) and lab[:, 1:].abs().max() > 1  # raw Lab
    # The split-brain representation concatenates both halves' channels.
    dims = FrozenEncoder(splitbrain, "conv1").dims
    assert dims["conv1"] == 2 * splitbrain.halves[0].feature_channels["conv1"] * 10 ** 2
    # A half trained alone takes the full Lab too and picks its own channels.
    half = build_model("splitbrain_alexnet_small", half="ab2l")
    features = FrozenEncoder(half, "conv1")(rgb)
    assert features["conv1"].shape == (2, half.feature_channels["conv1"] * 10 ** 2)


@pytest.mark.parametrize("name", ["alexnet_colorization_small", "splitbrain_alexnet_small"])
def test_features_of_8_bit_input_equal_those_of_float_input(name):
    u8 = torch.randint(0, 256, (2, 3, CROP, CROP), dtype=torch.uint8,
                       generator=torch.Generator().manual_seed(5))
    encoder = FrozenEncoder(make_model(name), "all")
    from_u8, from_float = encoder(u8), encoder(u8.float() / 255)
    for layer in encoder.layers:
        assert from_u8[layer].dtype == torch.float32
        # L from 8-bit input is a table lookup, within 1e-4 of the float conversion.
        torch.testing.assert_close(from_u8[layer], from_float[layer], rtol=1e-4, atol=1e-5)


# --- labelled data -------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["sample", "folder"])
def test_probe_datasets_yield_8_bit_crops(source, tmp_path):
    if source == "folder":
        source = tmp_path / "data"
        _image_folder(source / "train", ["cat", "dog"])
        _image_folder(source / "val", ["cat", "dog"])
    crop = 32
    train, val, classes = probe_datasets(source, crop, 48, train_length=14, val_length=7)
    assert len(classes) == (7 if source == "sample" else 2)
    for dataset in (train, val):
        for i in range(len(dataset)):
            rgb, label = dataset[i]
            assert type(rgb) is torch.Tensor  # a plain tensor, not a tv_tensors.Image
            assert rgb.dtype == torch.uint8 and rgb.shape == (3, crop, crop)
            assert 0 <= label < len(classes)


# --- the protocol --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["alexnet_colorization_small", "splitbrain_alexnet_small"])
def test_encoder_is_bitwise_unchanged_and_only_heads_learn(name, sample):
    train, _, num_classes = sample
    model = make_model(name)
    before = state(model)
    encoder = FrozenEncoder(model, "all")
    heads = build_heads(encoder.dims, num_classes)
    heads_before = state(heads)
    train_probes(encoder, heads, train, short_recipe(3))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    assert not any(m.training for m in model.modules())
    for layer, head in heads.items():
        assert not head.norm.affine and head.norm.weight is None  # BN without parameters
        assert head.fc.weight.grad is not None
        assert not torch.equal(head.fc.weight, heads_before[f"{layer}.fc.weight"])


def test_a_trainable_encoder_parameter_is_refused_before_training(sample):
    model = make_model("alexnet_colorization_small")
    encoder = FrozenEncoder(model, "conv2")
    model.encoder.conv1[0].weight.requires_grad_(True)
    heads = build_heads(encoder.dims, sample[2])
    with pytest.raises(ProtocolError, match="must be frozen"):
        train_probes(encoder, heads, sample[0], short_recipe(1))
    assert model.encoder.conv1[0].weight.grad is None


def test_an_encoder_leaving_eval_mode_is_caught_during_training(sample):
    model = make_model("alexnet_colorization_small")
    encoder = FrozenEncoder(model, "conv2")

    def leave_eval(module, args, out):  # as a stray model.train() in a callback would
        model.train()

    model.encoder.conv1.register_forward_hook(leave_eval)  # during step 1
    heads = build_heads(encoder.dims, sample[2])
    with pytest.raises(ProtocolError, match="eval mode"):
        train_probes(encoder, heads, sample[0], short_recipe(3))


def test_an_encoder_that_changes_is_caught_after_training(sample):
    model = make_model("alexnet_colorization_small")
    encoder = FrozenEncoder(model, "conv2")
    bn = model.encoder.conv1[1]

    def drift(module, args, out):  # a buffer update that eval mode alone would not stop
        bn.running_mean.add_(1e-6)

    model.encoder.conv1.register_forward_hook(drift)
    heads = build_heads(encoder.dims, sample[2])
    with pytest.raises(ProtocolError, match="changed.*conv1.1.running_mean"):
        train_probes(encoder, heads, sample[0], short_recipe(2))


# --- one shared forward == five separate probes ------------------------------------------------

@pytest.mark.parametrize("name", ["alexnet_colorization_small", "splitbrain_alexnet_small"])
def test_layer_all_equals_five_single_layer_runs(name, sample):
    train, val, num_classes = sample
    val = torch.utils.data.Subset(val, range(35))
    model = make_model(name)
    recipe = short_recipe(4, lr_steps=[2])
    together, _ = probe_sgd(FrozenEncoder(model, "all"), train, val, num_classes, recipe,
                            seed=3, log_every=4)
    for layer in PROBE_LAYERS:
        alone, _ = probe_sgd(FrozenEncoder(model, layer), train, val, num_classes, recipe,
                             seed=3, log_every=4)
        assert alone == {layer: together[layer]}  # accuracies and losses, exactly


# --- accuracy on the bundled photos ------------------------------------------------------------

def test_sgd_probe_is_well_above_chance_on_the_sample_photos(sample):
    train, val, num_classes = sample
    encoder = FrozenEncoder(make_model("splitbrain_alexnet_small"), "conv2,conv3")
    results, heads = probe_sgd(encoder, train, val, num_classes,
                               short_recipe(40, batch_size=32, lr_steps=[]))
    assert max(r["top1"] for r in results.values()) > 3 * CHANCE, results
    assert all(r["top5"] >= r["top1"] for r in results.values())
    # The exported heads classify the validation set exactly as the trained ones did.
    assert exported_top1(encoder, heads, val) == {k: r["top1"] for k, r in results.items()}


def exported_top1(encoder, heads, dataset):
    """Top-1 (%) of LinearHeads on a dataset, computed independently of the solvers."""
    hits, n = {name: 0 for name in heads}, 0
    with torch.no_grad():
        for rgb, y in torch.utils.data.DataLoader(dataset, batch_size=64):
            for name, f in encoder(rgb).items():
                hits[name] += int((heads[name](f).argmax(1) == y).sum())
            n += len(y)
    return {name: 100.0 * h / n for name, h in hits.items()}


def test_sklearn_probe_and_knn_are_well_above_chance_on_the_sample_photos(sample):
    train, val, num_classes = sample
    encoder = FrozenEncoder(make_model("splitbrain_alexnet_small"), "conv1,conv4")
    results, heads = probe_sklearn(encoder, train, val, num_classes, batch_size=80, Cs=[1.0])
    for r in results.values():
        assert r["top1"] > 3 * CHANCE and r["knn_top1"] > 2 * CHANCE, results
    top1 = exported_top1(encoder, heads, val)
    for name, r in results.items():  # float32 heads vs float64 sklearn: a near-tie may flip
        assert abs(top1[name] - r["top1"]) <= 100.0 / len(val), (name, top1[name], r["top1"])


def test_logistic_and_knn_on_separable_points():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 20)) * 5
    y = np.repeat(np.arange(3), 30)
    x = (centres[y] + rng.normal(size=(90, 20))).astype(np.float32)
    r, fitted = logistic_probe(x[::2], y[::2], x[1::2], y[1::2], 3, Cs=[0.01, 1.0])
    assert r["top1"] == 100.0 and r["top5"] == 100.0
    # As one linear head: sklearn's probabilities, from our standardise-then-linear form.
    probs = torch.softmax(from_sklearn(fitted, 3)(torch.from_numpy(x)), dim=1).double()
    assert torch.allclose(probs, torch.from_numpy(fitted.predict_proba(x)).double(), atol=1e-4)
    # Two classes (sklearn keeps one row) and a class never seen in training (never chosen).
    two = (y[::2] > 0).astype(np.int64) * 2  # labels 0 and 2 of 3 classes
    _, fitted2 = logistic_probe(x[::2], two, x[1::2], two, 3, Cs=[1.0])
    head = from_sklearn(fitted2, 3)
    probs2 = torch.softmax(head(torch.from_numpy(x[::2])), dim=1).double()
    assert torch.allclose(probs2[:, [0, 2]], torch.from_numpy(fitted2.predict_proba(x[::2])).double(),
                          atol=1e-4)
    assert (probs2[:, 1] == 0).all()
    knn = knn_accuracy(x[::2], y[::2], x[1::2], y[1::2], 3, k=5)
    assert knn["top1"] == 100.0
    # k = 1 is the nearest neighbour in cosine similarity.
    q = np.array([[1.0, 0.1]], np.float32)
    bank = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    assert knn_accuracy(bank, np.array([0, 1]), q, np.array([1]), 2, k=1)["top1"] == 100.0


# --- the command line --------------------------------------------------------------------------

def test_cli_writes_one_result_row_per_layer(tmp_path, capsys):
    ck = save_ckpt(tmp_path / "sb.pt", "splitbrain_alexnet_small", "splitbrain")
    out = tmp_path / "run"
    # In-process, as its command line runs it (the exit codes of a real process are checked
    # by the packaging and torchrun tests).
    proc = run_captured(capsys, "probe", ["--ckpt", ck, "--layer", "all", "--data", "sample",
                                          "--out", out, *TINY])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| conv4 |" in proc.stdout and "top1" in proc.stdout  # the markdown table
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["layer"] for r in rows] == list(PROBE_LAYERS)
    assert all(0 <= float(r["top1"]) <= float(r["top5"]) <= 100 for r in rows)
    results = json.loads((out / "results.json").read_text())
    assert list(results["layers"]) == list(PROBE_LAYERS)
    assert results["model"]["name"] == "splitbrain_alexnet_small" and results["num_classes"] == 7
    assert (out / "config.yaml").is_file()
    heads, meta = load_heads(out / "heads.pt")  # for tools/evaluate.py --metric consistency
    assert list(heads) == list(PROBE_LAYERS) and meta["solver"] == "sgd"
    assert all(h.weight.shape == (7, results["layers"][n]["dim"]) for n, h in heads.items())
    events = EventAccumulator(str(out))
    events.Reload()
    for layer in PROBE_LAYERS:  # a curve per layer
        assert len(events.Scalars(f"probe/{layer}/train_loss")) == 3
        assert [e.step for e in events.Scalars(f"probe/{layer}/top1")] == [2, 3]


def test_cli_random_baseline_single_layer_and_sklearn_solver(tmp_path):
    out = tmp_path / "run"
    assert run_tool("probe", ["--init", "random", "--arch", "alexnet_colorization_small",
                              "--layer", "conv3", "--out", out, "probe.solver=sklearn",
                              "sklearn.Cs=[1.0]", "probe.resize=avgpool", *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["layers"]) == ["conv3"] and results["init"] == "random"
    row = results["layers"]["conv3"]
    assert {"top1", "top5", "knn_top1", "knn_top5"} <= set(row)
    assert row["C"] == 1.0 and row["holdout_top1"] is None  # one C: nothing to choose


def _image_folder(root, classes):
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40, 40), (40 * i, 90, 200)).save(root / cls / f"{i}.png")


def _bad_inputs(tmp_path):
    flat = tmp_path / "flat"
    for split in ("train", "val"):
        (flat / split).mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(flat / split / "a.png")
    mismatch = tmp_path / "mismatch"
    _image_folder(mismatch / "train", ["cat", "dog"])
    _image_folder(mismatch / "val", ["bird", "cat"])
    good = save_ckpt(tmp_path / "good.pt")
    eccv = save_ckpt(tmp_path / "eccv.pt", "eccv16_small")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    return {
        "unknown layer": (["--ckpt", good, "--layer", "conv6"],
                          r"unknown layer\(s\) \['conv6'\]; valid: conv1, conv2, conv3, conv4, "
                          r"conv5, or all"),
        "fc layer": (["--ckpt", good, "--layer", "fc6"], r"\['fc6'\]; valid: conv1"),
        "eccv16 checkpoint": (["--ckpt", eccv], "no AlexNet conv1..conv5 encoder"),
        "foreign file": (["--ckpt", foreign], "not a splitbrain checkpoint"),
        "missing checkpoint": (["--ckpt", tmp_path / "nope.pt"], "checkpoint not found"),
        "no weights and no arch": (["--init", "random"], "needs --arch"),
        "arch contradicts": (["--ckpt", good, "--arch", "splitbrain_alexnet_small"],
                             "contradicts the checkpoint's model alexnet_colorization_small"),
        "unknown precision": (["--ckpt", good, "run.precision=fp8"], "unknown precision"),
        "unknown device": (["--ckpt", good, "--device", "gpu"],
                           r"unknown device 'gpu'; valid: auto, cpu, cuda, cuda:N"),
        "device without colon": (["--ckpt", good, "--device", "cuda0"],
                                 r"unknown device 'cuda0'; valid: auto"),
        "no class subfolders": (["--ckpt", good, "--data", flat], "has no class subfolders"),
        "classes differ": (["--ckpt", good, "--data", mismatch],
                           r"only in train \['dog'\], only in val \['bird'\]"),
        "no split folders": (["--ckpt", good, "--data", mismatch / "train"],
                             r"train not found.*ImageFolder"),
    }


def test_bad_input_is_a_clear_error_before_any_work(tmp_path, capsys):
    for case, (argv, message) in _bad_inputs(tmp_path).items():
        out = tmp_path / f"out_{case.replace(' ', '_')}"
        code = run_tool("probe", [*argv, "--out", out, *TINY])
        err = capsys.readouterr().err
        assert code == 2, case
        assert re.search(message, err), f"{case}: {err}"
        assert not out.exists(), f"{case}: the run directory was created"


def test_a_folder_dataset_in_imagefolder_layout_probes(tmp_path):
    data = tmp_path / "data"
    _image_folder(data / "train", ["cat", "dog"])
    _image_folder(data / "val", ["cat", "dog"])
    (data / "val" / ".ipynb_checkpoints").mkdir()  # hidden: not a class
    out = tmp_path / "run"
    assert run_tool("probe", ["--init", "random", "--arch", "alexnet_colorization_small",
                              "--layer", "conv2", "--data", data, "--out", out, *TINY,
                              "data.short_side=72", "optim.batch_size=2"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["num_classes"] == 2 and list(results["layers"]) == ["conv2"]


RANDOM_CONV1 = ["--init", "random", "--arch", "alexnet_colorization_small", "--layer", "conv1"]


def test_results_come_last_and_a_failed_write_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "heads.pt").mkdir(parents=True)  # the first output cannot be written
    assert run_tool("probe", [*RANDOM_CONV1, "--out", out, *TINY]) == 2
    err = capsys.readouterr().err
    assert f"could not write the results to {out}" in err and "Traceback" not in err
    # results.json would say "complete": nothing of the results may be there.
    assert not (out / "results.json").exists() and not (out / "results.csv").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_unwritable_out_is_refused_before_any_work(tmp_path, capsys, where):
    if where == "file":
        (tmp_path / "f").write_text("mine")
        out, expected = tmp_path / "f", "is a file, not a folder"
    else:
        out, expected = Path("/proc/splitbrain_probe"), "is not writable"
    assert run_tool("probe", [*RANDOM_CONV1, "--out", out, *TINY]) == 2
    captured = capsys.readouterr()
    assert f"--out {out}: " in captured.err and expected in captured.err
    assert "probing" not in captured.out  # refused before the encoder saw any data
    if where == "file":
        assert (tmp_path / "f").read_text() == "mine"


def test_a_training_run_folder_is_not_used_as_out(tmp_path, capsys):
    run = tmp_path / "train_run"
    run.mkdir()
    (run / "config.yaml").write_text("task: colorize\n")
    save_ckpt(run / "latest.pt")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert run_tool("probe", ["--ckpt", run / "latest.pt", "--layer", "conv1", "--out", run,
                              *TINY]) == 2
    err = capsys.readouterr().err
    assert f"{run} holds a training run (latest.pt); choose another --out" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing added or replaced


def _hostile_split(folder, bad):
    """Two classes of two good photos each, and ``bad`` files that cannot be decoded in cat/."""
    _image_folder(folder, ["cat", "dog"])
    for i, content in zip(range(bad), [b"this is a text file", b""] * bad):
        (folder / "cat" / f"bad{i}.jpg").write_bytes(content)


def test_unreadable_files_are_skipped_counted_and_an_unreadable_folder_refused(tmp_path, capsys):
    data = tmp_path / "data"
    _hostile_split(data / "train", 1)
    _hostile_split(data / "val", 2)
    out = tmp_path / "run"
    argv = [*RANDOM_CONV1, "--data", data, *TINY, "data.short_side=72", "optim.batch_size=2"]
    assert run_tool("probe", [*argv, "--out", out]) == 0
    results = json.loads((out / "results.json").read_text())
    # Validation reads every file once: both bad ones are found.
    assert results["unreadable_files"]["val"] == {"not an image": 1, "empty file": 1}
    assert "val: skipped 2 unreadable file(s)" in (out / "probe.log").read_text()
    # A split where nothing decodes is refused before any work, not a DataLoader traceback.
    for image in (data / "val").rglob("[0-9].png"):
        image.write_bytes(b"")
    assert run_tool("probe", [*argv, "--out", tmp_path / "run2"]) == 2
    assert "none of the 6 files tried out of 6 could be read" in capsys.readouterr().err
    assert not (tmp_path / "run2").exists()


def test_probe_evaluation_uses_one_set_of_heads_across_ranks(sample, monkeypatch):
    """Each rank's heads normalise their own slices; evaluation (mid-run and final) must first
    average the running statistics over ranks, so every rank scores the same heads."""
    from splitbrain import distributed
    from splitbrain.probe import solver_sgd

    _, val, num_classes = sample
    encoder = FrozenEncoder(make_model("alexnet_colorization_small"), "conv2")
    heads = build_heads(encoder.dims, num_classes)
    averaged = []

    def average_(tensors):  # a two-rank world whose other rank has zero statistics
        averaged.extend(tensors)
        for t in tensors:
            t.div_(2)
    monkeypatch.setattr(distributed, "average_", average_)
    for b in heads.buffers():
        if b.is_floating_point():
            b.fill_(4.0)
    solver_sgd.evaluate_probes(encoder, heads, torch.utils.data.Subset(val, range(4)), 4)
    floats = [b for b in heads.buffers() if b.is_floating_point()]
    assert floats and {id(b) for b in averaged} == {id(b) for b in floats}
    assert all(torch.all(b == 2.0) for b in floats)


@pytest.mark.parametrize("where, when", [("SummaryWriter", "before probing"),
                                         ("solve", "while probing")])
def test_a_full_disk_is_a_message_not_a_traceback(tmp_path, capsys, monkeypatch, where, when):
    from splitbrain.probe import run as probe_run_module

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(probe_run_module, where, full)
    out = tmp_path / "probe"
    assert run_tool("probe", [*RANDOM_CONV1, "--out", out, *TINY]) == 2
    err = capsys.readouterr().err
    assert f"writing to {out} failed {when} ([Errno 28] No space left on device)" in err
    assert "Traceback" not in err and not (out / "results.json").exists()
