"""The local colorizing page (tools/serve.py): its API through gradio_client, a real browser,
bad uploads, limits, and the temporary folder removed at exit.

Each test talks to a real server started as ``python tools/serve.py`` on a free port.
"""

import io
import json
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

from serve_browser import CHROMIUM, colorize_in_browser, foreign_hosts, hints_in_browser
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


def test_a_checkpoint_that_cannot_colorize_is_refused_before_serving(tmp_path, capsys):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    # In-process: it stops before any server starts.
    code = run_tool("serve", ["--ckpt", bad, "--port", _free_port()])
    assert code == 2 and "cannot read checkpoint" in capsys.readouterr().err


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


# --- colour hints: a --task hints checkpoint ---------------------------------------------------

def hints_api(client, paths, hints, temperature=0.38, size=SIZE):
    files = [gradio_client.handle_file(str(p)) for p in paths]
    text = hints if isinstance(hints, str) else json.dumps(hints)
    return client.predict(files, text, temperature, size, api_name="/colorize_hints")


@pytest.fixture(scope="module")
def hints_server(trained_hints):
    srv = Server(trained_hints, "--max-megapixels", "1")  # the last one counts
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def coffee(tmp_path_factory):
    """A second photo, of another size and name."""
    path = tmp_path_factory.mktemp("coffee") / "coffee.jpg"
    Image.fromarray(skdata.coffee()).resize((90, 60)).save(path, quality=90)
    return path


HINTS = {"rocket.jpg": [{"x": 30, "y": 20, "color": "#c03020"},
                        {"x": 100, "y": 70, "ab": [-20, 40], "size": 5}],
         "coffee.jpg": [{"x": 45.5, "y": 30, "color": "#2040c0", "size": 1}]}


def test_api_hints_give_the_cli_pixels_and_a_hints_file_that_reproduces_them(
        hints_server, trained_hints, rocket, coffee, tmp_path):
    status, _, _, downloads = hints_api(hints_server.client(tmp_path), [rocket, coffee], HINTS)
    assert status == "Colorized 2 of 2 photo(s)."
    names = [Path(d).name for d in downloads]
    assert names == ["rocket.png", "coffee.png", "hints.json", "colorized.zip"]
    table = json.loads(Path(downloads[2]).read_text())
    with zipfile.ZipFile(downloads[-1]) as zf:
        assert sorted(zf.namelist()) == ["coffee.png", "hints.json", "rocket.png"]
        assert json.loads(zf.read("hints.json")) == table
    # The file given back is the CLI's format: the CLI, given it, makes the page's pixels.
    assert table == {k: [dict(e, size=e.get("size", 3)) for e in v] for k, v in HINTS.items()}
    (tmp_path / "hints.json").write_text(json.dumps(table))
    assert run_tool("colorize", [rocket, coffee, "--ckpt", trained_hints, "-o", tmp_path / "cli",
                                 "--format", "png", "--device", "cpu", "--size", SIZE,
                                 "--hints", tmp_path / "hints.json"]) == 0
    for path in downloads[:2]:
        page = np.asarray(Image.open(path))
        assert np.array_equal(page, np.asarray(Image.open(tmp_path / "cli" / Path(path).name)))


def test_bad_hints_on_the_api_get_a_message_and_the_server_keeps_serving(
        hints_server, rocket, tmp_path):
    client = hints_server.client(tmp_path)
    bad = {"outside": ({"rocket.jpg": [{"x": 130, "y": 10, "color": "#c03020"}]},
                       "the point (x=130, y=10) is outside the photo (120x80 pixels"),
           "colour": ({"rocket.jpg": [{"x": 3, "y": 4, "color": "#zz3020"}]},
                      "entry 1: color '#zz3020' is not a colour like \"#c03020\""),
           "photo": ({"other.jpg": [{"x": 3, "y": 4, "color": "#c03020"}]},
                     "hints for 'other.jpg', a photo not given; the photos are rocket.jpg"),
           "json": ('{"rocket.jpg": [', "not valid JSON")}
    for name, (hints, message) in bad.items():
        with pytest.raises(gradio_client.exceptions.AppError) as err:
            hints_api(client, [rocket], hints)
        assert message in str(err.value), name
        assert hints_api(client, [rocket], "")[0] == "Colorized 1 of 1 photo(s)."


