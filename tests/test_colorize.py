"""Colorizing photos: full resolution kept, every input mode, folders, refusals, ECCV16 weights."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import color as skcolor
from skimage import data as skdata

from splitbrain import checkpoint as ckpt
from splitbrain import color
from splitbrain.colorize import Colorizer, colorize, colorizer_from_checkpoint, load_colorizer
from tools_util import load_tool, run_tool

ROOT = Path(__file__).resolve().parent.parent


def photo(size, mode="RGB"):
    """A crop of a real photo resized to ``size`` = (W, H), in ``mode``."""
    img = Image.fromarray(skdata.chelsea()).resize(size)
    return img.convert(mode) if mode != "RGB" else img


def lightness(img):
    return skcolor.rgb2lab(np.asarray(img.convert("RGB")))[..., 0]


@pytest.mark.parametrize("size", [(37, 53), (61, 29), (64, 64)])
def test_output_has_input_size_and_lightness(trained, size):
    img = photo(size)
    out = colorize(img, load_colorizer(trained, size=32))
    assert out.size == img.size and out.mode == "RGB"
    # Only colour is added: the output's L is the input's, up to 8-bit rounding (and the rare
    # clipping of a saturated colour back into the sRGB gamut).
    diff = np.abs(lightness(out) - lightness(img))
    assert np.median(diff) < 0.5 and np.percentile(diff, 99) < 2.0


def test_colour_inputs_are_recoloured_from_their_lightness_only(trained):
    colorizer = load_colorizer(trained, size=32)
    img = photo((40, 40))
    grey = Image.fromarray(np.asarray(img.convert("L"))).convert("RGB")
    a = np.asarray(colorize(img, colorizer), dtype=float)
    b = np.asarray(colorize(grey, colorizer), dtype=float)
    # The two differ only as much as PIL's grey and CIE L differ; far less than the photo's colour.
    assert np.abs(a - b).mean() < 6


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16"])
def test_every_input_mode_through_the_cli(trained, tmp_path, mode):
    src = tmp_path / "in"
    src.mkdir()
    img = photo((45, 33))
    if mode == "I;16":
        arr = (np.asarray(img.convert("L"), dtype=np.uint16) * 257)
        img = Image.fromarray(arr)  # uint16 -> mode I;16
        assert img.mode == "I;16"
    else:
        img = img.convert(mode)
    img.save(src / "x.png")
    assert run_tool("colorize", [src, "--ckpt", trained, "-o", tmp_path / "out",
                                 "--size", 32, "--device", "cpu"]) == 0
    out = Image.open(tmp_path / "out" / "x.png")
    assert out.size == (45, 33) and out.mode == "RGB"


def test_exif_rotation_is_applied(trained, tmp_path):
    img = photo((40, 24))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert run_tool("colorize", [tmp_path / "r.jpg", "--ckpt", trained, "-o", tmp_path / "out",
                                 "--size", 32]) == 0
    assert Image.open(tmp_path / "out" / "r.jpg").size == (24, 40)


def test_nested_folders_side_by_side_and_format(trained, tmp_path):
    (tmp_path / "in" / "a" / "b").mkdir(parents=True)
    photo((30, 20)).save(tmp_path / "in" / "top.jpg")
    photo((20, 30)).save(tmp_path / "in" / "a" / "b" / "deep.png")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    assert run_tool("colorize", [tmp_path / "in", "--ckpt", trained, "-o", tmp_path / "out",
                                 "--size", 32, "--side-by-side", "--format", "png"]) == 0
    assert Image.open(tmp_path / "out" / "top.png").size == (60, 20)
    assert Image.open(tmp_path / "out" / "a" / "b" / "deep.png").size == (40, 30)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.png")) == ["deep.png", "top.png"]


def test_existing_outputs_are_not_overwritten(trained, tmp_path, capsys):
    photo((20, 20)).save(tmp_path / "p.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "p.png").write_bytes(b"keep me")
    args = [tmp_path / "p.png", "--ckpt", trained, "-o", tmp_path / "out", "--size", 32]
    assert run_tool("colorize", args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "p.png").read_bytes() == b"keep me"
    assert run_tool("colorize", args + ["--overwrite"]) == 0
    assert Image.open(tmp_path / "out" / "p.png").size == (20, 20)


def test_corrupt_file_among_good_ones(trained, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for i in range(3):
        photo((24 + i, 24)).save(tmp_path / "in" / f"good{i}.png")
    (tmp_path / "in" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code = run_tool("colorize", [tmp_path / "in", "--ckpt", trained, "-o", tmp_path / "out",
                                 "--size", 32])
    err = capsys.readouterr().err
    assert code == 1 and "bad.jpg" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good0.png", "good1.png",
                                                                    "good2.png"]


def test_checkpoint_that_cannot_colorize(tmp_path, capsys):
    ckpt.save({"task": "probe", "state_dict": {}}, tmp_path / "probe.pt")
    photo((20, 20)).save(tmp_path / "p.png")
    assert run_tool("colorize", [tmp_path / "p.png", "--ckpt", tmp_path / "probe.pt",
                                 "-o", tmp_path / "out"]) == 2
    assert "cannot colorize" in capsys.readouterr().err
    torch.save({"some": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a splitbrain checkpoint"):
        load_colorizer(tmp_path / "foreign.pt")


# --- the official ECCV16 release ------------------------------------------------------------

def official_eccv16_shapes():
    """Key -> shape of the released ECCV16 state dict, from its public model definition."""
    shapes = {}

    def conv(prefix, cin, cout, k=3, transposed=False):
        shapes[f"{prefix}.weight"] = (cin, cout, k, k) if transposed else (cout, cin, k, k)
        shapes[f"{prefix}.bias"] = (cout,)

    def bn(prefix, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)

    widths = {1: (1, [64, 64]), 2: (64, [128, 128]), 3: (128, [256] * 3), 4: (256, [512] * 3),
              5: (512, [512] * 3), 6: (512, [512] * 3), 7: (512, [512] * 3)}
    for block, (cin, outs) in widths.items():
        for i, cout in enumerate(outs):
            conv(f"model{block}.{2 * i}", cin, cout)
            cin = cout
        bn(f"model{block}.{2 * len(outs)}", cin)
    conv("model8.0", 512, 256, k=4, transposed=True)
    conv("model8.2", 256, 256)
    conv("model8.4", 256, 256)
    conv("model8.6", 256, 313, k=1)
    shapes["model_out.weight"] = (2, 313, 1, 1)
    return shapes


def fake_release():
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g) * 0.05 for k, s in official_eccv16_shapes().items()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = state[k].abs() + 1
    state["model_out.weight"] = (color.ab_bin_centres().t() / 110)[:, :, None, None]
    return state


def test_official_eccv16_weights_map_onto_our_network(tmp_path):
    state = fake_release()
    colorizer = colorizer_from_checkpoint(ckpt.from_official_eccv16(state))
    own = colorizer.model.state_dict()
    mapped = {k for k in own if not k.endswith("num_batches_tracked")}
    # Every key of the release is used: all but model_out land in the network.
    assert mapped == set(state) - {"model_out.weight"}
    torch.testing.assert_close(colorizer.centres, color.ab_bin_centres(), atol=1e-4, rtol=0)


def test_official_eccv16_decoding_is_reproduced(tmp_path):
    state = fake_release()
    torch.save(state, tmp_path / "colorization_release_v2-9b330a0b.pth")
    colorizer = load_colorizer(tmp_path / "colorization_release_v2-9b330a0b.pth", size=32)
    L = torch.rand(1, 1, 32, 32) * 100
    # The release's own forward, on its unmodified weights: conv8 logits (x2.606 folded in),
    # softmax, the 1x1 model_out convolution, x110.
    from splitbrain.models import build_model
    release = build_model("eccv16")
    weights = {k: v for k, v in state.items() if k != "model_out.weight"}
    release.load_state_dict({**release.state_dict(), **weights})
    with torch.no_grad():
        logits_release = release.eval()(L)
    ref = torch.einsum("bqhw,cq->bchw", logits_release.softmax(1),
                       state["model_out.weight"][:, :, 0, 0]) * 110
    ours = colorizer.predict_ab(L)
    ref_up = torch.nn.functional.interpolate(ref, size=(32, 32), mode="bilinear",
                                             align_corners=False)
    torch.testing.assert_close(ours, ref_up, atol=1e-3, rtol=1e-4)


def test_python_api_accepts_paths(trained, tmp_path):
    photo((33, 21)).save(tmp_path / "p.jpg")
    out = colorize(tmp_path / "p.jpg", trained)
    assert out.size == (33, 21)
    assert isinstance(load_colorizer(trained), Colorizer)


# --- hostile input ----------------------------------------------------------------------------

def test_two_inputs_with_one_output_name_are_refused_before_any_work(trained, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    photo((20, 20)).save(tmp_path / "a" / "p.png")
    photo((24, 20)).save(tmp_path / "b" / "p.png")
    code = run_tool("colorize", [tmp_path / "a" / "p.png", tmp_path / "b" / "p.png",
                                 "--ckpt", trained, "-o", tmp_path / "out"])
    assert code == 2 and "written by more than one input" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # Passed as folders, their layout keeps them apart.
    assert run_tool("colorize", [tmp_path / "a", tmp_path / "b", "--ckpt", trained, "-o",
                                 tmp_path / "out", "--size", 32]) == 2  # both map to out/p.png
    photo((20, 20)).save(tmp_path / "a" / "q.jpg")
    photo((20, 20)).save(tmp_path / "a" / "q.png")
    assert run_tool("colorize", [tmp_path / "a", "--ckpt", trained, "-o", tmp_path / "o2",
                                 "--format", "png"]) == 2  # q.jpg and q.png -> q.png


@pytest.mark.parametrize("option, message", [
    (["--batch-size", "0"], "--batch-size: must be at least 1"),
    (["--size", "-4"], "--size: must be at least 1"),
    (["--temperature", "-1"], "--temperature: must be a finite number >= 0"),
    (["--temperature", "nan"], "--temperature: must be a finite number >= 0"),
    (["--device", "gpu"], "unknown device 'gpu'; valid: auto, cpu, cuda, cuda:N"),
])
def test_invalid_options_are_refused(trained, tmp_path, capsys, option, message):
    photo((20, 20)).save(tmp_path / "p.png")
    code = run_tool("colorize", [tmp_path / "p.png", "--ckpt", trained, "-o", tmp_path / "o",
                                 *option])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_output_folder_that_is_a_file_is_refused(trained, tmp_path, capsys):
    photo((20, 20)).save(tmp_path / "p.png")
    (tmp_path / "taken").write_text("mine")
    assert run_tool("colorize", [tmp_path / "p.png", "--ckpt", trained, "-o",
                                 tmp_path / "taken"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "mine"


# --- full resolution in bounded memory --------------------------------------------------------

def test_row_chunks_give_the_colours_of_one_full_resolution_pass(trained):
    from splitbrain.colorize import colorize_tensor

    colorizer = load_colorizer(trained, size=32)
    g = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (2, 3, 70, 53), dtype=torch.uint8, generator=g)
    chunked = colorize_tensor(rgb, colorizer, chunk_rows=16)  # 70 rows: 4 full chunks + 6
    L = color.lightness(rgb)
    ref = color.lab_to_rgb(torch.cat([L, colorizer.predict_ab(L)], dim=1))
    ref = (ref.clamp(0, 1) * 255).round().byte()
    assert chunked.shape == ref.shape and chunked.dtype == torch.uint8
    assert (chunked.int() - ref.int()).abs().max() <= 1


@pytest.mark.slow  # a tool in a subprocess, on 24 megapixels
def test_a_24_megapixel_photo_colorizes_in_under_1_5_gb(trained, tmp_path):
    import subprocess
    import sys

    from skimage import data as skdata

    Image.fromarray(skdata.astronaut()).resize((6000, 4000)).save(tmp_path / "big.jpg",
                                                                  quality=90)
    script = tmp_path / "measure.py"
    script.write_text(
        "import runpy, sys\n"
        f"sys.argv = ['colorize.py', {str(tmp_path / 'big.jpg')!r}, '--ckpt', {str(trained)!r},"
        f" '-o', {str(tmp_path / 'out')!r}]\n"
        "try:\n"
        f"    runpy.run_path({str(ROOT / 'tools' / 'colorize.py')!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        # VmHWM: this process's own peak since exec. ru_maxrss would also keep the peak of the
        # process it was forked from (an xdist worker holding 2 GB of earlier tests' tensors).
        "status = open('/proc/self/status').read()\n"
        "print('peak', status.split('VmHWM:')[1].split()[0])\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    peak_mib = int(result.stdout.split("peak")[-1]) / 1024  # VmHWM is in kB
    assert peak_mib < 1536, peak_mib  # the whole process, torch included
    assert Image.open(tmp_path / "out" / "big.jpg").size == (6000, 4000)


def test_an_unwritable_output_folder_is_refused_before_any_work(trained, tmp_path, capsys):
    photo((20, 20)).save(tmp_path / "p.png")
    # /proc refuses new folders even to root, as a read-only mount does.
    assert run_tool("colorize", [tmp_path / "p.png", "--ckpt", trained, "-o",
                                 "/proc/splitbrain_out"]) == 2
    assert "is not writable" in capsys.readouterr().err


@pytest.mark.slow  # a tool in a subprocess under a memory limit
def test_a_photo_too_large_for_memory_fails_alone_and_the_others_are_colorized(trained,
                                                                             tmp_path):
    import subprocess
    import sys

    (tmp_path / "in").mkdir()
    photo((40, 30)).save(tmp_path / "in" / "a_small.png")
    photo((48, 36)).save(tmp_path / "in" / "c_small.png")
    # 4 x 40000 px: its working size at --size 64 is 64 x 640000, gigabytes of activations.
    photo((40000, 4)).save(tmp_path / "in" / "b_strip.png")
    script = tmp_path / "limited.py"
    script.write_text(
        "import resource, runpy, sys\n"
        "import torch, PIL.Image, splitbrain.colorize  # imported before the limit\n"
        "status = open('/proc/self/status').read()\n"
        "vm_kib = int(status.split('VmSize:')[1].split()[0])\n"
        "limit = vm_kib * 1024 + 1024 ** 3  # 1 GiB more address space than now: a real OOM\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        f"sys.argv = ['colorize.py', {str(tmp_path / 'in')!r}, '--ckpt', {str(trained)!r},"
        f" '-o', {str(tmp_path / 'out')!r}, '--size', '64', '--device', 'cpu']\n"
        f"runpy.run_path({str(ROOT / 'tools' / 'colorize.py')!r}, run_name='__main__')\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert re.search(r"b_strip.png: could not colorize \(.*\); a photo this large or elongated "
                     r"may fit with a smaller --size", result.stderr), result.stderr[-2000:]
    assert "colorized 2 of 3 image(s)" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_small.png", "c_small.png"]


def test_a_failure_that_is_not_memory_is_not_blamed_on_the_photo(trained, tmp_path, monkeypatch):
    """Only running out of memory is reported per photo; any other error is a real bug and
    surfaces (with its traceback) instead of a misleading 'too large' for every photo."""
    tool = load_tool("colorize")
    photo((40, 30)).save(tmp_path / "a.png")

    def broken(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (injected)")
    monkeypatch.setattr(tool, "colorize_batch", broken)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        tool.main([str(tmp_path / "a.png"), "--ckpt", str(trained), "-o",
                   str(tmp_path / "out"), "--device", "cpu"])
    assert tool.out_of_memory(MemoryError()) and tool.out_of_memory(RuntimeError(
        "DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes"))
