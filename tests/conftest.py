"""Shared fixtures: small real photographs (from scikit-image) written to temporary folders,
a decompression bomb, and small colorize and hints checkpoints."""

import struct
import zlib

import pytest
import torch
from PIL import Image
from skimage import data as skdata

from tools_util import run_tool

# One thread, as every subprocess a test starts has (OMP_NUM_THREADS=1): a float reduction
# split over other thread counts rounds differently, and the tests compare in-process results
# with a server's or a torchrun worker's pixel for pixel. On 2 cores, more threads than one
# per process also only fight each other when a test runs a subprocess beside itself.
torch.set_num_threads(1)

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def _photo(name, size):
    return Image.fromarray(getattr(skdata, name)()).resize(size)


@pytest.fixture
def photo():
    """``photo(name="astronaut", size=(40, 30))`` -> a small RGB PIL photograph."""
    return lambda name="astronaut", size=(40, 30): _photo(name, size)


@pytest.fixture
def write_photos():
    """``write_photos(folder, n=3, size=(50, 40), ext="jpg")`` -> the paths it wrote.

    Each file is a different real photo (cycling through a few), so colours differ per file.
    """
    def write(folder, n=3, size=(50, 40), ext="jpg"):
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"p{i}.{ext}" for i in range(n)]
        for i, path in enumerate(paths):
            _photo(PHOTOS[i % len(PHOTOS)], size).save(path)
        return paths
    return write


@pytest.fixture
def bomb_png():
    """``bomb_png(path, width=30000, height=30000)`` -> path: a PNG whose header says that many
    pixels (1-bit grey) in 74 bytes, a decompression bomb. Pillow refuses it on opening, so
    its pixel data is a stub."""
    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    def write(path, width=30000, height=30000):
        path.write_bytes(b"\x89PNG\r\n\x1a\n" +
                         chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)) +
                         chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
        return path
    return write


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A colorize checkpoint from two training steps of the demo network."""
    out = tmp_path_factory.mktemp("colorize_run")
    code = run_tool("train", ["--task", "colorize", f"run.out={out}", "optim.iterations=2",
                              "data.crop=32", "data.val_crop=32", "data.train_length=8",
                              "data.val_length=4", "optim.batch_size=4", "color.prior_images=4",
                              "run.device=cpu"])
    assert code == 0
    return out / "latest.pt"


@pytest.fixture(scope="session")
def trained_hints(tmp_path_factory):
    """A hints checkpoint (the network takes colour hints) from two training steps."""
    out = tmp_path_factory.mktemp("hints_run")
    code = run_tool("train", ["--task", "hints", f"run.out={out}", "optim.iterations=2",
                              "data.crop=32", "data.val_crop=32", "data.train_length=8",
                              "data.val_length=4", "optim.batch_size=4", "color.prior_images=4",
                              "run.device=cpu"])
    assert code == 0
    return out / "latest.pt"


# The longest file (torchrun launches, a third of the suite's time) comes first: pytest-xdist
# hands out whole files in this order, so one worker starts on it while the other runs the rest.
FIRST = ("test_distributed.py",)


def pytest_collection_modifyitems(items):
    """A test that uses a running server (test_serve.py's ``server`` and ``hints_server``
    fixtures start ``tools/serve.py`` in a subprocess) is slow, as the marker says; FIRST's
    files run first."""
    for item in items:
        if {"server", "hints_server"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.path.name not in FIRST)  # stable: the rest keep order
