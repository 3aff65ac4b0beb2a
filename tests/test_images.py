"""Image files of every kind become 8-bit sRGB, or fail with an error naming the file."""

import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from splitbrain.data_health import skip_reason
from splitbrain.images import (IMAGE_EXTENSIONS, ImageReadError, allow_pixels, find_images,
                               load_rgb, to_rgb)


def pixels(img):
    return np.asarray(img, dtype=np.float64)


def test_rgb_is_unchanged(tmp_path, photo):
    img = photo()
    img.save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(img))


def test_grey_and_palette_without_transparency(tmp_path, photo):
    grey = photo().convert("L")
    grey.save(tmp_path / "g.png")
    out = np.asarray(load_rgb(tmp_path / "g.png"))
    assert out.shape == (30, 40, 3)
    assert all(np.array_equal(out[..., c], np.asarray(grey)) for c in range(3))
    pal = photo().convert("P")
    pal.save(tmp_path / "p.png")
    assert np.array_equal(np.asarray(load_rgb(tmp_path / "p.png")), np.asarray(pal.convert("RGB")))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(tmp_path, photo, mode):
    img = photo().convert(mode[:-1])
    alpha = np.linspace(0, 255, 40 * 30).reshape(30, 40).round().astype(np.uint8)
    img.putalpha(Image.fromarray(alpha))
    img.save(tmp_path / "t.png")
    # Reference: the "over" operator on a white background, straight (not premultiplied) alpha.
    colour = pixels(img.convert("RGB"))
    a = alpha[..., None] / 255.0
    expected = colour * a + 255.0 * (1 - a)
    assert np.abs(pixels(load_rgb(tmp_path / "t.png")) - expected).max() <= 1


def test_palette_with_a_transparent_index(tmp_path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "pt.png", transparency=0)
    assert Image.open(tmp_path / "pt.png").mode == "P"
    assert np.asarray(load_rgb(tmp_path / "pt.png")).tolist() == [[[255, 255, 255], [10, 20, 30]]]


VALUES_16 = np.array([[0, 1, 128, 129, 257 * 100, 32767, 40000, 65534, 65535]])


def test_sixteen_bit_grey_file_is_scaled_not_clipped(tmp_path):
    Image.fromarray(VALUES_16.astype(np.uint16)).save(tmp_path / "16.png")
    assert Image.open(tmp_path / "16.png").mode.startswith("I")
    out = np.asarray(load_rgb(tmp_path / "16.png"))
    assert np.array_equal(out[..., 0], np.round(VALUES_16 / 257))  # reference: value / 257
    assert (out[..., 0] == out[..., 2]).all()


def test_every_sixteen_bit_mode_scales_alike():
    big_endian = Image.frombytes("I;16B", (VALUES_16.shape[1], 1),
                                 VALUES_16.astype(">u2").tobytes())
    int32 = Image.fromarray(VALUES_16.astype(np.int32))
    assert int32.mode == "I"
    for img in (big_endian, int32):
        assert np.array_equal(np.asarray(to_rgb(img))[..., 1], np.round(VALUES_16 / 257))
    # 32-bit values outside the 16-bit range saturate instead of wrapping around.
    out_of_range = Image.fromarray(np.array([[-5, 70000]], dtype=np.int32))
    assert np.asarray(to_rgb(out_of_range))[..., 0].tolist() == [[0, 255]]


def test_float_grey():
    unit = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    assert np.asarray(to_rgb(Image.fromarray(unit)))[..., 0].tolist() == [[0, 128, 255]]
    eight_bit = np.array([[0.0, 100.0, 300.0]], dtype=np.float32)
    assert np.asarray(to_rgb(Image.fromarray(eight_bit)))[..., 0].tolist() == [[0, 100, 255]]


def test_cmyk_round_trips_to_the_rgb_it_came_from(tmp_path, photo):
    img = photo()
    img.convert("CMYK").save(tmp_path / "c.tif")  # lossless: exact
    assert np.array_equal(np.asarray(load_rgb(tmp_path / "c.tif")), np.asarray(img))
    img.convert("CMYK").save(tmp_path / "c.jpg", quality=100)  # lossy: close
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    assert np.abs(pixels(load_rgb(tmp_path / "c.jpg")) - pixels(img)).mean() < 8


def test_exif_orientation_is_applied(tmp_path, photo):
    img = photo(size=(48, 32))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = load_rgb(tmp_path / "r.jpg")
    assert out.size == (32, 48)
    clockwise = pixels(img.transpose(Image.Transpose.ROTATE_270))
    counter = pixels(img.transpose(Image.Transpose.ROTATE_90))
    assert np.abs(pixels(out) - clockwise).mean() < np.abs(pixels(out) - counter).mean() / 3


