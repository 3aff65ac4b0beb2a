"""Image files of every kind become 8-bit sRGB, or fail with an error naming the file."""

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from splitbrain.images import ImageReadError, find_images, load_rgb


def photo(size=(40, 30)):
    return Image.fromarray(skdata.astronaut()).resize(size)


def test_rgb_is_unchanged(tmp_path):
    img = photo()
    img.save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(img))


def test_grey_and_palette(tmp_path):
    grey = photo().convert("L")
    grey.save(tmp_path / "g.png")
    out = np.asarray(load_rgb(tmp_path / "g.png"))
    assert all(np.array_equal(out[..., c], np.asarray(grey)) for c in range(3))
    pal = photo().convert("P")
    pal.save(tmp_path / "p.png")
    assert np.array_equal(np.asarray(load_rgb(tmp_path / "p.png")), np.asarray(pal.convert("RGB")))


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, ..., 3] = 255  # top half opaque red-ish, bottom fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    out = np.asarray(load_rgb(tmp_path / "t.png"))
    assert (out[:2] == [200, 0, 0]).all() and (out[2:] == 255).all()
    # A palette image with a transparent index goes the same way.
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    assert np.asarray(load_rgb(tmp_path / "pt.png")).tolist() == [[[255, 255, 255], [10, 20, 30]]]


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "16.png")
    assert Image.open(tmp_path / "16.png").mode.startswith("I")
    out = np.asarray(load_rgb(tmp_path / "16.png"))[..., 0]
    assert out.tolist() == [[0, 100, 255]]


def test_cmyk_round_trip_close_to_rgb(tmp_path):
    img = photo()
    img.convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    out = np.asarray(load_rgb(tmp_path / "c.jpg"), dtype=float)
    assert np.abs(out - np.asarray(img, dtype=float)).mean() < 8


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    photo((40, 30)).save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "r.jpg").size == (30, 40)


@pytest.mark.parametrize("content", [b"", b"this is text, not an image", None])
def test_unreadable_files_name_the_file(tmp_path, content):
    path = tmp_path / "bad.jpg"
    if content is None:  # a truncated PNG
        buf = io.BytesIO()
        photo().save(buf, "PNG")
        content = buf.getvalue()[: len(buf.getvalue()) // 2]
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match="bad.jpg"):
        load_rgb(path)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    photo((100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageReadError, match="too large to decode safely"):
        load_rgb(tmp_path / "big.png")


def test_find_images_recursive_and_errors(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    photo().save(tmp_path / "a" / "x.PNG")
    photo().save(tmp_path / "a" / "b" / "y.jpg")
    (tmp_path / "a" / "notes.txt").write_text("no")
    assert sorted(p.name for p in find_images(tmp_path)) == ["x.PNG", "y.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in .*empty"):
        find_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nope"):
        find_images(tmp_path / "nope")
