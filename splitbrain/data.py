"""Datasets that yield sRGB float tensors (3, H, W) in [0, 1] and an integer label.

Lab conversion is not done here: it runs batched on the training device.
"""

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .compat import torchvision
from .images import IMAGE_EXTENSIONS, ImageReadError, find_images, load_rgb

import torchvision.transforms.v2 as T  # noqa: E402  (after the compat import, which enables it)
SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle",
                 "china", "flower")
TRAIN_FRACTION = 0.75  # of each sample photo's width; the rest is held out for validation


def train_transform(size):
    """Random crop (short side first resized up if needed) + horizontal flip -> float tensor."""
    return T.Compose([T.ToImage(), _ResizeUpTo(size), T.RandomCrop(size), T.RandomHorizontalFlip(),
                      T.ToDtype(torch.float32, scale=True)])


def eval_transform(size):
    """Short side resized to ``size`` + centre crop -> float tensor."""
    return T.Compose([T.ToImage(), T.Resize(size, antialias=True), T.CenterCrop(size),
                      T.ToDtype(torch.float32, scale=True)])


class _ResizeUpTo(torch.nn.Module):
    """Resize so the short side is at least ``size`` (never down)."""

    def __init__(self, size):
        super().__init__()
        self.size = size

    def forward(self, img):
        h, w = img.shape[-2:]
        if min(h, w) >= self.size:
            return img
        return T.functional.resize(img, self.size, antialias=True)


def _sample_photo(name):
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images
        images = load_sample_images()
        return images.images[[Path(f).stem for f in images.filenames].index(name + "")]
    import skimage.data
    img = getattr(skimage.data, name)()
    return img[0] if name == "stereo_motorcycle" else img


class SamplePhotos(Dataset):
    """Random crops of the photos that ship inside scikit-image and scikit-learn; no download.

    Train crops come from the left 75% of each photo's width, val crops from the right 25%,
    so the two never share a pixel. The label is the index of the source photo, which makes
    this a tiny labelled dataset too (``classes`` names them).
    """

    def __init__(self, split="train", size=64, length=1024, seed=0):
        if split not in ("train", "val"):
            raise ValueError(f"sample photos have splits train and val, not {split!r}")
        self.split, self.size, self.length, self.seed = split, size, length, seed
        self.classes = list(SAMPLE_PHOTOS)
        self.regions = []
        for name in SAMPLE_PHOTOS:
            img = np.ascontiguousarray(_sample_photo(name)[..., :3])
            cut = int(img.shape[1] * TRAIN_FRACTION)
            region = img[:, :cut] if split == "train" else img[:, cut:]
            self.regions.append(torch.from_numpy(np.ascontiguousarray(region)).permute(2, 0, 1))
        self.transform = train_transform(size) if split == "train" else None

    def __len__(self):
        return self.length

    def crop_box(self, index):
        """(photo, top, left) of a validation crop: fixed for a given index and seed."""
        g = torch.Generator().manual_seed(self.seed * 100003 + index)
        photo = index % len(self.regions)
        region = self._region(photo)
        top = int(torch.randint(0, region.shape[1] - self.size + 1, (1,), generator=g))
        left = int(torch.randint(0, region.shape[2] - self.size + 1, (1,), generator=g))
        return photo, top, left

    def _region(self, photo):
        region = self.regions[photo]
        if min(region.shape[1:]) < self.size:
            region = T.functional.resize(region, self.size, antialias=True)
        return region

    def __getitem__(self, index):
        photo = index % len(self.regions)
        if self.transform is not None:
            return self.transform(self._region(photo)), photo
        photo, top, left = self.crop_box(index)
        crop = self._region(photo)[:, top:top + self.size, left:left + self.size]
        return crop.float() / 255, photo


class _SkipUnreadable:
    """Mixin: on an unreadable file, warn once, count it, and serve another file instead."""

    def _load(self, index):
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            path = self._path(i)
            try:
                return load_rgb(path), i
            except ImageReadError as err:
                if path not in self.skipped:
                    self.skipped.add(path)
                    warnings.warn(f"skipping unreadable image: {err}", stacklevel=2)
        raise RuntimeError(f"no readable image among the {len(self)} files of this dataset")


class ImageFiles(_SkipUnreadable, Dataset):
    """Any folder of images, searched recursively; label 0. Unreadable files are skipped."""

    def __init__(self, root, transform):
        self.files = find_images(root)
        self.transform, self.skipped = transform, set()

    def __len__(self):
        return len(self.files)

    def _path(self, i):
        return self.files[i]

    def __getitem__(self, index):
        img, _ = self._load(index)
        return self.transform(img), 0


class LabelledFolder(_SkipUnreadable, torchvision.datasets.ImageFolder):
    """ImageFolder (``root/<class>/<image>``) decoded with :func:`load_rgb`; skips bad files."""

    def __init__(self, root, transform):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {root}")
        if not any(p.is_dir() for p in root.iterdir()):
            raise ValueError(f"{root} has no class subfolders; a labelled dataset needs "
                             f"ROOT/<class>/<image> (ImageFolder layout)")
        super().__init__(str(root), transform=transform,
                         is_valid_file=lambda p: Path(p).suffix.lower() in IMAGE_EXTENSIONS)
        self.skipped = set()

    def _path(self, i):
        return Path(self.samples[i][0])

    def __getitem__(self, index):
        img, i = self._load(index)
        return self.transform(img), self.targets[i]


def _torchvision_dataset(name, split, transform, root, download):
    root = Path(root)
    try:
        if name == "cifar10":
            if split not in ("train", "val", "test"):
                raise ValueError(f"cifar10 has splits train and test (val = test), not {split!r}")
            return torchvision.datasets.CIFAR10(str(root), train=split == "train",
                                                transform=transform, download=download)
        split = {"val": "test"}.get(split, split)
        return torchvision.datasets.STL10(str(root), split=split, transform=transform,
                                          download=download)
    except RuntimeError as err:
        if "not found" in str(err).lower() or "corrupted" in str(err).lower():
            raise FileNotFoundError(
                f"{name} files not found under {root.resolve()}; put the extracted dataset "
                f"there, or set data.download=true (download=True) to fetch it") from None
        raise


def build_dataset(data, split, size, train, length=1024, download=False, labelled=False,
                  seed=0, root="./data"):
    """A dataset by name or path.

    Args:
        data: "sample", "cifar10", "stl10", or a folder. A labelled folder is an ImageFolder
            (``data/<split>/<class>/...`` if ``data/<split>`` exists, else ``data/<class>/...``);
            an unlabelled one is any folder of images, searched recursively.
        split: "train" or "val" (or a torchvision split name).
        size: crop size.
        train: random crop + flip if True, else resize + centre crop.
        length: number of crops per epoch (sample only).
    """
    transform = train_transform(size) if train else eval_transform(size)
    if data == "sample":
        return SamplePhotos("train" if train else "val", size, length, seed)
    if data in ("cifar10", "stl10"):
        return _torchvision_dataset(data, split, transform, root, download)
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"dataset path not found: {path} (give 'sample', 'cifar10', "
                                f"'stl10' or a folder of images)")
    if (path / split).is_dir():
        path = path / split
    return LabelledFolder(path, transform) if labelled else ImageFiles(path, transform)
