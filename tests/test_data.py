"""Datasets: the bundled photos, folders of images, labelled folders, torchvision sets."""

import gc
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from splitbrain.data import (SAMPLE_PHOTOS, ImageFiles, LabelledFolder, SamplePhotos,
                             UnreadableImageWarning, build_dataset, eval_transform,
                             train_transform)
from splitbrain.images import PathTable
from splitbrain.loaders import SeededSamples, StepBatches


# --- transforms -----------------------------------------------------------------------------

def same(a, b):
    """Equal 8-bit images (datasets serve uint8; the colour code converts on the device)."""
    return a.dtype == b.dtype == torch.uint8 and a.shape == b.shape and torch.equal(a, b)


def test_train_transform_crops_flips_and_enlarges_small_images(photo):
    img = photo(size=(32, 32))
    ref = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
    t = train_transform(32)
    outs = []
    for seed in range(12):
        torch.manual_seed(seed)
        outs.append(t(img))
    # A crop as large as the image leaves only the flip free: both outcomes occur.
    assert all(same(o, ref) or same(o, ref.flip(-1)) for o in outs)
    assert any(same(o, ref) for o in outs) and any(same(o, ref.flip(-1)) for o in outs)
    small = t(photo(size=(20, 12)))
    assert small.shape == (3, 32, 32) and small.dtype == torch.uint8
    assert type(small) is torch.Tensor


def test_eval_transform_is_the_centre_crop(photo):
    img = photo(size=(64, 32))  # short side already 32: only the crop acts
    ref = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
    assert same(eval_transform(32)(img), ref[:, :, 16:48])
    assert eval_transform(24)(photo(size=(50, 40))).shape == (3, 24, 24)


# --- sample photos --------------------------------------------------------------------------

def test_sample_photos_shapes_labels_and_range():
    ds = build_dataset("sample", "train", 48, train=True, length=14)
    assert ds.classes == list(SAMPLE_PHOTOS) and len(ds) == 14
    for i in (0, 3, 13):
        rgb, label = ds[i]
        assert rgb.shape == (3, 48, 48) and rgb.dtype == torch.uint8 and label == i % 7
        assert rgb.float().std() > 0  # a photo, not a blank
    with pytest.raises(IndexError):
        ds[14]


@pytest.mark.parametrize("size", [48, 200])  # 200: wider than chelsea's held-out quarter
def test_sample_train_and_val_crops_come_from_disjoint_regions(size):
    train = SamplePhotos("train", size, length=70)
    val = SamplePhotos("val", size, length=70)
    for p in range(len(SAMPLE_PHOTOS)):
        assert torch.equal(train.photos[p], val.photos[p])  # the same (scaled) photo ...
        assert train.bounds[p][1] <= val.bounds[p][0]  # ... cut in two, train on the left
        assert val.bounds[p][1] == val.photos[p].shape[2]
        assert train.bounds[p][1] - train.bounds[p][0] >= size
    torch.manual_seed(0)
    for ds in (train, val):
        for i in range(len(ds)):
            photo, top, left = ds.crop_box(i)
            x0, x1 = ds.bounds[photo]
            assert photo == i % 7 and x0 <= left and left + size <= x1
            assert 0 <= top and top + size <= ds.photos[photo].shape[1]
    # What val serves is exactly the pixels of its box.
    photo, top, left = val.crop_box(5)
    expected = val.photos[photo][:, top:top + size, left:left + size]
    assert torch.equal(val[5][0], expected)


def test_sample_val_crops_are_deterministic():
    a = SamplePhotos("val", 32, length=20, seed=1)
    torch.manual_seed(123)  # the global RNG plays no part
    first = [a[i][0] for i in range(20)]
    torch.manual_seed(456)
    b = SamplePhotos("val", 32, length=20, seed=1)
    assert all(torch.equal(x, b[i][0]) for i, x in enumerate(first))
    other = SamplePhotos("val", 32, length=20, seed=2)
    assert any(a.crop_box(i) != other.crop_box(i) for i in range(20))


