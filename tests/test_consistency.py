"""Shift consistency (splitbrain.consistency, tools/evaluate.py --metric consistency) against
hand-computed cases: models that ignore their input, and models whose output is a known
function of where the crop was taken."""

import json

import pytest
import torch
import torch.nn as nn

from splitbrain import checkpoint as ckpt
from splitbrain.colorize import Colorizer
from splitbrain.consistency import (classifier_consistency, colorizer_consistency, crop_pair,
                                    overlap_distance, pair_offsets)
from tools_util import run_tool

SIZE, SHIFT, N = 12, 5, 40


class Images(torch.utils.data.Dataset):
    """N uint8 images of (SIZE + SHIFT) px whose value grows by one per column: pixel (y, x)
    of every channel is x + 10 (so a crop's first column tells its horizontal offset)."""

    def __init__(self, n=N, side=SIZE + SHIFT):
        self.n, self.side = n, side

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        ramp = (torch.arange(self.side) + 10).to(torch.uint8).expand(3, self.side, self.side)
        return ramp.clone(), index % 3


def test_offsets_are_in_range_repeatable_and_independent_of_batching():
    a = pair_offsets(range(50), 7, seed=3)
    assert a.shape == (50, 2, 2) and a.min() >= 0 and a.max() <= 7
    assert len(torch.unique(a)) == 8  # every offset 0..7 occurs
    assert torch.equal(pair_offsets(range(20, 30), 7, seed=3), a[20:30])
    assert not torch.equal(pair_offsets(range(50), 7, seed=4), a)


def test_crops_and_overlap_by_hand():
    frame = torch.arange(100.0).reshape(1, 1, 10, 10)
    offsets = torch.tensor([[[0, 0], [2, 3]]])
    first, second = crop_pair(frame, offsets, 6)
    assert torch.equal(first[0, 0], frame[0, 0, :6, :6])
    assert torch.equal(second[0, 0], frame[0, 0, 2:8, 3:9])
    # The same frame cropped twice: on the overlap both crops hold the same values.
    assert overlap_distance(first[0], second[0], offsets[0], 6) == 0.0
    # Two channels that differ by (3, 4) everywhere: Euclidean distance 5.
    a, b = torch.zeros(2, 6, 6), torch.stack([torch.full((6, 6), 3.0), torch.full((6, 6), 4.0)])
    assert overlap_distance(a, b, offsets[0], 6) == pytest.approx(5.0)


class _Constant(nn.Module):
    """A colorizer or encoder that ignores its input."""

    def __init__(self, value):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x):
        return self.value.expand(x.shape[0], 2, *x.shape[-2:])


class _ColumnIndex(nn.Module):
    """a = the column index within the crop (b = 0): shifting the crop by dx shifts a by dx."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, L):
        B, _, H, W = L.shape
        a = torch.arange(W, dtype=torch.float32).expand(B, 1, H, W)
        return torch.cat([a, torch.zeros_like(a)], dim=1) / 110.0 + self.dummy


def test_a_colorizer_that_ignores_its_input_does_not_move():
    colorizer = Colorizer(_Constant(0.3), head="reg")
    r = colorizer_consistency(colorizer, Images(), SIZE, SHIFT, batch_size=16)
    assert r == {"ab_shift_change": 0.0, "images": N}


def test_a_colorizer_tied_to_crop_position_moves_by_the_horizontal_offset():
    colorizer = Colorizer(_ColumnIndex(), head="reg")
    r = colorizer_consistency(colorizer, Images(), SIZE, SHIFT, batch_size=16, seed=1)
    # The same scene pixel X is column X - x1 in one crop and X - x2 in the other.
    offsets = pair_offsets(range(N), SHIFT, seed=1)
    expected = (offsets[:, 0, 1] - offsets[:, 1, 1]).abs().double().mean()
    assert r["ab_shift_change"] == pytest.approx(float(expected), abs=1e-4)
    assert r["ab_shift_change"] > 0


class _FirstPixelFeatures:
    """Features of a crop: its top-left value; so its class reveals the crop's offset."""

    device = torch.device("cpu")

    def __call__(self, rgb):
        return {"conv1": rgb[:, :1, 0, 0].float(), "conv2": torch.zeros(rgb.shape[0], 1)}


def _parity_head(x):  # class 0 or 1 by the parity of the first feature
    odd = (x[:, 0].long() % 2).float()
    return torch.stack([1 - odd, odd, torch.zeros_like(odd)], dim=1)


