"""The local colorizing page (tools/serve.py): its API through gradio_client, a real browser,
bad uploads, limits, and the temporary folder removed at exit.

Each test talks to a real server started as ``python tools/serve.py`` on a free port.
"""

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import color as skcolor
from skimage import data as skdata

from serve_browser import CHROMIUM, colorize_in_browser, foreign_hosts
from tools_util import load_tool, run_tool

gradio_client = pytest.importorskip("gradio_client", reason="gradio_client is in the test extra")

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False",
           HF_HUB_OFFLINE="1")
SIZE = 64  # working size the server starts with: small, so each forward pass is quick
MAX_MB, MAX_MEGAPIXELS = 1, 0.05


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python tools/serve.py`` in a subprocess; ``url`` and ``workdir`` read from its output."""

    def __init__(self, ckpt, *options):
        port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "serve.py"), "--ckpt", str(ckpt),
             "--port", str(port), "--size", str(SIZE), "--max-upload-mb", str(MAX_MB),
             "--max-megapixels", str(MAX_MEGAPIXELS), *options],
            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.url, self.workdir, self.output = None, None, []
        deadline = time.monotonic() + 120
        while self.url is None and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break  # exited
            self.output.append(line)
            if m := re.search(r"uploads and results in (\S+)", line):
                self.workdir = Path(m.group(1))
            if m := re.search(r"(http://127\.0\.0\.1:\d+)", line):
                self.url = m.group(1) + "/"
        if self.url is None:
            self.stop()
            raise RuntimeError("the server did not start:\n" + "".join(self.output))

    def client(self, downloads):
        return gradio_client.Client(self.url, download_files=str(downloads), verbose=False)

    def stop(self):
        """SIGTERM, as a service manager sends; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def server(trained):
    srv = Server(trained)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def rocket(tmp_path_factory):
    """A real photo (scikit-image's rocket), small, as a JPEG file."""
    path = tmp_path_factory.mktemp("photos") / "rocket.jpg"
    Image.fromarray(skdata.rocket()).resize((120, 80)).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def twin(rocket, tmp_path_factory):
    """Another photo whose result would also be named rocket.png: the rocket, mirrored."""
    path = tmp_path_factory.mktemp("twin") / "rocket.png"
    Image.open(rocket).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(path)
    return path


def colorize_api(client, paths, temperature=0.38, size=SIZE):
    files = [gradio_client.handle_file(str(p)) for p in paths]
    return client.predict(files, temperature, size, api_name="/colorize")


def cli_output(ckpt, photo, out, *options):
    """What tools/colorize.py writes for ``photo`` (as PNG, lossless)."""
    assert run_tool("colorize", [photo, "--ckpt", ckpt, "-o", out, "--format", "png",
                                 "--device", "cpu", *options]) == 0
    return np.asarray(Image.open(Path(out) / (Path(photo).stem + ".png")))


def lightness(img):
    return skcolor.rgb2lab(np.asarray(img.convert("RGB")))[..., 0]


def test_api_result_has_the_input_size_and_lightness_and_the_cli_colours(
        server, trained, rocket, tmp_path):
    status, (before, after), gallery, downloads = colorize_api(server.client(tmp_path), [rocket])
    assert status == "Colorized 1 of 1 photo(s)."
    result, photo = Image.open(after), Image.open(rocket)
    assert result.size == photo.size and Path(after).name == "rocket.png"
    diff = np.abs(lightness(result) - lightness(photo))
    assert np.median(diff) < 0.5 and np.percentile(diff, 99) < 2.0
    # The page and the CLI share one code path: the same pixels, exactly.
    assert np.array_equal(np.asarray(result), cli_output(trained, rocket, tmp_path / "cli",
                                                         "--size", str(SIZE)))
    assert np.array_equal(np.asarray(Image.open(before)), np.asarray(photo.convert("RGB")))
    assert [Path(d).name for d in downloads] == ["rocket.png"]
    assert [g["caption"] for g in gallery] == ["rocket.png"]