def test_sample_train_augmentation_follows_the_sample_seed():
    ds = SeededSamples(build_dataset("sample", "train", 32, train=True, length=7))
    assert torch.equal(ds[(2, 10)][0], ds[(2, 10)][0])
    assert not torch.equal(ds[(2, 10)][0], ds[(2, 11)][0])


def test_sample_train_crops_are_flipped_half_the_time():
    ds = SamplePhotos("train", 32, length=7)
    flips = []
    for seed in range(16):
        torch.manual_seed(seed)
        photo, top, left = ds.crop_box(2)  # replays the first draws of ds[2]
        box = ds.photos[photo][:, top:top + 32, left:left + 32]
        torch.manual_seed(seed)
        crop = ds[2][0]
        assert torch.equal(crop, box) or torch.equal(crop, box.flip(-1))
        flips.append(not torch.equal(crop, box))
    assert 0 < sum(flips) < len(flips)


def test_sample_train_region_without_augmentation():
    # What tools/compute_prior.py uses: the training region, fixed crops, no flips.
    ds = build_dataset("sample", "train", 32, train=False, length=14)
    assert not ds.augment and all(ds.bounds[p][0] == 0 for p in range(7))
    assert torch.equal(ds[3][0], ds[3][0])


# --- folders ----------------------------------------------------------------------------------

def test_folder_of_images_skips_and_counts_unreadable(tmp_path, write_photos):
    good = write_photos(tmp_path / "imgs" / "nested", 3)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    ds = build_dataset(str(tmp_path / "imgs"), "train", 32, train=False)
    assert isinstance(ds, ImageFiles) and len(ds) == 4 and ds.skipped == set()
    with pytest.warns(UnreadableImageWarning, match="broken.png"):
        items = [ds[i] for i in range(len(ds))]
    assert all(x.shape == (3, 32, 32) and label == 0 for x, label in items)
    assert ds.skipped == {tmp_path / "imgs" / "broken.png"}
    # broken.png sorts first; the file after it is served in its place.
    assert torch.equal(items[0][0], items[1][0])
    assert same(items[1][0], eval_transform(32)(Image.open(good[0]).convert("RGB")))


def test_skipped_files_are_seen_from_loader_workers(tmp_path, write_photos):
    write_photos(tmp_path, 3)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    ds = ImageFiles(tmp_path, eval_transform(16))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    assert sum(len(x) for x, _ in loader) == 4  # warnings are printed by the workers
    assert ds.skipped == {tmp_path / "bad.jpg"}


def test_all_unreadable_is_an_error(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"no")
    (tmp_path / "y.png").write_bytes(b"")
    ds = build_dataset(str(tmp_path), "train", 32, train=True)
    with pytest.raises(RuntimeError, match="none of the 2 image files"), \
            pytest.warns(UnreadableImageWarning):
        ds[0]


def test_labelled_folder(tmp_path, write_photos):
    write_photos(tmp_path / "train" / "cat", 2)
    write_photos(tmp_path / "train" / "dog" / "deeper", 3)
    write_photos(tmp_path / "train" / ".cache", 1)  # hidden: not a class
    (tmp_path / "train" / "dog" / "z_broken.jpg").write_bytes(b"")
    ds = build_dataset(str(tmp_path), "train", 32, train=False, labelled=True)
    assert isinstance(ds, LabelledFolder) and ds.classes == ["cat", "dog"]
    targets = ds.targets.tolist()
    assert targets == [0, 0, 1, 1, 1, 1]
    with pytest.warns(UnreadableImageWarning, match="z_broken.jpg"):
        labels = [ds[i][1] for i in range(len(ds))]
    broken = [p.name for p in ds.files].index("z_broken.jpg")  # 4: before deeper/
    # The next file is served in its place, with that file's own label.
    assert labels == targets[:broken] + [targets[broken + 1]] + targets[broken + 1:]
    assert all(type(label) is int for label in labels)
    assert ds.skipped == {tmp_path / "train" / "dog" / "z_broken.jpg"}


