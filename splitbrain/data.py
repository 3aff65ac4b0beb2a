"""Datasets that yield 8-bit sRGB tensors (3, H, W) (uint8) and an integer label.

Lab conversion is not done here: it runs batched on the training device. Random augmentation
draws from torch's global RNG; :mod:`splitbrain.loaders` seeds it per sample and fixes the
data order, so runs are repeatable and resumable.
"""

import functools
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .compat import torchvision
from .data_health import SKIP_REASONS, reason_counts, skip_reason
from .images import ImageReadError, PathTable, find_images, load_rgb

T = torchvision.transforms.v2

SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle",
                 "china", "flower")
TRAIN_FRACTION = 0.75  # of each sample photo's width, from the left; the rest is for validation


# --- transforms -----------------------------------------------------------------------------

class _ShortSideAtLeast:
    """Resize so that the short side is at least ``size``; never shrinks."""

    def __init__(self, size):
        self.size = size

    def __call__(self, img):
        h, w = T.functional.get_size(img)
        if min(h, w) >= self.size:
            return img
        return T.functional.resize(img, self.size, antialias=True)

    def __repr__(self):
        return f"{type(self).__name__}(size={self.size})"


def _to_tensor():
    # Images stay 8-bit: a quarter of the bytes through the loader and onto the device, and the
    # colour code has lookup-table paths for uint8 (see splitbrain.color.lightness).
    return [T.ToPureTensor()]


def train_transform(size):
    """Random ``size`` crop (short side first resized up if smaller) and horizontal flip.

    Returns:
        A callable: PIL image or uint8 tensor -> uint8 tensor (3, size, size).
    """
    return T.Compose([T.ToImage(), _ShortSideAtLeast(size), T.RandomCrop(size),
                      T.RandomHorizontalFlip(), *_to_tensor()])


def eval_transform(size):
    """Short side resized to ``size``, then the centre ``size`` crop (deterministic).

    Returns:
        A callable: PIL image or uint8 tensor -> uint8 tensor (3, size, size).
    """
    return T.Compose([T.ToImage(), T.Resize(size, antialias=True), T.CenterCrop(size),
                      *_to_tensor()])


_TO_TENSOR = T.Compose([T.ToImage(), *_to_tensor()])


# --- the photos bundled with scikit-image and scikit-learn ----------------------------------

