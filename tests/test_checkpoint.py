"""Checkpoints: atomic writes, plain-data round trip, rebuilding every kind of model, resume."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from splitbrain import checkpoint as ckpt


def test_checkpoint_round_trip_is_plain_data(tmp_path):
    path = tmp_path / "c.pt"
    ckpt.save({"task": "colorize", "state_dict": {"w": torch.ones(2)}, "step": 3}, path)
    state = ckpt.load(path, task="colorize")  # weights_only=True inside
    assert state["step"] == 3 and torch.equal(state["state_dict"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="cannot read"):
        ckpt.load(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a splitbrain checkpoint"):
        ckpt.load(tmp_path / "foreign.pt")
    ckpt.save({"task": "probe"}, tmp_path / "probe.pt")
    with pytest.raises(ckpt.CheckpointError, match="task 'probe'.*'colorize' is needed here: "
                                                   "give one written by tools/train.py --task "
                                                   "colorize"):
        ckpt.load(tmp_path / "probe.pt", task="colorize")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    ckpt.save({"task": "colorize", "step": 1}, path)

    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        ckpt.save({"task": "colorize", "step": 2}, path)
    monkeypatch.undo()
    assert ckpt.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_load_state_dict_reports_architecture_mismatch():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ckpt.CheckpointError, match="shape mismatch.*another architecture"):
        ckpt.load_state_dict(model, {"weight": torch.zeros(4, 3), "bias": torch.zeros(2)})
    with pytest.raises(ckpt.CheckpointError, match="missing 1 keys"):
        ckpt.load_state_dict(model, {"weight": torch.zeros(2, 3)})


# --- one atomic write for every file the project writes ---------------------------------------

def _broken(tmp):
    Path(tmp).write_bytes(b"half")
    raise OSError("disk full")


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    ckpt.atomic_write(path, lambda tmp: Path(tmp).write_text("one"))
    assert path.read_text() == "one"  # the folder was created
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_write(path, _broken)
    assert path.read_text() == "one"
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]  # no temp file left behind


def test_atomic_write_keeps_the_suffix_for_format_by_extension_writers(tmp_path):
    seen = []
    ckpt.atomic_write(tmp_path / "a.jpg", lambda tmp: (seen.append(Path(tmp)),
                                                       Path(tmp).write_bytes(b"x")))
    assert seen[0].suffix == ".jpg" and seen[0].parent == tmp_path and seen[0] != tmp_path / "a.jpg"


@pytest.mark.parametrize("writer", ["prior", "config", "image"])
def test_every_writer_goes_through_the_atomic_write(tmp_path, monkeypatch, writer):
    from PIL import Image

    from splitbrain import config, prior
    from tools_util import load_tool

    path = tmp_path / {"prior": "p.npy", "config": "c.yaml", "image": "i.png"}[writer]
    write = {"prior": lambda: prior.save_prior(np.full(313, 1 / 313), path),
             "config": lambda: config.save({"a": 1}, path),
             "image": lambda: load_tool("colorize").save_image(np.zeros((4, 5, 3), np.uint8),
                                                               path)}[writer]
    write()
    before = path.read_bytes()
    calls = []
    real = ckpt.atomic_write
    monkeypatch.setattr(ckpt, "atomic_write", lambda p, w: (calls.append(p), real(p, _broken)))
    monkeypatch.setattr(prior, "atomic_write", ckpt.atomic_write)
    monkeypatch.setattr(config, "atomic_write", ckpt.atomic_write)
    with pytest.raises(OSError, match="disk full"):
        write()
    assert calls == [path] and path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    if writer == "image":
        assert Image.open(path).size == (5, 4)


# --- rebuilding any model a checkpoint holds ---------------------------------------------------

def _trained_state(task, model_name, **kwargs):
    from splitbrain.models import build_model

    torch.manual_seed(0)
    model = build_model(model_name, **kwargs)
    return {"task": task, "model": {"name": model_name, "kwargs": kwargs},
            "state_dict": {k: v.clone() for k, v in model.state_dict().items()}}, model


@pytest.mark.parametrize("task,name,kwargs", [
    ("colorize", "eccv16_small", {"blur": 1, "l_norm": "unit"}),
    ("colorize", "eccv16_small", {"blur": 5}),
    ("splitbrain", "splitbrain_alexnet_small", {"half": "both", "blur": 2}),
    ("colorize", "alexnet_colorization_small", {"num_classes": 2}),
    ("splitbrain", "splitbrain_alexnet_small", {"half": "both", "heads": ["cl", "reg"]}),
    ("splitbrain", "splitbrain_alexnet_small", {"half": "ab2l", "padding": "official"}),
])
def test_build_model_rebuilds_the_saved_network_exactly(tmp_path, task, name, kwargs):
    state, model = _trained_state(task, name, **kwargs)
    ckpt.save(state, tmp_path / "c.pt")
    rebuilt = ckpt.build_model(ckpt.load(tmp_path / "c.pt"))
    assert type(rebuilt) is type(model)
    x = torch.rand(2, 1 if task == "colorize" else 3, 96, 96) * 50
    with torch.no_grad():
        ref, out = model.eval()(x), rebuilt.eval()(x)
    for r, o in zip(ref if isinstance(ref, list) else [ref], out if isinstance(out, list) else [out]):
        assert torch.equal(r, o)
    fresh = ckpt.build_model(ckpt.load(tmp_path / "c.pt"), weights=False)
    assert set(fresh.state_dict()) == set(model.state_dict())
    assert not all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())


def test_build_model_errors_name_the_problem(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="records no model"):
        ckpt.build_model({"task": "probe"})
    with pytest.raises(ckpt.CheckpointError, match="cannot build its model 'resnet'"):
        ckpt.build_model({"task": "colorize", "model": {"name": "resnet", "kwargs": {}}})
    state, _ = _trained_state("colorize", "eccv16_small")
    state["model"]["kwargs"] = {"num_classes": 2}
    with pytest.raises(ckpt.CheckpointError, match="shape mismatch.*another architecture"):
        ckpt.build_model(state, "x.pt")


def test_version_1_checkpoints_load_with_the_current_head_names(tmp_path):
    state, _ = _trained_state("colorize", "eccv16_small")
    config = {"model": {"name": "eccv16_small"}, "loss": "regression", "optim": {"lr": 1.0}}
    torch.save({"format": "splitbrain", "version": 1, **state, "config": config,
                "color": {"head": "regression"}}, tmp_path / "old.pt")
    loaded = ckpt.load(tmp_path / "old.pt")
    assert loaded["version"] == ckpt.VERSION and loaded["color"]["head"] == "reg"
    assert loaded["config"]["model"]["head"] == "reg" and "loss" not in loaded["config"]
    assert ckpt.build_model(loaded) is not None


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("pool,blur", [("max", 1), ("maxblur", 3)])
def test_checkpoints_that_name_the_pool_load_with_its_filter_size(tmp_path, version, pool, blur):
    # Before version 3, "maxblur" meant the 3-tap binomial filter and "max" no filter.
    state, model = _trained_state("splitbrain", "splitbrain_alexnet_small", half="both",
                                  blur=blur)
    state["model"]["kwargs"] = {"half": "both", "pool": pool}
    config = {"model": {"name": "splitbrain_alexnet_small", "pool": pool, "head": "cl"}}
    torch.save({"format": "splitbrain", "version": version, **state, "config": config},
               tmp_path / "old.pt")
    loaded = ckpt.load(tmp_path / "old.pt")
    assert loaded["model"]["kwargs"]["blur"] == blur and "pool" not in loaded["model"]["kwargs"]
    assert loaded["config"]["model"]["blur"] == blur and "pool" not in loaded["config"]["model"]
    x = torch.rand(1, 3, 96, 96) * 50
    with torch.no_grad():
        same = zip(model.eval()(x), ckpt.build_model(loaded).eval()(x))
    assert all(torch.equal(a, b) for a, b in same)


def test_resume_restores_weights_optimiser_and_schedule(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [2], 0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
        sched.step()
    state = ckpt.training_state("colorize", model, {"name": "x", "kwargs": {}}, {}, 3, opt, sched,
                                metrics={"best_val_loss": 1.5})
    ckpt.save(state, tmp_path / "latest.pt")

    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.1)
    sched2 = torch.optim.lr_scheduler.MultiStepLR(opt2, [2], 0.1)
    step, metrics = ckpt.resume(ckpt.load(tmp_path / "latest.pt"), model2, opt2, sched2)
    assert step == 3 and metrics == {"best_val_loss": 1.5}
    assert sched2.get_last_lr() == sched.get_last_lr() == [pytest.approx(0.01)]
    # One more identical step from both gives identical weights: Adam's moments came along.
    x = torch.randn(4, 3)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    assert torch.equal(model.weight, model2.weight)


# --- integrity -------------------------------------------------------------------------------

def test_empty_and_random_files_get_a_reason_and_never_the_unsafe_advice(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError, match=r"the file is empty \(0 bytes\)"):
        ckpt.load(tmp_path / "empty.pt")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ckpt.CheckpointError, match=r"\(5000 bytes\): \S") as info:
        ckpt.load(tmp_path / "random.pt")
    assert "weights_only=False" not in str(info.value)
    assert "damaged or not a PyTorch checkpoint: give a latest.pt" in str(info.value)  # the fix
    # A pickle that holds code is refused without advising how to run it.
    torch.save({"fn": Path}, tmp_path / "code.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a plain-data checkpoint") as info:
        ckpt.load(tmp_path / "code.pt")
    assert "weights_only=False" not in str(info.value)


def test_flipped_bytes_in_a_tensor_are_caught_by_the_checksum(tmp_path):
    path = tmp_path / "c.pt"
    ckpt.save({"task": "colorize", "state_dict": {"w": torch.ones(1000)},
               "optimizer": {"state": {0: {"exp_avg": torch.zeros(1000)}}}}, path)
    state = torch.load(path, weights_only=True)
    state["optimizer"]["state"][0]["exp_avg"][17] = 3e6  # what bit rot did to an Adam moment
    torch.save(state, path)
    with pytest.raises(ckpt.CheckpointError, match="corrupted.*checksum"):
        ckpt.load(path)


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    proc = subprocess.Popen(["true"])
    proc.wait()  # its pid is free now: a writer that was killed
    stale = tmp_path / f".latest.tmp{proc.pid}.pt"
    stale.write_bytes(b"half")
    live = tmp_path / f".best.tmp{os.getpid()}.pt"
    live.write_bytes(b"being written")
    (tmp_path / "latest.pt").write_bytes(b"keep")
    assert ckpt.remove_stale_temp_files(tmp_path) == [stale.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "latest.pt"])


def test_an_atomic_write_flushes_the_folder_after_the_rename(tmp_path, monkeypatch):
    """Without fsync on the folder a power cut can lose the rename that made the file."""
    import os
    import stat

    real_fsync, real_replace, events = os.fsync, os.replace, []

    def fsync(fd):
        events.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        return real_fsync(fd)

    def replace(a, b):
        events.append("rename")
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    ckpt.atomic_write(tmp_path / "x.txt", lambda tmp: open(tmp, "w").write("hello"))
    assert events == ["file", "rename", "folder"]
    assert (tmp_path / "x.txt").read_text() == "hello"