def _truncated(photo, fmt):
    buf = io.BytesIO()
    photo(size=(64, 48)).save(buf, fmt)
    return buf.getvalue()[: len(buf.getvalue()) // 2]


@pytest.mark.parametrize("name, content, reason", [
    ("empty.jpg", b"", "empty file"),
    ("notes.jpg", b"this is text, not an image", "notes.jpg"),
    ("half.png", "PNG", "half.png"),
    ("half.jpg", "JPEG", "half.jpg"),
])
def test_unreadable_files_name_the_file(tmp_path, photo, name, content, reason):
    path = tmp_path / name
    path.write_bytes(_truncated(photo, content) if isinstance(content, str) else content)
    with pytest.raises(ImageReadError, match=name) as info:
        load_rgb(path)
    assert reason in str(info.value) and info.value.path == path


def test_missing_file_is_an_image_read_error(tmp_path):
    with pytest.raises(ImageReadError, match="gone.png.*not found"):
        load_rgb(tmp_path / "gone.png")


@pytest.mark.parametrize("limit", [1000, 6000])  # 10,000 pixels: PIL's error / warning range
def test_decompression_bomb_is_refused(tmp_path, photo, monkeypatch, limit):
    photo(size=(100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ImageReadError) as refused:
        load_rgb(tmp_path / "big.png")
    # Pillow's limit in the project's words, as for any photo over a limit.
    assert refused.value.reason == (f"100x100 pixels (0.0 megapixels) is over the limit of "
                                    f"{limit / 1e6:g} megapixels")
    assert skip_reason(refused.value) == "too large"  # counted as such by a training run


@pytest.mark.parametrize("max_pixels, limit", [(None, "89.4785"), (40_000_000, "40")])
def test_a_real_decompression_bomb_gets_the_same_message_as_a_large_photo(
        tmp_path, photo, bomb_png, max_pixels, limit):
    # 30000x30000 pixels: past twice Pillow's limit, refused by Image.open itself.
    bomb = bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 100
    with pytest.raises(ImageReadError) as refused:
        load_rgb(bomb, max_pixels=max_pixels)
    assert str(refused.value) == (f"cannot read image {bomb}: 30000x30000 pixels (900.0 "
                                  f"megapixels) is over the limit of {limit} megapixels")
    assert "decompression bomb" not in str(refused.value)
    photo(size=(100, 80)).save(tmp_path / "p.png")
    with pytest.raises(ImageReadError) as photo_refused:
        load_rgb(tmp_path / "p.png", max_pixels=7999)
    assert photo_refused.value.reason == ("100x80 pixels (0.0 megapixels) is over the limit of "
                                          "0.007999 megapixels")


def test_a_limit_above_pillows_opens_what_it_allows(tmp_path, photo, monkeypatch):
    photo(size=(100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 pixels: twice past it
    with pytest.raises(ImageReadError, match="over the limit of 0.001 megapixels"):
        load_rgb(tmp_path / "big.png", max_pixels=20_000)  # Pillow's limit not yet raised
    allow_pixels(20_000)
    assert Image.MAX_IMAGE_PIXELS == 20_000
    assert load_rgb(tmp_path / "big.png", max_pixels=20_000).size == (100, 100)
    with pytest.raises(ImageReadError, match="over the limit of 0.009 megapixels"):
        load_rgb(tmp_path / "big.png", max_pixels=9_000)
    allow_pixels(5_000)  # never lowered
    assert Image.MAX_IMAGE_PIXELS == 20_000


def test_error_survives_pickling():
    # DataLoader workers send exceptions to the main process.
    err = pickle.loads(pickle.dumps(ImageReadError("a/b.jpg", "broken")))
    assert isinstance(err, OSError) and str(err) == "cannot read image a/b.jpg: broken"


def test_find_images_recursive_case_insensitive_sorted(tmp_path, photo):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / ".hidden").mkdir()
    photo().save(tmp_path / "a" / "x.PNG")
    photo().save(tmp_path / "a" / "b" / "y.jpeg")
    photo().save(tmp_path / "a" / "b" / "z.tif")
    photo().save(tmp_path / "a" / ".hidden" / "h.jpg")
    photo().save(tmp_path / "a" / "b" / "._y.jpg")
    (tmp_path / "a" / "notes.txt").write_text("no")
    found = find_images(tmp_path)
    assert found == sorted(found)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/b/y.jpeg", "a/b/z.tif",
                                                                   "a/x.PNG"]
    # Several paths, overlapping: each file once. A file named directly is taken as it is.
    assert find_images([tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "notes.txt"]) == \
        sorted(found + [tmp_path / "a" / "notes.txt"])


def test_find_images_follows_linked_folders(tmp_path, photo):
    (tmp_path / "real").mkdir()
    photo().save(tmp_path / "real" / "x.jpg")
    (tmp_path / "root").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "root" / "link")
    os.symlink(tmp_path / "root", tmp_path / "root" / "loop")  # must not recurse forever
    assert [p.name for p in find_images(tmp_path / "root")] == ["x.jpg"]


def test_find_images_errors_name_the_path(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("no")
    with pytest.raises(ValueError, match="no images in .*empty") as info:
        find_images(tmp_path / "empty")
    assert all(ext in str(info.value) for ext in IMAGE_EXTENSIONS)
    with pytest.raises(FileNotFoundError, match="nope"):
        find_images([tmp_path / "nope", tmp_path / "empty"])


def test_a_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path, photo, monkeypatch):
    photo(size=(100, 80)).save(tmp_path / "p.png")
    assert load_rgb(tmp_path / "p.png", max_pixels=8000).size == (100, 80)
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda img: decoded.append(img))
    with pytest.raises(ImageReadError, match=r"p.png: 100x80 pixels .* over the limit of 0.0079"):
        load_rgb(tmp_path / "p.png", max_pixels=7999)
    assert decoded == []  # refused from the header: no pixel was decoded