@functools.lru_cache(maxsize=None)
def sample_photo(name):
    """(H, W, 3) uint8 array of one bundled photo."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images
        images = load_sample_images()
        return images.images[[Path(f).stem for f in images.filenames].index(name)]
    import skimage.data
    img = getattr(skimage.data, name)()
    return img[0] if name == "stereo_motorcycle" else img  # (left, right, disparity)


class SamplePhotos(Dataset):
    """Square crops of seven photos that ship inside scikit-image and scikit-learn.

    Needs no download, so demos and tests run anywhere. Train crops come from the left 75% of
    each photo's width and validation crops from the right 25%, so the two never share a
    pixel. A photo whose region is smaller than the crop is first scaled up as a whole. The
    label is the index of the source photo (``classes`` names them), which makes this a tiny
    labelled dataset for linear probes too.

    Args:
        split: "train" or "val" ("test" means "val"): which region crops come from.
        size: crop side in pixels.
        length: crops per epoch; crop ``i`` comes from photo ``i % 7``.
        seed: fixes the crops when not augmenting.
        augment: random crop positions (torch's global RNG) and horizontal flips; default
            True for "train". Without it, crop ``i`` is fixed by ``(seed, i)``.
    """

    def __init__(self, split="train", size=64, length=1024, seed=0, augment=None):
        split = {"test": "val"}.get(split, split)
        if split not in ("train", "val"):
            raise ValueError(f"sample photos have the splits train and val, not {split!r}")
        if length < 1:
            raise ValueError(f"length must be at least 1, got {length}")
        self.split, self.size, self.length, self.seed = split, size, length, seed
        self.augment = split == "train" if augment is None else augment
        self.classes = list(SAMPLE_PHOTOS)
        self.photos = []  # (3, H, W) uint8, whole photos, scaled so that both regions fit a crop
        self.bounds = []  # (x0, x1): the columns of this split's region in each photo
        for name in SAMPLE_PHOTOS:
            photo = _fit_regions(sample_photo(name), size)
            cut = int(photo.shape[2] * TRAIN_FRACTION)
            self.photos.append(photo)
            self.bounds.append((0, cut) if split == "train" else (cut, photo.shape[2]))

    def __len__(self):
        return self.length

    def crop_box(self, index):
        """Where crop ``index`` lies.

        Returns:
            (photo, top, left): the photo index (= label) and the crop's top-left corner in
            ``photos[photo]``. Drawn from torch's global RNG when augmenting, else fixed by
            ``(seed, index)``.
        """
        photo = index % len(self.photos)
        gen = None if self.augment else torch.Generator().manual_seed(
            self.seed * 1_000_003 + index)
        x0, x1 = self.bounds[photo]
        height = self.photos[photo].shape[1]
        top = int(torch.randint(0, height - self.size + 1, (), generator=gen))
        left = x0 + int(torch.randint(0, x1 - x0 - self.size + 1, (), generator=gen))
        return photo, top, left

    def __getitem__(self, index):
        if not 0 <= index < self.length:
            raise IndexError(f"crop {index} of {self.length}")
        photo, top, left = self.crop_box(index)
        crop = self.photos[photo][:, top:top + self.size, left:left + self.size]
        if self.augment and torch.rand(()) < 0.5:
            crop = crop.flip(-1)
        return crop.clone(), photo


def _fit_regions(img, size):
    """(H, W, 3) array -> (3, H', W') uint8 tensor, scaled up if a region cannot hold a crop."""
    # A copy: the cached array is shared by every SamplePhotos.
    photo = torch.from_numpy(np.array(img[..., :3])).permute(2, 0, 1)
    h, w = photo.shape[1:]
    narrowest = min(TRAIN_FRACTION, 1 - TRAIN_FRACTION)
    scale = max(1.0, size / h, size / (w * narrowest))
    if scale > 1:
        new = [math.ceil(h * scale), math.ceil(w * scale)]
        photo = T.functional.resize(photo, new, antialias=True)
    return photo.contiguous()


# --- folders of image files -----------------------------------------------------------------

class UnreadableImageWarning(UserWarning):
    """A file of a dataset could not be decoded and is skipped."""


class _SkipUnreadable:
    """Serve the next readable file in place of an unreadable one, and remember the bad ones.

    A long run should not die on one corrupt JPEG. The marks live in shared memory, so files
    that DataLoader workers (separate processes) fail on show up in ``skipped`` of the main
    process too. Subclasses set ``_paths`` and call ``_init_skipping()``.
    """

    def _init_skipping(self):
        self._unreadable = torch.zeros(len(self._paths), dtype=torch.int8).share_memory_()

    @property
    def skipped(self):
        """The set of paths found unreadable so far, by this process or its loader workers."""
        return {self._paths[i] for i in self._unreadable.nonzero().flatten().tolist()}

    def skip_counts(self):
        """{reason: number of files} found unreadable so far (see :data:`SKIP_REASONS`)."""
        return reason_counts(self._unreadable)

    def check_readable(self, tries=8):
        """Raise ValueError unless one of up to ``tries`` files, spread over the set, decodes."""
        n, m = len(self._paths), min(tries, len(self._paths))
        errors = []
        for i in sorted({round(j * (n - 1) / max(m - 1, 1)) for j in range(m)}):
            try:
                load_rgb(self._paths[i])
                return
            except ImageReadError as err:
                self._unreadable[i] = SKIP_REASONS.index(skip_reason(err))
                errors.append(err)
        raise ValueError(f"none of the {len(errors)} files tried out of {n} could be read, "
                         f"e.g. {errors[0]}; check the folder holds images")

    def _load(self, index):
        """(PIL image, index of the file actually read)."""
        n = len(self._paths)
        for offset in range(n):
            i = (index + offset) % n
            if self._unreadable[i]:
                continue
            try:
                return load_rgb(self._paths[i]), i
            except ImageReadError as err:
                self._unreadable[i] = SKIP_REASONS.index(skip_reason(err))
                warnings.warn(f"skipping unreadable image: {err}", UnreadableImageWarning,
                              stacklevel=2)
        raise RuntimeError(f"none of the {n} image files could be read (e.g. {self._paths[0]}); "
                           f"see the warnings above for why")


# What to do when ``fingerprint`` differs between processes (``distributed.check_same``).
SAME_FILES = ("Every process must see the same files: check each node's copy, and that nothing "
              "is writing to the folder")


def fingerprint(dataset):
    """What must be equal on every process of a run: the number of items, and for folders the
    file list (a digest of every path, in order). See ``distributed.check_same``.

    A wrapper (anything with ``.dataset``, like ``Subset``) is compared by its length and its
    inner file list, not by which items it picks: none of splitbrain's datasets picks per rank.
    """
    inner = dataset
    while not hasattr(inner, "files") and hasattr(inner, "dataset"):  # Subset-like wrappers
        inner = inner.dataset
    files = getattr(inner, "files", None)
    if not isinstance(files, PathTable):
        return {"items": len(dataset)}
    return {"items": len(dataset), "files": len(files), "paths digest": files.digest()[:16]}


class ImageFiles(_SkipUnreadable, Dataset):
    """Every image under one or more folders (searched recursively), label 0.

    An unreadable file is warned about once, counted in ``skipped``, and the next readable
    file is served in its place, so an epoch keeps its length (that file counts twice).

    Args:
        root_or_paths: a folder or file, or a list of them (see :func:`find_images`).
        transform: PIL image -> tensor, e.g. :func:`train_transform`; None converts to a uint8
            tensor as it is.
    """

    def __init__(self, root_or_paths, transform=None):
        self.files = PathTable(find_images(root_or_paths))  # no Python object per file
        self._paths = self.files
        self.transform = transform or _TO_TENSOR
        self._init_skipping()

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        img, _ = self._load(index)
        return self.transform(img), 0


class LabelledFolder(_SkipUnreadable, torchvision.datasets.ImageFolder):
    """An ImageFolder (``root/<class>/**/<image>``) decoded with :func:`load_rgb`.

    Unreadable files are skipped as in :class:`ImageFiles` (the replacement keeps its own
    label). Hidden folders and files are ignored.

    Args:
        root: the folder holding one subfolder per class.
        transform: PIL image -> tensor; None converts to a uint8 tensor as it is.
    """

    def __init__(self, root, transform=None):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {root}")
        super().__init__(str(root), transform=transform or _TO_TENSOR, loader=load_rgb)
        # Compact tables in place of torchvision's per-file (path, label) tuples, which every
        # loader worker would copy (see images.PathTable).
        self.files = self._paths = PathTable(p for p, _ in self.samples)
        self.targets = np.asarray(self.targets, dtype=np.int64)
        self.samples = self.imgs = None
        self._init_skipping()

    def __len__(self):
        return len(self._paths)

    def find_classes(self, directory):
        classes = sorted(e.name for e in os.scandir(directory)
                         if e.is_dir() and not e.name.startswith("."))
        if not classes:
            raise ValueError(f"{directory} has no class subfolders; a labelled dataset needs "
                             f"ROOT/<class>/<image> (the ImageFolder layout)")
        return classes, {name: i for i, name in enumerate(classes)}

    @staticmethod
    def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None,
                     allow_empty=False):
        # find_images, not torchvision's walk: that follows symbolic links with no guard, so a
        # link class/loop -> . listed every image ~40 times (two such links never ended), and
        # it kept hidden subfolders. Here each real folder is read once, hidden ones skipped;
        # the order stays torchvision's: a folder's files, then its subfolders'.
        samples = []
        for name, label in class_to_idx.items():
            files = find_images(Path(directory, name))  # ValueError for a class without images
            samples += [(str(path), label)
                        for path in sorted(files, key=lambda p: (str(p.parent), p.name))]
        return samples

    def __getitem__(self, index):
        img, i = self._load(index)
        return self.transform(img), int(self.targets[i])


# --- torchvision datasets -------------------------------------------------------------------

def _torchvision_dataset(name, split, transform, root, download):
    root = Path(root)
    if name == "cifar10":
        if split not in ("train", "val", "test"):
            raise ValueError(f"cifar10 has the splits train and test (val = test), not {split!r}")
        cls, kwargs = torchvision.datasets.CIFAR10, {"train": split == "train"}
    else:
        cls, kwargs = torchvision.datasets.STL10, {"split": {"val": "test"}.get(split, split)}
    try:
        return cls(str(root), transform=transform, download=download, **kwargs)
    except RuntimeError as err:
        if "download=True" not in str(err):
            raise
        raise FileNotFoundError(
            f"{name} not found (or corrupted) in {root / cls.base_folder}; put the extracted "
            f"dataset there, or set `download: true` under data: in the config "
            f"(download=True in Python) to fetch it into {root}") from None


def build_dataset(data, split, size, train, length=1024, download=False, labelled=False,
                  seed=0, root="./data", transform=None):
    """A dataset by name or path, with the transform that ``train`` asks for.

    Args:
        data: "sample" (:class:`SamplePhotos`), "cifar10", "stl10", or a path. A path with a
            ``<split>`` subfolder means that subfolder. With ``labelled`` the folder must have
            the ImageFolder layout (``<class>/<image>``); otherwise every image under it,
            searched recursively, is used (label 0). Name a folder called "sample" as
            "./sample".
        split: "train" or "val"; also "test" and, for stl10, "unlabeled" and "train+unlabeled".
            cifar10 and stl10 serve their test set as "val".
        size: side of the square crops.
        train: random crop and flip if True, else resize and centre crop.
        length: crops per epoch (sample only).
        download: let torchvision fetch cifar10 / stl10 into ``root``.
        labelled: read a folder as an ImageFolder.
        seed: fixes the validation crops of sample.
        root: where cifar10 / stl10 live.
        transform: PIL image -> uint8 tensor (3, size, size), used instead of the one that
            ``train`` asks for (not for sample, whose crops are cut from the photos directly).

    Returns:
        A Dataset of (uint8 tensor (3, size, size), int label).

    Raises:
        FileNotFoundError: the path, or the cifar10 / stl10 files, do not exist.
        ValueError: no images, no class subfolders, or an unknown split.
    """
    if data == "sample":
        if transform is not None:
            raise ValueError("sample takes no transform: its crops are cut from the photos")
        return SamplePhotos(split, size, length, seed, augment=train)
    if transform is None:
        transform = train_transform(size) if train else eval_transform(size)
    if data in ("cifar10", "stl10"):
        return _torchvision_dataset(data, split, transform, root, download)
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"dataset path not found: {path} (give sample, cifar10, stl10, "
                                f"or a folder of images)")
    if (path / split).is_dir():
        path = path / split
    return LabelledFolder(path, transform) if labelled else ImageFiles(path, transform)
