"""tools/compute_prior.py: the prior of real photos, its summary, and refusing to overwrite."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab

from splitbrain import color
from tools_util import run_captured, run_tool

def reference_counts(paths):
    """ab bin counts of whole images, Lab by scikit-image, nearest bin by brute force."""
    centres = color.ab_bin_centres(dtype=torch.float64).numpy()  # (313, 2)
    counts = np.zeros(len(centres))
    for path in paths:
        ab = rgb2lab(np.asarray(Image.open(path).convert("RGB")))[..., 1:].reshape(-1, 1, 2)
        nearest = ((ab - centres) ** 2).sum(-1).argmin(1)
        counts += np.bincount(nearest, minlength=len(centres))
    return counts


@pytest.fixture
def folder(tmp_path, photo):
    """Two colour photos, a grey image and an empty file, all 32x32 so centre crops are whole."""
    d = tmp_path / "imgs"
    d.mkdir()
    photo("astronaut", (32, 32)).save(d / "a.png")
    photo("coffee", (32, 32)).save(d / "b.png")
    # The broken file is replaced by the next one, the grey image, which the prior leaves out.
    (d / "c_broken.jpg").write_bytes(b"")
    photo("chelsea", (32, 32)).convert("L").convert("RGB").save(d / "d_grey.png")
    return d


def test_cli_writes_the_prior_of_the_readable_colour_images(folder, tmp_path, capsys):
    out = tmp_path / "priors" / "prior.npy"
    from splitbrain.data import UnreadableImageWarning

    # In-process, as its command line runs it; the skip is reported (a warning, on stderr).
    with pytest.warns(UnreadableImageWarning, match="c_broken.jpg: empty file"):
        proc = run_captured(capsys, "compute_prior", ["--data", folder, "--out", out, "--size",
                                                      "32", "--batch-size", "3", "--device",
                                                      "cpu"])
    assert proc.returncode == 0, proc.stderr
    prior = np.load(out)
    assert prior.shape == (313,) and abs(prior.sum() - 1) < 1e-9 and (prior >= 0).all()
    # Lab by kornia vs scikit-image differ by ~1e-4, enough to move a rare boundary pixel.
    counts = reference_counts([folder / "a.png", folder / "b.png"])
    assert np.abs(prior - color.smooth_prior(torch.from_numpy(counts)).numpy()).sum() < 0.01
    weights = color.rebalance_weights(torch.from_numpy(prior)).numpy()
    assert np.isfinite(weights).all()
    assert not [p for p in out.parent.iterdir() if p != out]  # no temp file left behind

    # The summary agrees with the file it wrote.
    text = proc.stdout
    assert "images used: 2" in text and "unreadable files skipped: 1" in text
    seen = int(re.search(r"bins seen: (\d+) of 313", text).group(1))
    assert abs(seen - (counts > 0).sum()) <= 2
    entropy = float(re.search(r"entropy: ([\d.]+) bits", text).group(1))
    assert entropy == pytest.approx(color.prior_entropy(prior), abs=0.006)
    low, high = map(float, re.search(r"weights.*: ([\d.]+) \.\. ([\d.]+)", text).groups())
    assert (low, high) == pytest.approx((weights.min(), weights.max()), abs=6e-4)


def test_refuses_to_overwrite_without_the_flag(folder, tmp_path, capsys):
    out = tmp_path / "prior.npy"
    out.write_bytes(b"precious")
    assert run_tool("compute_prior", ["--data", folder, "--out", out]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"precious"
    args = ["--data", folder, "--out", out, "--size", 32, "--overwrite"]
    with pytest.warns(UserWarning, match="c_broken.jpg"):
        assert run_tool("compute_prior", args) == 0
    assert np.load(out).shape == (313,)


def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "prior.npy"
    assert run_tool("compute_prior", ["--data", tmp_path / "nowhere", "--out", out]) == 2
    assert "nowhere" in capsys.readouterr().err
    (tmp_path / "grey").mkdir()
    Image.new("RGB", (40, 40), (90, 90, 90)).save(tmp_path / "grey" / "g.png")
    assert run_tool("compute_prior", ["--data", tmp_path / "grey", "--out", out,
                                      "--size", 32]) == 2
    assert "no colour pixels" in capsys.readouterr().err
    assert not out.exists()


def test_max_images_caps_the_images_used(tmp_path, capsys, write_photos):
    write_photos(tmp_path / "imgs", 6, size=(32, 32))
    assert run_tool("compute_prior", ["--data", tmp_path / "imgs", "--out", tmp_path / "p.npy",
                                      "--size", 32, "--max-images", 4]) == 0
    assert "images used: 4" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_unwritable_out_folder_is_refused_before_the_pass(folder, tmp_path, capsys, where):
    if where == "file":
        (tmp_path / "f").write_text("mine")
        out, expected = tmp_path / "f" / "prior.npy", "is a file, not a folder"
    else:
        out, expected = Path("/proc/splitbrain_prior/prior.npy"), "is not writable"
    assert run_tool("compute_prior", ["--data", folder, "--out", out, "--size", 32]) == 2
    captured = capsys.readouterr()
    assert "--out" in captured.err and expected in captured.err
    assert "wrote" not in captured.out and not out.exists()
