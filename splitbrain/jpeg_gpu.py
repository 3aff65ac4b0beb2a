"""Decoding a folder's JPEG files on the GPU (``data.decode: gpu``).

A fast GPU trains on more images per second than a few CPU cores decode. With
``data.decode: gpu`` the loader's workers only read each file's bytes; the main process hands
a whole batch of them to nvJPEG (torchvision's ``decode_jpeg`` with a CUDA device) and applies
the same crop and flip as the CPU path, on the GPU, under the same per-sample seeds. So a run
sees the same crops either way (pixel values differ only by the decoders' rounding).

Files the GPU does not take stay on the CPU path, so nothing changes for them:

- files that are not baseline RGB or grey JPEGs (PNG, CMYK JPEG, ...), and JPEGs stored
  rotated (an EXIF orientation), are decoded by the worker with :func:`splitbrain.images.load_rgb` and cropped there, as without this option;
- a JPEG that nvJPEG refuses (truncated, corrupt) is read again on the CPU by the dataset,
  which skips and counts it if it is unreadable there too (see :mod:`splitbrain.data_health`).

Where the GPU path cannot run (no CUDA device, a torchvision without its image extension, or
data that are not a folder of image files) :func:`choose_decode` says why, and the run decodes
on the CPU.
"""

import io

import torch
from PIL import Image
from torch.utils.data import DataLoader

from .compat import jpeg_decoder
from .data import ImageFiles
from .images import exif_orientation
from .loaders import SeededSamples, StepBatches, seeded

DECODES = ("cpu", "gpu")
_JPEG_MAGIC = b"\xff\xd8\xff"
_GPU_MODES = ("RGB", "L")  # JPEG colour modes nvJPEG decodes to RGB like PIL does
# torchvision's CUDA decode_jpeg ignores apply_exif_orientation (0.26), so a photo stored
# rotated (EXIF orientation other than 1) stays on the CPU path, which turns it upright.


def choose_decode(requested, dataset, device):
    """Where a run decodes its training images: ("cpu" | "gpu", a note for the log or "").

    Args:
        requested: the config's ``data.decode``.
        dataset: the training dataset.
        device: the run's device.
    """
    if requested not in DECODES:
        raise ValueError(f"data.decode={requested!r}: one of {' | '.join(DECODES)}")
    if requested == "cpu":
        return "cpu", ""
    if not isinstance(dataset, ImageFiles):
        why = "it needs a folder of image files (sample, cifar10 and stl10 are decoded already)"
    else:
        why = gpu_decode_problem(device)
    if why:
        return "cpu", f"data.decode=gpu: {why}; decoding on the CPU instead"
    return "gpu", f"data.decode=gpu: JPEG files are decoded on {device} with nvJPEG"


def gpu_decode_problem(device):
    """Why JPEGs cannot be decoded on ``device``, or "" when they can (a real tiny decode)."""
    if device is None or torch.device(device).type != "cuda":
        return f"the run's device is {device}, not a CUDA GPU"
    decode_jpeg, mode = jpeg_decoder()
    try:
        decode_jpeg(_tiny_jpeg(), device=device, mode=mode.RGB)
    except RuntimeError as err:
        return f"this torchvision cannot decode JPEG on {device} ({str(err).splitlines()[0]})"
    return ""


def _tiny_jpeg():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="JPEG")
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def _read_gpu_jpeg(path):
    """The file's bytes if it is a JPEG nvJPEG decodes as PIL does (RGB or grey), else None.

    Other files are not read whole here: the CPU path reads them once, as without the option.
    """
    try:
        with open(path, "rb") as f:
            if f.read(len(_JPEG_MAGIC)) != _JPEG_MAGIC:
                return None
            data = _JPEG_MAGIC + f.read()
        with Image.open(io.BytesIO(data)) as img:  # the header only
            ok = img.format == "JPEG" and img.mode in _GPU_MODES \
                and img.width * img.height <= (Image.MAX_IMAGE_PIXELS or float("inf")) \
                and exif_orientation(img) == 1
    except Exception:  # noqa: BLE001 - missing, unreadable, a bad header: the CPU path reports it
        return None
    return data if ok else None