def test_a_model_without_hint_inputs_says_hints_need_a_hints_checkpoint(server, rocket,
                                                                         tmp_path):
    assert "checkpoint from `tools/train.py --task hints`" in httpx.get(server.url + "config").text
    client = server.client(tmp_path)
    with pytest.raises(gradio_client.exceptions.AppError, match="has no hint inputs"):
        hints_api(client, [rocket], {"rocket.jpg": [{"x": 3, "y": 4, "color": "#c03020"}]})
    assert hints_api(client, [rocket], "")[0] == "Colorized 1 of 1 photo(s)."


class _NoProgress:
    @staticmethod
    def tqdm(items, desc=None):
        return items


def _select(index):
    """The event of a click on item ``index`` (a gallery's) or at [x, y] (an image's)."""
    import gradio
    return gradio.SelectData(None, {"index": index, "value": None})


def test_the_hint_editor_places_colours_moves_deletes_and_keeps_hints_per_photo(
        trained_hints, rocket, coffee, tmp_path):
    import torch

    from splitbrain import color, web
    from splitbrain.colorize import colorize, load_colorizer
    from splitbrain.hints import Hint, ab_to_hex, hex_to_ab

    page = web.Page(load_colorizer(trained_hints, size=SIZE), "hints.pt", web.Limits(), tmp_path)
    *_, session = page.run([str(rocket), str(coffee)], 0.38, SIZE, _NoProgress())

    def unpack(out):
        assert len(out) == len(web.HINT_OUTPUTS)
        return dict(zip(web.HINT_OUTPUTS, out))

    def lightness_at(path, x, y):
        rgb = np.asarray(Image.open(path).convert("RGB")).copy()
        return float(color.lightness(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0, 0, y, x])

    out = unpack(page.place(session, "add", 3, 30, 20))
    session = out["session"]
    (hint,) = session["photos"][0]["hints"]
    # A new hint starts at the most likely colour there, the first suggestion.
    assert hint["x"] == 30 and hint["y"] == 20 and hint["ab"] == session["suggestions"][0]
    assert len(out["suggestions"]) == web.SUGGESTIONS
    here = lightness_at(rocket, 30, 20)
    shown = [ab_to_hex(ab, here) for ab in session["suggestions"]]
    assert [caption for _, caption in out["suggestions"]] == shown
    assert out["colour"] == shown[0] and out["list"].choices[0][0].startswith("1: x 30, y 20, #")
    first = out["compare"][1]

    # A suggested colour, then the picker's.
    out = unpack(page.use_suggestion(session, _select(2)))
    session = out["session"]
    assert session["photos"][0]["hints"][0]["ab"] == session["suggestions"][2]
    out = unpack(page.set_colour(session, "#C03020"))
    session = out["session"]
    assert session["photos"][0]["hints"][0] == {"x": 30, "y": 20, "color": "#c03020", "size": 3}
    result = np.asarray(Image.open(out["compare"][1]))
    assert out["compare"][1] != first  # a new result (the two-step model's pixels may not move)
    # The CLI's function gives the same pixels.
    expected = colorize(Image.open(rocket), page._colorizer(0.38, SIZE),
                        [Hint(30, 20, hex_to_ab("#c03020"), 3)])
    assert np.array_equal(result, np.asarray(expected))

    # Bad input: a message, nothing changed.
    for bad, message in ((page.set_colour(session, "#zz3020"), "is not a colour like"),
                         (page.place(session, "add", 3, 120, 5), "is outside rocket.jpg "
                                                                 "(120x80 pixels)")):
        bad = unpack(bad)
        assert message in bad["message"]
        assert all(v is None or isinstance(v, dict) and v.get("__type__") == "update"
                   for k, v in bad.items() if k != "message"), "nothing else may change"

    # Move it (its colour stays), add a second, delete the first.
    out = unpack(page.place(session, "move", 3, 60, 40))
    session = out["session"]
    assert session["photos"][0]["hints"] == [{"x": 60, "y": 40, "color": "#c03020", "size": 3}]
    session = unpack(page.place(session, "add", 5, 10, 70))["session"]
    assert [h["size"] for h in session["photos"][0]["hints"]] == [3, 5]
    session = unpack(page.choose(session, 0))["session"]
    session = unpack(page.delete(session))["session"]
    assert [(h["x"], h["y"]) for h in session["photos"][0]["hints"]] == [(10, 70)]

    # The second photo has its own hints; the first keeps its own.
    out = page.pick(session, _select(1))
    session = out[-1]
    assert out[0][0].endswith("coffee.png") and session["photos"][1]["hints"] == []
    out = unpack(page.place(session, "add", 3, 5, 6))
    session = out["session"]
    table = json.loads(out["file"])
    assert list(table) == ["rocket.jpg", "coffee.jpg"]
    assert [(h["x"], h["y"]) for h in table["coffee.jpg"]] == [(5, 6)]
    assert [Path(d).name for d in out["downloads"]] == ["rocket.png", "coffee.png", "hints.json",
                                                        "colorized.zip"]
    assert json.loads(Path(out["downloads"][2]).read_text()) == table
    # Clear empties only this photo's hints.
    session = unpack(page.clear(session))["session"]
    assert session["photos"][1]["hints"] == [] and len(session["photos"][0]["hints"]) == 1


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                    "(apt-get install chromium; .ci/run installs it)")
def test_in_a_browser_a_click_places_a_hint_a_suggested_colour_changes_it_and_the_cli_agrees(
        hints_server, trained_hints, tmp_path):
    pytest.importorskip("playwright", reason="playwright (the Python package) is in the test "
                                             "extra")
    # Larger than the page shows it: the click is scaled back to the photo's own pixels.
    photo = tmp_path / "big_rocket.jpg"
    Image.fromarray(skdata.rocket()).resize((900, 600)).save(photo, quality=90)
    shot = tmp_path / "hints.jpg"
    seen = hints_in_browser(hints_server.url, photo, tmp_path, screenshot=shot)
    assert seen["scale"] < 0.9, "the photo should be shown smaller than its own size"
    x, y = map(int, re.match(r"1: x (\d+), y (\d+), #[0-9a-f]{6}$", seen["hint"]).groups())
    assert abs(x - seen["expected"][0]) <= 1 and abs(y - seen["expected"][1]) <= 1
    assert seen["swatches"] == 6 and shot.stat().st_size > 10_000
    with zipfile.ZipFile(seen["zip"]) as zf:
        table = json.loads(zf.read("hints.json"))
        page = np.asarray(Image.open(io.BytesIO(zf.read("big_rocket.png"))))
    assert list(table) == ["big_rocket.jpg"] and len(table["big_rocket.jpg"]) == 1
    shown = [np.asarray(Image.open(_fetch(src))) for src in seen["results"]]
    assert np.array_equal(shown[-1], page)
    # The page's hints file and the CLI give the page's pixels; each change changed them.
    (tmp_path / "hints.json").write_text(json.dumps(table))
    cli = cli_output(trained_hints, photo, tmp_path / "cli", "--size", str(SIZE), "--hints",
                     str(tmp_path / "hints.json"))
    assert np.array_equal(page, cli)
    plain = cli_output(trained_hints, photo, tmp_path / "plain", "--size", str(SIZE))
    assert np.array_equal(shown[0], plain)
    # The swatch changed the hint's colour (the two-step model's pixels barely follow hints).
    assert seen["picked"].startswith(seen["hint"][:seen["hint"].rindex("#")])
    assert seen["picked"] != seen["hint"]
    assert seen["requests"] and foreign_hosts(seen["requests"], hints_server.url) == []