def test_labelled_folder_needs_class_subfolders(tmp_path, write_photos):
    write_photos(tmp_path / "flat", 2)
    with pytest.raises(ValueError, match="flat has no class subfolders"):
        build_dataset(str(tmp_path / "flat"), "train", 32, train=False, labelled=True)


def test_missing_paths_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no/such"):
        build_dataset(str(tmp_path / "no" / "such"), "train", 32, train=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in .*empty"):
        build_dataset(str(tmp_path / "empty"), "train", 32, train=True)



def test_labelled_folder_reads_each_real_folder_once_and_skips_hidden_ones(tmp_path,
                                                                           write_photos):
    write_photos(tmp_path / "cat", 2)
    write_photos(tmp_path / "dog", 3)
    write_photos(tmp_path / "dog" / ".thumbnails", 4)  # hidden: not part of the class
    os.symlink(".", tmp_path / "cat" / "loop")  # back to its own folder: walked forever
    os.symlink(".", tmp_path / "cat" / "loop2")  # two such links: exponentially many paths
    os.symlink(tmp_path / "dog", tmp_path / "cat" / "dogs")  # another class, by link: kept
    ds = LabelledFolder(tmp_path)
    assert ds.classes == ["cat", "dog"]
    names = [(p.parent.name, p.name) for p in ds.files]
    assert names == [("cat", "p0.jpg"), ("cat", "p1.jpg"), ("dogs", "p0.jpg"),
                     ("dogs", "p1.jpg"), ("dogs", "p2.jpg"), ("dog", "p0.jpg"),
                     ("dog", "p1.jpg"), ("dog", "p2.jpg")]
    assert ds.targets.tolist() == [0] * 5 + [1] * 3


# --- torchvision datasets (never downloaded here) -------------------------------------------

@pytest.mark.parametrize("name, folder, split", [("cifar10", "cifar-10-batches-py", "train"),
                                                 ("cifar10", "cifar-10-batches-py", "val"),
                                                 ("stl10", "stl10_binary", "unlabeled")])
def test_missing_torchvision_data_says_where_and_how_to_download(tmp_path, name, folder, split):
    with pytest.raises(FileNotFoundError) as info:
        build_dataset(name, split, 32, train=True, root=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / folder) in message and "download: true" in message
    assert "download=True" in message
    assert not any(tmp_path.iterdir())  # nothing was fetched


def test_unknown_splits_are_refused(tmp_path):
    with pytest.raises(ValueError, match="cifar10 has the splits"):
        build_dataset("cifar10", "unlabeled", 32, train=True, root=str(tmp_path))
    with pytest.raises(ValueError):
        build_dataset("stl10", "bogus", 32, train=True, root=str(tmp_path))
    with pytest.raises(ValueError, match="train and val"):
        SamplePhotos("extra", 32)


# --- resumable, deterministic data order ----------------------------------------------------

def take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_resumed_batch_order_matches_uninterrupted():
    full = take(StepBatches(10, 3, seed=7), 8)  # crosses two epoch boundaries
    resumed = take(StepBatches(10, 3, seed=7, start_step=5), 3)
    assert resumed == full[5:]


def test_epochs_are_permutations_and_seeds_are_unique():
    batches = take(StepBatches(12, 4, seed=0), 6)
    for epoch in (batches[:3], batches[3:]):
        assert sorted(i for b in epoch for i, _ in b) == list(range(12))
    assert batches[:3] != batches[3:]  # a new order each epoch
    seeds = [s for b in batches for _, s in b]
    assert len(set(seeds)) == len(seeds)


def test_too_small_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than one batch"):
        StepBatches(3, 4)


class RandomItems(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.rand(2), i


def test_seeded_samples_make_augmentation_repeatable():
    ds = SeededSamples(RandomItems())
    a, b = ds[(3, 123)], ds[(3, 123)]
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], ds[(3, 124)][0])
    # The global RNG is left alone.
    state = torch.get_rng_state()
    ds[(0, 1)]
    assert torch.equal(state, torch.get_rng_state())