def test_temperature_and_working_size_reach_the_model(server, trained, rocket, tmp_path):
    _, (_, after), _, _ = colorize_api(server.client(tmp_path), [rocket], temperature=0.0,
                                       size=32)
    page = np.asarray(Image.open(after))
    cli = cli_output(trained, rocket, tmp_path / "cli", "--size", "32", "--temperature", "0")
    default = cli_output(trained, rocket, tmp_path / "default", "--size", str(SIZE))
    assert np.array_equal(page, cli) and not np.array_equal(page, default)


def test_requests_sent_together_each_get_their_own_settings(server, trained, rocket, tmp_path):
    client = server.client(tmp_path)
    files = [gradio_client.handle_file(str(rocket))]
    jobs = {t: client.submit(files, t, SIZE, api_name="/colorize") for t in (0.0, 1.0)}
    for t, job in jobs.items():
        _, (_, after), _, _ = job.result(timeout=120)
        cli = cli_output(trained, rocket, tmp_path / f"cli{t}", "--size", str(SIZE),
                         "--temperature", str(t))
        assert np.array_equal(np.asarray(Image.open(after)), cli)


def test_every_kind_of_photo_the_cli_reads_gives_the_cli_pixels(server, trained, rocket,
                                                                  tmp_path):
    folder = tmp_path / "kinds"
    folder.mkdir()
    img = Image.open(rocket).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the result is upright
    img.save(folder / "turned.jpg", exif=exif.tobytes(), quality=95)
    grey16 = (np.asarray(img.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(folder / "grey16.png")
    img.convert("CMYK").save(folder / "cmyk.tif")
    rgba = img.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "alpha.png")
    kinds = sorted(folder.iterdir())
    status, _, _, downloads = colorize_api(server.client(tmp_path / "dl"), kinds)
    assert status == f"Colorized {len(kinds)} of {len(kinds)} photo(s)."
    assert Image.open(folder / "grey16.png").mode.startswith("I")  # really 16-bit
    for path, result in zip(kinds, downloads):
        cli = cli_output(trained, path, tmp_path / "cli", "--size", str(SIZE))
        assert np.array_equal(np.asarray(Image.open(result)), cli), path.name
    assert Image.open(downloads[kinds.index(folder / "turned.jpg")]).size == (80, 120)


def _bad_uploads(folder, rocket):
    """{file: what the page must say about it}."""
    folder.mkdir()
    (folder / "notes.jpg").write_text("a text file renamed .jpg\n")
    data = rocket.read_bytes()
    (folder / "cut.jpg").write_bytes(data[:len(data) // 2])
    (folder / "empty.png").write_bytes(b"")
    # A decompression bomb: 9 megapixels in about a kilobyte of PNG.
    Image.new("1", (3000, 3000)).save(folder / "bomb.png")
    return {"notes.jpg": "cannot identify image file 'notes.jpg'. Is it damaged, or not a photo?",
            "cut.jpg": "image file is truncated",
            "empty.png": "empty file (0 bytes)",
            "bomb.png": f"3000x3000 pixels (9.0 megapixels) is over the limit of "
                        f"{MAX_MEGAPIXELS:g} megapixels (start the page with --max-megapixels"}


def test_bad_uploads_give_a_message_and_the_server_keeps_serving(server, rocket, tmp_path):
    client = server.client(tmp_path)
    for name, message in _bad_uploads(tmp_path / "bad", rocket).items():
        with pytest.raises(gradio_client.exceptions.AppError) as err:
            colorize_api(client, [tmp_path / "bad" / name])
        assert message in str(err.value) and "No photo could be read" in str(err.value)
        # The next request still works.
        status, _, _, _ = colorize_api(client, [rocket])
        assert status == "Colorized 1 of 1 photo(s)."


def test_good_photos_among_bad_ones_are_colorized_and_zipped_with_their_names(
        server, rocket, twin, tmp_path):
    bad = _bad_uploads(tmp_path / "bad", rocket)
    inputs = [rocket, tmp_path / "bad" / "notes.jpg", twin, tmp_path / "bad" / "bomb.png"]
    status, _, gallery, downloads = colorize_api(server.client(tmp_path / "dl"), inputs)
    assert status.startswith("Colorized 2 of 4 photo(s). Could not read:")
    assert bad["notes.jpg"] in status and bad["bomb.png"] in status
    names = [Path(d).name for d in downloads]
    assert names == ["rocket.png", "rocket_2.png", "colorized.zip"]
    with zipfile.ZipFile(downloads[-1]) as zf:
        assert zf.namelist() == ["rocket.png", "rocket_2.png"]
        for name, path in zip(zf.namelist(), downloads):
            assert zf.read(name) == Path(path).read_bytes()
    # The second result is the flipped photo's: its own colours, not a copy of the first.
    first, second = (np.asarray(Image.open(d)) for d in downloads[:2])
    assert first.shape == second.shape and not np.array_equal(first, second)


def test_an_upload_over_the_size_limit_is_refused_with_the_limit_named(server, tmp_path):
    big = tmp_path / "scan.tif"
    big.write_bytes(os.urandom(MAX_MB * 2**20 + 1))
    client = server.client(tmp_path)
    with pytest.raises(ValueError, match=r"exceeds the maximum file size of 1048576 bytes"):
        colorize_api(client, [big])
    # The server refuses it too, not only the client: post the file directly.
    reply = httpx.post(server.url + "gradio_api/upload", files={"files": big.open("rb")})
    assert reply.status_code == 413 and "1048576" in reply.text


@pytest.mark.slow
def test_the_temporary_folder_is_removed_at_exit(trained, rocket, tmp_path):
    srv = Server(trained)
    try:
        colorize_api(srv.client(tmp_path), [rocket])
        uploaded = list(srv.workdir.rglob("*.jpg")) + list(srv.workdir.rglob("*.png"))
        assert uploaded, "uploads and results should live in the server's folder"
        srv.proc.send_signal(signal.SIGTERM)  # twice, as an impatient service manager might:
    finally:                                  # the second must not cut the clean-up short
        code = srv.stop()
    assert code == 128 + signal.SIGTERM and not srv.workdir.exists()


def test_a_host_other_than_this_machine_is_warned_about():
    warning = load_tool("serve").host_warning
    assert all(warning(host) is None for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"))
    for host in ("0.0.0.0", "::", "192.168.1.20", "myhost.example"):
        assert "anyone who can reach this machine" in warning(host)


def test_a_checkpoint_that_cannot_colorize_is_refused_before_serving(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "serve.py"), "--ckpt", str(bad),
                           "--port", str(_free_port())], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "cannot read checkpoint" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                    "(apt-get install chromium; .ci/run installs it)")
def test_in_a_browser_upload_compare_download_and_nothing_leaves_the_machine(
        server, trained, rocket, twin, tmp_path):
    pytest.importorskip("playwright", reason="playwright (the Python package) is in the test "
                                             "extra")
    seen = colorize_in_browser(server.url, [rocket, twin], tmp_path)
    assert f"Checkpoint {Path(trained).name}: task colorize" in seen["about"]
    assert seen["status"] == "Colorized 2 of 2 photo(s)."
    assert seen["download_name"] == "rocket.png"
    cli = [cli_output(trained, photo, tmp_path / f"cli{i}", "--size", str(SIZE))
           for i, photo in enumerate((rocket, twin))]
    assert np.array_equal(np.asarray(Image.open(seen["download"])), cli[0])
    # The slider shows a photo and its result, both at full resolution; the gallery switches
    # it to the other photo.
    for photo, srcs, expected in ((rocket, seen["slider"], cli[0]),
                                  (twin, seen["slider_second"], cli[1])):
        before, after = (Image.open(_fetch(src)) for src in srcs)
        assert np.array_equal(np.asarray(after), expected)
        assert np.array_equal(np.asarray(before), np.asarray(Image.open(photo).convert("RGB")))
    assert seen["requests"] and foreign_hosts(seen["requests"], server.url) == []


def _fetch(url):
    reply = httpx.get(url)
    reply.raise_for_status()
    return io.BytesIO(reply.content)
