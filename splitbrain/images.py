"""Reading image files safely: any PIL mode to 8-bit sRGB, EXIF rotation, clear errors."""

import hashlib
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class ImageReadError(OSError):
    """An image file that cannot be decoded; the message names the file and the problem."""

    def __init__(self, path, reason):
        super().__init__(f"cannot read image {path}: {reason}")
        self.path, self.reason = Path(path), reason

    def __reduce__(self):
        # The default reduce would call __init__ with the message alone.
        return type(self), (self.path, self.reason)


def is_image_path(path):
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


class PathTable:
    """A read-only list of file paths held as two numpy arrays (UTF-8 bytes and offsets).

    A dataset of a million files kept as a list of ``Path`` objects costs about 400 MiB of
    Python objects, and every DataLoader worker forked from the main process ends up with its
    own copy: reading a path writes its reference count, and each garbage collection writes
    every object's header, so the shared pages are copied one by one. Two arrays hold the same
    paths in about 70 bytes each with nothing for a worker to write to.

    Args:
        paths: iterable of ``str`` or ``os.PathLike`` (any bytes the OS allows, via
            ``os.fsencode``).
    """

    def __init__(self, paths):
        data, ends = bytearray(), []
        for p in paths:
            data += os.fsencode(p)
            ends.append(len(data))
        self._bytes = np.frombuffer(bytes(data), dtype=np.uint8)
        self._ends = np.asarray(ends, dtype=np.int64)

    def __len__(self):
        return len(self._ends)

    def __getitem__(self, index):
        """The ``index``-th path as a ``Path`` (negative indices count from the end)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"path index {index} out of range for {len(self)} paths")
        index %= len(self)
        start = int(self._ends[index - 1]) if index else 0
        return Path(os.fsdecode(self._bytes[start:int(self._ends[index])].tobytes()))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def digest(self):
        """SHA-256 (hex) of the paths in order: equal tables, equal digests."""
        h = hashlib.sha256(self._ends.astype("<i8").tobytes())
        h.update(self._bytes)  # no copy of the (ImageNet: 90 MB) bytes
        return h.hexdigest()


def find_images(paths):
    """Image files under one or more files or folders.

    Folders are searched recursively (following symbolic links, each real folder once) for
    files with an extension in :data:`IMAGE_EXTENSIONS`; hidden files and folders (name
    starting with ".") are ignored. A file named directly is taken whatever its extension.

    Args:
        paths: a path, or a list of paths.

    Returns:
        Sorted list of unique :class:`~pathlib.Path`.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a folder holds no images.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        if not path.is_dir():
            found.add(path)
            continue
        files = _images_under(path)
        if not files:
            raise ValueError(f"no images in {path} (searched recursively for "
                             f"{', '.join(IMAGE_EXTENSIONS)}, any case)")
        found.update(files)
    if not found:
        raise ValueError("no image paths given")
    return sorted(found)


def _images_under(folder):
    files, seen = [], set()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a link back up the tree would otherwise loop forever
            dirs[:] = []
            continue
        seen.add(real)
        # Sorted: which of two links to one folder is kept must not depend on the order a
        # filesystem lists them in (each node's copy of the data must list the same paths).
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(top, n) for n in names if not n.startswith(".") and is_image_path(n)]
    return files


def allow_pixels(max_pixels):
    """Let Pillow open images up to ``max_pixels`` in this process (a tool's own limit above
    Pillow's ``Image.MAX_IMAGE_PIXELS``); :func:`load_rgb` with ``max_pixels`` then enforces the
    exact limit. Pillow's limit is process-wide: only ever raised here, never lowered."""
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = int(max_pixels)