# --- file lists that loader workers do not copy ---------------------------------------------

def test_path_table_gives_back_every_path_exactly(tmp_path):
    paths = [tmp_path / "a.jpg", Path("/x/ünïcödé/ b.png"), Path("rel/c.JPEG"),
             Path(os.fsdecode(b"/raw/\xff\xfe.jpg"))]  # bytes that are not UTF-8
    table = PathTable(paths)
    assert len(table) == 4 and list(table) == paths
    assert table[-1] == paths[-1] and table[0] == paths[0]
    with pytest.raises(IndexError):
        table[4]
    assert len(PathTable([])) == 0


@pytest.mark.parametrize("labelled", [False, True])
def test_a_folder_dataset_holds_no_python_object_per_file(tmp_path, labelled):
    """3000 files: the dataset adds a fixed few tracked objects, where a list of paths adds one
    per file (the objects that forked loader workers would copy)."""
    for c in range(3):
        folder = tmp_path / "train" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(1000):
            (folder / f"{i:04d}.jpg").touch()
    gc.collect()
    before = len(gc.get_objects())
    ds = build_dataset(str(tmp_path), "train", 32, train=False, labelled=labelled)
    gc.collect()
    added = len(gc.get_objects()) - before
    assert len(ds) == 3000 and ds.files[2999].name == "0999.jpg"
    reference = [Path(p) for p in ds.files]  # what the dataset held before
    gc.collect()
    by_reference = len(gc.get_objects()) - before - added
    assert added < 200 and by_reference >= 3000, (added, by_reference)
    del reference


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(),
                    reason="needs Linux's /proc/self/smaps_rollup to measure copied pages")
def test_a_forked_worker_reading_every_path_copies_nothing_of_the_table():
    """A forked child (as a loader worker is) reads all 100k paths. Reading them from a
    PathTable makes no more private memory than making the same paths from scratch; reading a
    list of Path objects copies tens of MiB of the parent's pages (their reference counts)."""
    def names():
        return (f"/data/imagenet/train/n{i // 1300:08d}/n{i // 1300:08d}_{i:06d}.JPEG"
                for i in range(100_000))

    def copied_kib(read):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: read every path, report the private pages it made
            try:
                # Collections would write the header of every object of this (large) test
                # process whatever the dataset; frozen, only the reads themselves write.
                gc.freeze()
                before = _private_dirty_kib()
                read()
                os.write(w, str(_private_dirty_kib() - before).encode())
            finally:
                os._exit(0)
        os.close(w)
        out = os.read(r, 64)
        os.waitpid(pid, 0)
        return int(out)

    def read_all(paths):
        for path in paths:
            path.name

    table = PathTable(names())
    gc.collect()
    from_table = copied_kib(lambda: read_all(table))
    from_scratch = copied_kib(lambda: read_all(Path(p) for p in names()))  # nothing shared
    paths = [Path(p) for p in names()]
    from_list = copied_kib(lambda: read_all(paths))
    print(f"copied KiB: table {from_table}, from scratch {from_scratch}, list {from_list}")
    assert from_table < from_scratch + 2048, (from_table, from_scratch)
    assert from_list > from_scratch + 10_000, (from_list, from_scratch)


def _private_dirty_kib():
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Private_Dirty:"))


def test_a_fingerprint_tells_apart_file_lists_of_the_same_length(tmp_path, write_photos):
    from splitbrain.data import ImageFiles, fingerprint

    paths = write_photos(tmp_path / "a", n=3)
    before = fingerprint(ImageFiles(tmp_path / "a"))
    assert before == fingerprint(ImageFiles(tmp_path / "a"))  # listed again: the same
    assert before["items"] == before["files"] == 3
    paths[1].rename(paths[1].with_name("renamed.jpg"))  # same count, another list
    after = fingerprint(ImageFiles(tmp_path / "a"))
    assert after["files"] == 3 and after != before
    # Datasets without a file list (sample photos, CIFAR-10) compare by length.
    assert fingerprint(list(range(5))) == {"items": 5}