def test_classifier_consistency_by_hand():
    heads = {"conv1": _parity_head, "conv2": lambda x: torch.tensor([[0.0, 0.0, 1.0]]).expand(
        x.shape[0], -1)}
    r = classifier_consistency(_FirstPixelFeatures(), heads, Images(), SIZE, SHIFT,
                               batch_size=16, seed=2)
    offsets = pair_offsets(range(N), SHIFT, seed=2)
    x1, x2 = offsets[:, 0, 1], offsets[:, 1, 1]
    # Top-left value 10 + x: the class is the parity of the horizontal offset.
    assert r["conv1"]["consistency"] == pytest.approx(100.0 * float((x1 % 2 == x2 % 2).double().mean()))
    labels = torch.arange(N) % 3
    hits = ((x1 % 2) == labels).sum() + ((x2 % 2) == labels).sum()
    assert r["conv1"]["top1"] == pytest.approx(100.0 * float(hits) / (2 * N))
    # A head that ignores its input is always consistent; right on every third image.
    assert r["conv2"]["consistency"] == 100.0
    assert r["conv2"]["top1"] == pytest.approx(100.0 * float((labels == 2).double().mean()))


def test_crops_of_the_wrong_size_are_refused():
    with pytest.raises(ValueError, match="size \\+ max_shift = 17"):
        colorizer_consistency(Colorizer(_Constant(0), head="reg"), Images(side=16), SIZE, SHIFT)


# --- the command line ------------------------------------------------------------------------

TINY = ["data.crop=67", "data.val_crop=67", "data.train_length=16", "data.val_length=8",
        "optim.batch_size=4", "color.prior_images=8", "run.log_every=1", "run.image_every=100",
        "run.val_every=100", "run.ckpt_every=2", "run.device=cpu",
        "model.name=alexnet_colorization_small"]


@pytest.fixture(scope="module")
def colorizer_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("consistency") / "run"
    assert run_tool("train", ["--task", "colorize", f"run.out={out}", "optim.iterations=2",
                              "model.blur=3", *TINY]) == 0
    return out / "latest.pt"


def test_cli_colorizer_consistency_beside_the_colour_metrics(colorizer_ckpt, tmp_path, capsys):
    capsys.readouterr()
    assert run_tool("evaluate", ["--metric", "consistency", "--ckpt", colorizer_ckpt,
                                 "--data", "sample", "--length", 6, "--shift", 8,
                                 "--device", "cpu", "--json", tmp_path / "r.json"]) == 0
    out = capsys.readouterr().out
    assert "ab change under shifts <= 8 px" in out and "| model |" in out
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["val/model/ab_shift_change"] > 0 and 0 < results["val/model/auc"] <= 100


def test_cli_probe_consistency_per_layer_and_bad_requests(colorizer_ckpt, tmp_path, capsys):
    run = tmp_path / "probe"
    assert run_tool("probe", ["--ckpt", colorizer_ckpt, "--layer", "conv2,conv5", "--out", run,
                              "probe.solver=sklearn", "sklearn.Cs=[1.0]", "data.crop=64",
                              "data.train_length=32", "data.val_length=14",
                              "optim.batch_size=16", "run.device=cpu"]) == 0
    assert (run / "heads.pt").is_file()
    capsys.readouterr()
    assert run_tool("evaluate", ["--metric", "consistency", "--probe", run, "--shift", 8,
                                 "--device", "cpu", "--json", tmp_path / "p.json"]) == 0
    out = capsys.readouterr().out
    assert "| conv2 |" in out and "| conv5 |" in out
    results = json.loads((tmp_path / "p.json").read_text())
    assert set(results) == {"conv2", "conv5"}
    for r in results.values():
        assert 0 <= r["top1"] <= 100 and 0 <= r["consistency"] <= 100 and r["images"] == 14
    # Bad requests: each a message and a non-zero exit.
    (run / "heads.pt").unlink()
    assert run_tool("evaluate", ["--metric", "consistency", "--probe", run]) != 0
    assert "heads.pt not found" in capsys.readouterr().err
    for argv, message in [
            (["--metric", "consistency"], "give --ckpt FILE"),
            (["--metric", "consistency", "--ckpt", colorizer_ckpt, "--probe", run],
             "one of the two"),
            (["--probe", run], "--probe is read by --metric consistency"),
            (["--metric", "consistency", "--ckpt", colorizer_ckpt, "--shift", 0],
             "--shift must be at least 1")]:
        assert run_tool("evaluate", argv) != 0
        assert message in capsys.readouterr().err, argv
    assert ckpt.load(colorizer_ckpt)["model"]["kwargs"]["blur"] == 3
