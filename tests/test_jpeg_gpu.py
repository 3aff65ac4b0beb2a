"""data.decode=gpu: the GPU loader gives the CPU loader's batches, and falls back with a reason.

No GPU is needed: the decoder is injectable, and a PIL-based stand-in with decode_jpeg's
signature makes the GPU path's bookkeeping (which files go to the decoder, seeds, crops,
fallbacks for refused and unreadable files, resume positions) checkable bit for bit against
the CPU path on this machine. tools/gpu_check.sh runs the real nvJPEG path on a GPU.
"""

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from splitbrain.data import build_dataset
from splitbrain.loaders import train_loader
from splitbrain.jpeg_gpu import EncodedSamples, choose_decode, gpu_train_loader
from tools_util import run_tool


def pil_decode(data, device="cpu", mode=None, apply_exif_orientation=False):
    """decode_jpeg's contract, through PIL (as load_rgb decodes): raises RuntimeError on a bad
    file, takes one tensor or a list, returns uint8 (3, H, W) RGB."""
    if isinstance(data, list):
        return [pil_decode(d, device, mode, apply_exif_orientation) for d in data]
    pil_decode.calls += 1
    try:
        with Image.open(io.BytesIO(data.numpy().tobytes())) as img:
            img.load()
            if apply_exif_orientation:
                img = ImageOps.exif_transpose(img)
            rgb = img.convert("RGB")
    except Exception as err:  # noqa: BLE001
        raise RuntimeError(f"decode failed: {err}") from None
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).to(device)


pil_decode.calls = 0


@pytest.fixture
def mixed_folder(tmp_path, write_photos):
    """JPEGs (one rotated by EXIF, one grey), a PNG, a CMYK JPEG and a truncated JPEG."""
    folder = tmp_path / "photos"
    write_photos(folder, n=4, size=(90, 70))
    Image.open(folder / "p0.jpg").convert("L").save(folder / "grey.jpg")
    Image.open(folder / "p1.jpg").save(folder / "lossless.png")
    Image.open(folder / "p2.jpg").convert("CMYK").save(folder / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: the upright image is 70 wide, 90 high
    Image.open(folder / "p3.jpg").save(folder / "rotated.jpg", exif=exif)
    data = (folder / "p0.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[:len(data) // 2])  # header intact
    return folder


def test_gpu_path_gives_the_cpu_batches_with_the_same_skips(mixed_folder):
    cpu_set = build_dataset(str(mixed_folder), "train", 48, train=True)
    gpu_set = build_dataset(str(mixed_folder), "train", 48, train=True)
    with pytest.warns(UserWarning, match="truncated"):
        cpu = [b for _, b in zip(range(6), train_loader(cpu_set, 3, seed=5, start_step=0))]
    pil_decode.calls = 0
    with pytest.warns(UserWarning, match="truncated"):
        gpu = [b for _, b in zip(range(6), gpu_train_loader(
            gpu_set, 3, seed=5, start_step=0, workers=0, device="cpu", decoder=pil_decode))]
    for (a, _), (b, labels) in zip(cpu, gpu):
        assert a.dtype == b.dtype == torch.uint8 and torch.equal(a, b)
        assert labels.tolist() == [0, 0, 0]
    assert pil_decode.calls > 0  # the JPEGs did go through the decoder


def test_only_rgb_and_grey_jpegs_go_to_the_gpu(mixed_folder):
    dataset = build_dataset(str(mixed_folder), "train", 48, train=True)
    items = {dataset.files[i].name: EncodedSamples(dataset)[(i, 0)]
             for i in range(len(dataset))}
    to_gpu = sorted(name for name, item in items.items() if "jpeg" in item)
    # truncated.jpg: the header is fine; the decoder finds the damage. rotated.jpg stays on
    # the CPU: torchvision's CUDA decoder does not apply EXIF orientation.
    assert to_gpu == ["grey.jpg", "p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg", "truncated.jpg"]
    assert items["rotated.jpg"]["crop"].shape == (3, 48, 48)
    assert items["cmyk.jpg"]["crop"].shape == items["lossless.png"]["crop"].shape == (3, 48, 48)


def test_a_resumed_gpu_loader_continues_where_the_cpu_one_would(mixed_folder):
    (mixed_folder / "truncated.jpg").unlink()
    dataset = build_dataset(str(mixed_folder), "train", 32, train=True)
    loader = gpu_train_loader(dataset, 2, seed=1, start_step=0, workers=0, device="cpu",
                              decoder=pil_decode)
    loader.batch_sampler.start_step = 7  # as tools/train.py does on --resume
    resumed = next(iter(loader))[0]
    straight = [b for _, (b, _) in zip(range(8), train_loader(dataset, 2, seed=1,
                                                               start_step=0))][-1]
    assert torch.equal(resumed, straight)


def test_where_the_gpu_cannot_decode_the_run_says_why_and_uses_the_cpu(mixed_folder):
    folder = build_dataset(str(mixed_folder), "train", 32, train=True)
    decode, note = choose_decode("gpu", folder, torch.device("cpu"))
    assert decode == "cpu" and "not a CUDA GPU" in note and "decoding on the CPU" in note
    sample = build_dataset("sample", "train", 32, train=True, length=4)
    decode, note = choose_decode("gpu", sample, torch.device("cuda"))
    assert decode == "cpu" and "needs a folder of image files" in note
    assert choose_decode("cpu", folder, torch.device("cpu")) == ("cpu", "")
    with pytest.raises(ValueError, match="data.decode='nvjpeg'"):
        choose_decode("nvjpeg", folder, None)


def test_train_with_gpu_decode_on_a_cpu_machine_falls_back_and_trains(tmp_path, write_photos,
                                                                      capsys):
    write_photos(tmp_path / "photos", n=4, size=(90, 70))
    out = tmp_path / "run"
    assert run_tool("train", ["--task", "colorize", f"run.out={out}", "optim.iterations=2",
                              f"data.train={tmp_path / 'photos'}", "data.val=sample",
                              "data.decode=gpu", "data.crop=32", "data.val_crop=32",
                              "data.val_length=4", "optim.batch_size=2",
                              "color.prior_images=4", "run.device=cpu"]) == 0
    log = (out / "train.log").read_text()
    assert "data.decode=gpu: the run's device is cpu, not a CUDA GPU; decoding on the CPU" in log
    assert (out / "latest.pt").is_file()