class EncodedSamples(SeededSamples):
    """Items ``(index, seed)`` of an :class:`ImageFiles` set, left encoded where the GPU can decode.

    Returns dicts: ``{"jpeg": bytes (N,) uint8, "index", "seed"}`` for a JPEG the GPU decodes,
    else ``{"crop": uint8 (3, S, S)}``, the CPU path's item (decoded and cropped here, with the
    file skipped and counted if unreadable).
    """

    def __getitem__(self, key):
        index, seed = key
        data = None if self.dataset._unreadable[index] else \
            _read_gpu_jpeg(self.dataset._paths[index])
        if data is not None:
            return {"jpeg": torch.frombuffer(bytearray(data), dtype=torch.uint8),
                    "index": index, "seed": seed}
        return {"crop": super().__getitem__(key)[0]}


def _keep_list(items):
    return items


class GPUDecodedBatches:
    """Batches ``(uint8 (B, 3, S, S) on the device, labels)`` from a loader of encoded items.

    Args:
        loader: a DataLoader over :class:`EncodedSamples` that yields lists of its items.
        dataset: the :class:`ImageFiles` set (its transform crops; its CPU path is the
            fallback for a file nvJPEG refuses).
        device: the CUDA device to decode on.
        decoder: ``decode_jpeg``-like callable (default: torchvision's); tests pass a CPU one.
    """

    def __init__(self, loader, dataset, device, decoder=None):
        self.loader, self.dataset, self.device = loader, dataset, torch.device(device)
        decode_jpeg, mode = jpeg_decoder()
        self.decoder, self.mode = decoder or decode_jpeg, mode.RGB

    @property
    def batch_sampler(self):
        """The :class:`StepBatches` (where a resumed run sets its start step)."""
        return self.loader.batch_sampler

    def __iter__(self):
        for items in self.loader:
            yield self.decode(items), torch.zeros(len(items), dtype=torch.long)

    def _decode_all(self, data):
        """{position: decoded (3, H, W)} for the JPEG bytes in ``data``; refused ones are left out."""
        if not data:
            return {}
        try:  # one call for the batch: nvJPEG decodes it in parallel
            images = self.decoder([d for _, d in data], device=self.device, mode=self.mode,
                                  apply_exif_orientation=True)
            return dict(zip([i for i, _ in data], images))
        except RuntimeError:  # one bad file fails the call: find it, decode the rest
            out = {}
            for i, d in data:
                try:
                    out[i] = self.decoder(d, device=self.device, mode=self.mode,
                                          apply_exif_orientation=True)
                except RuntimeError:
                    pass
            return out

    def decode(self, items):
        images = self._decode_all([(i, it["jpeg"]) for i, it in enumerate(items) if "jpeg" in it])
        crops = []
        for i, item in enumerate(items):
            if "crop" in item:
                crop = item["crop"]
            elif i in images:
                crop = seeded(item["seed"], self.dataset.transform, images[i])
            else:  # refused by nvJPEG: the CPU path (which skips and counts unreadable files)
                crop = seeded(item["seed"], self.dataset.__getitem__, item["index"])[0]
            crops.append(torch.as_tensor(crop).to(self.device, non_blocking=True))
        return torch.stack(crops)


def gpu_train_loader(dataset, batch_size, seed, start_step, workers, device, rank=0,
                     world_size=1, decoder=None):
    """:func:`splitbrain.loaders.train_loader` with JPEG decoding on ``device`` (same batches)."""
    sampler = StepBatches(len(dataset), batch_size, seed, start_step, rank, world_size)
    loader = DataLoader(EncodedSamples(dataset), batch_sampler=sampler, num_workers=workers,
                        collate_fn=_keep_list, pin_memory=torch.device(device).type == "cuda",
                        persistent_workers=workers > 0)
    return GPUDecodedBatches(loader, dataset, device, decoder)