def load_rgb(path, max_pixels=None):
    """Decode an image file to an 8-bit RGB PIL image.

    The EXIF orientation is applied, so the image is upright as a viewer shows it. The whole
    file is decoded here, so a truncated file fails now rather than in the middle of a run.
    Modes are converted as follows:

    - transparent images (RGBA, LA, PA, palette with a transparent colour) are composited on
      white;
    - 16-bit and 32-bit integer grey (I;16, I;16B, I) is read as 0..65535 and scaled to 8 bits
      (value / 257, rounded; negative values become 0, values above 65535 become 255);
    - float grey (F) is read as 0..1 when no value exceeds 1, else as 0..255;
    - everything else (L, 1, P, CMYK, YCbCr, ...) goes through PIL's own conversion.

    Embedded ICC colour profiles are not applied: pixel values are taken as sRGB.

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels than this (width × height, read from the
            file's header before any pixel is decoded); None: Pillow's ``MAX_IMAGE_PIXELS``.
            Either way an image over the limit, a decompression bomb included, is refused with
            one message: "WxH pixels (N megapixels) is over the limit of L megapixels". A
            limit above Pillow's needs :func:`allow_pixels` first.

    Returns:
        A PIL image in mode "RGB".

    Raises:
        ImageReadError: the file is missing, empty, not an image, truncated or corrupt, too
            large to decode safely (PIL's ``Image.MAX_IMAGE_PIXELS``, or ``max_pixels``), or
            in a mode that cannot be converted. The message names the file and the problem.
    """
    path = Path(path)
    limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that: refused alike, unless
            # our own limit is given (checked just below).
            warnings.simplefilter("ignore" if max_pixels is not None else "error",
                                  Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_pixels(path, img.size, limit)
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_rgb(img)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # Pillow refused at its own limit (a bomb: huge, in a few bytes), before ours could
        # look: the same message as ours, with the size read from the header.
        limit = min(limit, Image.MAX_IMAGE_PIXELS or limit)  # the one that refused it
        size = _header_size(path)
        if size is not None:
            reason = _over_limit(size, limit) or f"too large to decode safely ({err})"
        else:  # no header reader: Pillow's words give the pixel count
            found = re.search(r"\((\d+) pixels\)", str(err))
            pixels = f"{int(found.group(1)) / 1e6:.1f} megapixels" if found else "the image"
            reason = f"{pixels} is over the limit of {limit / 1e6:g} megapixels"
        raise ImageReadError(path, reason) from None
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder, not a file") from None
    except Exception as err:  # noqa: BLE001
        # PIL's decoders fail with many exception types (OSError, SyntaxError, EOFError,
        # struct.error, zlib.error, IndexError, ...); all of them mean "this file is bad".
        if path.is_file() and path.stat().st_size == 0:
            reason = "empty file (0 bytes)"
        else:
            reason = str(err) or type(err).__name__
        raise ImageReadError(path, reason) from None


def exif_orientation(img):
    """The EXIF orientation tag of an opened image (1, upright, when absent), from its header;
    a broken EXIF block raises as Pillow does."""
    return img.getexif().get(0x0112, 1)


def upright_size(img):
    """(width, height) of ``img`` as :func:`load_rgb` returns it: turned upright by its EXIF
    orientation (5-8 swap the sides), read from the header without decoding a pixel."""
    try:
        orientation = exif_orientation(img)
    except Exception:  # noqa: BLE001 -- a broken EXIF block: reported when the photo is read
        orientation = 1
    w, h = img.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _check_pixels(path, size, max_pixels):
    reason = _over_limit(size, max_pixels)
    if reason:
        raise ImageReadError(path, reason)


def _over_limit(size, max_pixels):
    """The words for an image of ``size`` over ``max_pixels`` (None: no limit); None if not."""
    width, height = size
    if max_pixels is None or width * height <= max_pixels:
        return None
    return (f"{width}x{height} pixels ({width * height / 1e6:.1f} megapixels) is over the "
            f"limit of {max_pixels / 1e6:g} megapixels")


def _header_size(path):
    """(width, height) from the image file's header, read by Pillow's format plugin without
    its pixel limit (nothing is decoded); None when no plugin reads it."""
    Image.init()
    try:
        with open(path, "rb") as fp:
            prefix = fp.read(16)
            for fmt in Image.ID:
                factory, accept = Image.OPEN[fmt]
                known = accept(prefix) if accept is not None else True
                if not known or isinstance(known, str):  # a str: Pillow's warning, not a match
                    continue
                fp.seek(0)
                try:
                    return factory(fp, str(path)).size
                except Exception:  # noqa: BLE001 - not this format
                    continue
    except OSError:
        return None
    return None


def to_rgb(img):
    """Convert a decoded PIL image of any mode to 8-bit RGB (see :func:`load_rgb`)."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N, I: 16-bit grey
        arr = np.asarray(img).astype(np.int64).clip(0, 65535)
        return _grey_to_rgb((arr * 255 + 32767) // 65535)  # round(value / 257), exactly
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
        return _grey_to_rgb(np.clip(np.round(arr * scale), 0, 255))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _grey_to_rgb(arr):
    return Image.fromarray(arr.astype(np.uint8), mode="L").convert("RGB")
