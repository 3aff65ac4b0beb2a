"""tools/compute_prior.py: a prior that sums to 1 with finite weights; refuses to overwrite."""

import numpy as np
from PIL import Image
from skimage import data as skdata

from splitbrain import color
from splitbrain.prior import load_prior
from tools_util import run_tool


def test_compute_prior_on_a_folder(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    for name in ("astronaut", "coffee"):
        Image.fromarray(getattr(skdata, name)()).resize((64, 64)).save(tmp_path / "imgs" / f"{name}.png")
    Image.new("RGB", (64, 64), (128, 128, 128)).save(tmp_path / "imgs" / "grey.png")
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"")
    out = tmp_path / "prior.npy"
    assert run_tool("compute_prior", ["--data", tmp_path / "imgs", "--out", out,
                                      "--size", 32, "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    # 4 files: the grey one is left out, the broken one skipped (and counted) with a readable
    # image served in its place, so 3 colour images go into the histogram.
    assert "images used: 3" in text and "skipped: 1" in text and "bins seen" in text
    prior = np.load(out)
    assert prior.shape == (313,) and abs(prior.sum() - 1) < 1e-9
    weights = color.rebalance_weights(load_prior(out))
    assert np.isfinite(weights.numpy()).all()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    before = out.read_bytes()
    assert run_tool("compute_prior", ["--data", tmp_path / "imgs", "--out", out]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
