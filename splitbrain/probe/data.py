"""Labelled datasets for linear probes: transforms, folder checks, train/val pairs.

Items are (uint8 sRGB tensor (3, crop, crop), int label), as everywhere in
:mod:`splitbrain.data`; the frozen encoder converts them to L or Lab on the device.
See :mod:`splitbrain.probe` for the protocol (docs/reference.md §3).
"""

from pathlib import Path

from ..compat import torchvision
from ..data import build_dataset
from . import ProbeError

T = torchvision.transforms.v2


def probe_transform(short_side, crop, train):
    """Short side resized to ``short_side``, then a random crop + flip (train) or a centre crop.

    The paper's ImageNet recipe is resize 256, crop 227; small images (CIFAR-10, STL-10) are
    resized up so the encoder sees them at its working size.

    Returns:
        A callable: PIL image or uint8 tensor -> plain uint8 tensor (3, crop, crop).
    """
    steps = [T.ToImage(), T.Resize(short_side, antialias=True)]
    steps += [T.RandomCrop(crop), T.RandomHorizontalFlip()] if train else [T.CenterCrop(crop)]
    return T.Compose(steps + [T.ToPureTensor()])


def check_labelled_folder(root):
    """Check ROOT/train and ROOT/val are ImageFolder trees with the same class subfolders.

    Returns:
        The class names, sorted (the label order of ImageFolder).

    Raises:
        ProbeError: a split folder is missing, has no class subfolders, or the two splits'
            classes differ.
    """
    root = Path(root)
    classes = {}
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            raise ProbeError(f"{folder} not found: a labelled dataset folder holds train/ and "
                             f"val/, each with one subfolder of images per class "
                             f"(ImageFolder layout)")
        # Hidden folders (.ipynb_checkpoints, ...) are not classes, as for LabelledFolder.
        classes[split] = sorted(p.name for p in folder.iterdir()
                                if p.is_dir() and not p.name.startswith("."))
        if not classes[split]:
            raise ProbeError(f"{folder} has no class subfolders; a labelled dataset needs "
                             f"{folder}/<class>/<image> (ImageFolder layout)")
    train, val = set(classes["train"]), set(classes["val"])
    if train != val:
        raise ProbeError(f"the classes of {root / 'val'} differ from those of "
                         f"{root / 'train'}: only in train {sorted(train - val)}, only in val "
                         f"{sorted(val - train)}; labels are class-folder indices, so both "
                         f"splits need the same class folders")
    return classes["train"]


def probe_datasets(source, crop, short_side, root="./data", download=False, train_length=1024,
                   val_length=256, seed=0, augment=True):
    """The labelled training and validation sets of a probe.

    Args:
        source: "sample" (the bundled photos; class = source photo, train and val crops from
            disjoint regions), "cifar10", "stl10", or a folder with train/ and val/ in
            ImageFolder layout.
        crop: side of the crops fed to the encoder.
        short_side: images are resized to this short side before cropping (not for "sample",
            whose crops are taken at the photos' own resolution).
        root, download: where cifar10 / stl10 live, and whether torchvision may fetch them.
        train_length, val_length: crops per epoch of "sample".
        augment: random crop + flip for the training set (else centre crops, or for
            "sample" crops fixed by (seed, index)).

    Returns:
        (train_set, val_set, class names); items are (uint8 rgb (3, crop, crop), label).
    """
    if source == "sample":
        train = build_dataset("sample", "train", crop, train=augment, length=train_length,
                              labelled=True, seed=seed)
        val = build_dataset("sample", "val", crop, train=False, length=val_length,
                            labelled=True, seed=seed)
        return train, val, list(train.classes)
    if source not in ("cifar10", "stl10"):
        check_labelled_folder(source)
    # The probe's own crops: resized to short_side first, unlike the datasets' defaults.
    train = build_dataset(source, "train", crop, train=augment, labelled=True, root=root,
                          download=download, transform=probe_transform(short_side, crop, augment))
    val = build_dataset(source, "val", crop, train=False, labelled=True, root=root,
                        download=download, transform=probe_transform(short_side, crop, False))
    if list(train.classes) != list(val.classes):
        raise ProbeError(f"training and validation classes differ: {train.classes[:5]}... vs "
                         f"{val.classes[:5]}...")
    return train, val, list(train.classes)
