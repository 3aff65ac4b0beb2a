"""Datasets: the bundled photos, folders of images, labelled folders, torchvision sets."""

import pytest
import torch
from PIL import Image
from skimage import data as skdata

from splitbrain.data import SamplePhotos, build_dataset
from splitbrain.engine import SeededSamples


def test_sample_photos_shapes_labels_and_range():
    ds = build_dataset("sample", "train", 48, train=True, length=14)
    rgb, label = ds[3]
    assert rgb.shape == (3, 48, 48) and rgb.dtype == torch.float32
    assert 0 <= rgb.min() and rgb.max() <= 1 and label == 3
    assert len(ds.classes) == 7 and len(ds) == 14


def test_sample_val_crops_are_deterministic_and_held_out():
    val = SamplePhotos("val", 32, length=20, seed=1)
    a, b = val[5][0], val[5][0]
    assert torch.equal(a, b)
    train = SamplePhotos("train", 32, length=20)
    for photo in range(7):
        # Train and val regions are the two sides of one cut through each photo: no overlap.
        full_width = train.regions[photo].shape[2] + val.regions[photo].shape[2]
        assert train.regions[photo].shape[2] == int(full_width * 0.75)
    # Every val crop lies inside the held-out region.
    for i in range(20):
        photo, top, left = val.crop_box(i)
        region = val._region(photo)
        assert top + 32 <= region.shape[1] and left + 32 <= region.shape[2]


def test_sample_train_augmentation_follows_the_sample_seed():
    ds = SeededSamples(build_dataset("sample", "train", 32, train=True, length=7))
    assert torch.equal(ds[(2, 10)][0], ds[(2, 10)][0])
    assert not torch.equal(ds[(2, 10)][0], ds[(2, 11)][0])


def write_photos(folder, n, size=(50, 40)):
    folder.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(skdata.coffee())
    for i in range(n):
        img.resize((size[0] + i, size[1])).save(folder / f"p{i}.jpg")


def test_folder_of_images_skips_and_counts_unreadable(tmp_path):
    write_photos(tmp_path / "imgs" / "nested", 3)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"")
    ds = build_dataset(str(tmp_path / "imgs"), "train", 32, train=True)
    assert len(ds) == 4
    with pytest.warns(UserWarning, match="broken.png"):
        items = [ds[i] for i in range(len(ds))]
    assert all(x.shape == (3, 32, 32) for x, _ in items)
    assert [p.name for p in ds.skipped] == ["broken.png"]


def test_all_unreadable_is_an_error(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"no")
    ds = build_dataset(str(tmp_path), "train", 32, train=True)
    with pytest.raises(RuntimeError, match="no readable image"), pytest.warns(UserWarning):
        ds[0]


def test_labelled_folder(tmp_path):
    write_photos(tmp_path / "train" / "cat", 2)
    write_photos(tmp_path / "train" / "dog", 2)
    ds = build_dataset(str(tmp_path), "train", 32, train=False, labelled=True)
    assert ds.classes == ["cat", "dog"] and sorted(ds[i][1] for i in range(4)) == [0, 0, 1, 1]
    write_photos(tmp_path / "flat", 2)
    with pytest.raises(ValueError, match="no class subfolders"):
        build_dataset(str(tmp_path / "flat"), "train", 32, train=False, labelled=True)


def test_missing_paths_and_datasets_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no/such"):
        build_dataset(str(tmp_path / "no" / "such"), "train", 32, train=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in"):
        build_dataset(str(tmp_path / "empty"), "train", 32, train=True)
    for name in ("cifar10", "stl10"):
        with pytest.raises(FileNotFoundError, match="download"):
            build_dataset(name, "train", 32, train=True, root=str(tmp_path))
