"""Reading image files safely: any mode to 8-bit sRGB, EXIF rotation, clear errors."""

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class ImageReadError(OSError):
    """An image file that cannot be decoded."""

    def __init__(self, path, reason):
        super().__init__(f"cannot read image {path}: {reason}")
        self.path, self.reason = Path(path), reason


def is_image_path(path):
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def find_images(paths):
    """Image files under ``paths`` (files or folders, searched recursively), sorted."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"path not found: {path}")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_image_path(p))
            if not files:
                raise ValueError(f"no images in {path} (looked recursively for "
                                 f"{', '.join(IMAGE_EXTENSIONS)})")
            found += files
        else:
            found.append(path)
    return found


def load_rgb(path):
    """Decode an image file to an 8-bit sRGB PIL image, EXIF orientation applied.

    Transparent images are composited on white. 16-bit and float grey images are scaled to
    8 bits (not clipped).

    Raises:
        ImageReadError: naming the file and the problem.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(path, f"too large to decode safely ({err})") from None
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except (OSError, ValueError, SyntaxError) as err:
        reason = "empty file" if path.is_file() and path.stat().st_size == 0 else str(err)
        raise ImageReadError(path, reason or type(err).__name__) from None


def to_rgb(img):
    """Any PIL mode -> 8-bit RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")
