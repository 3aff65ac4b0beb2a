"""The CPU stand-in for CUDA's sync debug mode, and a training step it finds clean.

What synchronises on a GPU is PyTorch's documented behaviour (``torch.cuda.set_sync_debug_mode``
flags reading a value on the host, data-dependent output sizes, and blocking copies from host
memory); each case below is one of those, written as a user would, beside the sync-free way to
do the same thing.
"""

import pytest
import torch

from splitbrain import color, losses
from splitbrain.hostsync import (HostSyncError, HostSyncWatch, device_tensors,
                                 optimizer_host_tensors, upload, watching)
from tools_util import run_tool

X = torch.linspace(-1, 1, 12).view(3, 4)  # a "device" tensor (the watch is told so)

SYNCING = {
    "item": lambda x: x.sum().item(),
    "bool": lambda x: bool((x > 0).any()),
    "if": lambda x: 1 if x.max() > 0 else 0,
    "float": lambda x: float(x.mean()),
    "int": lambda x: int(x.argmax()),
    "tolist": lambda x: x.tolist(),
    "numpy": lambda x: x.numpy(),
    "cpu": lambda x: x.cpu(),
    "to cpu": lambda x: x.to("cpu"),
    "mask index": lambda x: x[x > 0],
    "mask assign": lambda x: x.clone().__setitem__(x > 0, 0.0),
    "nonzero": lambda x: (x > 0).nonzero(),
    "where(mask)": lambda x: torch.where(x > 0),
    "masked_select": lambda x: x.masked_select(x > 0),
    "unique": lambda x: x.round().unique(),
    "bincount": lambda x: torch.bincount((x > 0).long().view(-1)),
    "repeat_interleave": lambda x: torch.repeat_interleave(x.view(-1), (x > 0).long().view(-1)),
    "equal": lambda x: torch.equal(x, x),
    "tensor(data, device)": lambda x: torch.tensor([1.0, 2.0], device=x.device),
    "item of as_tensor(x)": lambda x: torch.as_tensor(x).sum().item(),
    "host.to(device)": lambda x: x + torch.tensor([1.0, 2.0, 3.0, 4.0]).to(x.device),
    "copy_ from host": lambda x: x.clone().copy_(torch.zeros(3, 4)),
    "copy_ to host": lambda x: torch.zeros(3, 4).copy_(x),
    "index with a list": lambda x: x[:, [1, 2]],
    "index with a host tensor": lambda x: x[:, torch.tensor([0, 3])],
    "index_select with a host index": lambda x: x.index_select(1, torch.tensor([1])),
    "backward of a masked op": lambda x: (
        x.clone().requires_grad_()[x > 0].sum().backward()),
}

SYNC_FREE = {
    "arithmetic": lambda x: (x * 2 + 1).clamp(0, 1).sum(),
    "where(mask, a, b)": lambda x: torch.where(x > 0, x, 0.0),
    "mask multiplied in": lambda x: (x * (x > 0)).sum() / (x > 0).sum().clamp(min=1),
    "index with device indices": lambda x: x.view(-1)[x.view(-1).argsort()],
    "channels by select_channels": lambda x: color.select_channels(x, [0, 2, 3]),
    "index with an uploaded index": lambda x: x[:, upload(torch.tensor([1, 2]), x.device)],
    "factory on the device": lambda x: torch.zeros(3, device=x.device) + torch.arange(
        3, device=x.device),
    "host scalar math": lambda x: torch.tensor(3.0).item() + torch.arange(4).sum().item(),
    "non_blocking upload": lambda x: x + torch.ones(3, 4).to(x.device, non_blocking=True),
    "upload()": lambda x: x + upload(torch.ones(3, 4), x.device),
    "as_tensor of a device tensor": lambda x: torch.as_tensor(x, device=x.device).to(
        x.device) + 1,
    "repeat_interleave with output_size": lambda x: torch.repeat_interleave(
        x.view(-1), torch.ones(12, dtype=torch.long, device=x.device), output_size=12),
    "backward": lambda x: (x.clone().requires_grad_() * 2).relu().sum().backward(),
    "cross entropy with ignore_index": lambda x: torch.nn.functional.cross_entropy(
        x, torch.zeros(3, dtype=torch.long, device=x.device), ignore_index=-1),
}


@pytest.mark.parametrize("name", sorted(SYNCING))
def test_each_synchronising_pattern_is_reported_with_its_line(name):
    x = X.clone()
    with pytest.raises(HostSyncError) as err, HostSyncWatch(device=[x]):
        SYNCING[name](x)
    message = str(err.value)
    assert "test_hostsync.py:" in message, message  # the line of the lambda above
    assert "inside the training step" in message


@pytest.mark.parametrize("name", sorted(SYNC_FREE))
def test_the_sync_free_way_is_not_reported(name):
    x = X.clone()
    with HostSyncWatch(device=[x], raise_=False) as watch:
        SYNC_FREE[name](x)
    assert watch.found == []


def test_record_mode_lists_every_site_and_the_watch_is_scoped():
    x = X.clone()
    assert not watching()
    with HostSyncWatch(device=[x], raise_=False) as watch:
        assert watching()
        x.sum().item()
        x.tolist()
    assert not watching()
    assert [op for op, _ in watch.found] == ["aten._local_scalar_dense.default", "Tensor.tolist"]
    x.sum().item()  # outside: nothing recorded, nothing raised
    assert len(watch.found) == 2


def test_adam_step_counts_are_host_tensors_by_design():
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 4)).sum().backward()
    opt.step()  # the step counts now exist (made outside the watch, as on a resume)
    watched = device_tensors(model)
    step_count = next(iter(opt.state.values()))["step"]
    # Without the allowance, Adam's read of each parameter's count is reported too.
    for allowed, expect in ((optimizer_host_tensors(opt), 0), ((), 1 + len(opt.state))):
        with HostSyncWatch(device=watched, host=allowed, raise_=False) as watch:
            model(torch.ones(1, 4)).sum().backward()
            opt.step()
            step_count.item()
        assert len(watch.found) == expect


def test_device_tensors_finds_an_objectives_tables():
    weights = torch.rand(313)

    class Holder:
        def __init__(self):
            self.class_weights = weights
            self.net = torch.nn.Conv2d(1, 1, 1)
            self.lin = {"conv1": torch.ones(3)}
    found = device_tensors(Holder())
    assert any(t is weights for t in found)
    assert sum(t.numel() for t in found) == 313 + 2 + 3


def test_lab_conversion_stays_float32_and_exact_under_bf16_autocast():
    rgb = torch.rand(2, 3, 16, 16)
    plain = color.rgb_to_lab(rgb)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = color.rgb_to_lab(rgb)
        L = color.lightness(rgb)
    assert auto.dtype == L.dtype == torch.float32
    assert torch.equal(auto, plain)
    torch.testing.assert_close(L, plain[:, :1], atol=2e-4, rtol=0)


def test_lab_conversion_is_differentiable():
    rgb = (torch.rand(1, 3, 4, 4, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(color.rgb_to_lab, (rgb,))


# --- the training step, as tools/train.py runs it ------------------------------------------

TINY = ["data.crop=32", "data.val_crop=32", "data.train_length=8", "data.val_length=4",
        "optim.batch_size=4", "color.prior_images=4", "run.log_every=1", "run.val_every=2",
        "run.image_every=2", "run.ckpt_every=2", "run.device=cpu", "optim.iterations=2",
        "run.sync_debug=true"]


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """An untrained split-brain network's checkpoint, as the perceptual term's features."""
    from splitbrain import checkpoint as ckpt
    from splitbrain.models import build_model

    name = "splitbrain_alexnet_small"
    path = tmp_path_factory.mktemp("features") / "sb.pt"
    ckpt.save({"task": "splitbrain", "model": {"name": name, "kwargs": {}},
               "state_dict": build_model(name).state_dict(), "config": {}}, path)
    return path


def test_training_step_with_the_perceptual_term_has_no_synchronisation(tmp_path, features):
    assert run_tool("train", ["--task", "colorize", f"run.out={tmp_path}", *TINY,
                              "data.crop=64", "data.val_crop=64", "loss.perceptual_weight=0.5",
                              f"loss.perceptual_ckpt={features}"]) == 0
    assert "loss_perceptual=" in (tmp_path / "train.log").read_text()


def test_a_crop_too_small_for_the_perceptual_features_is_refused_up_front(
        tmp_path, features, capsys):
    out = tmp_path / "run"
    assert run_tool("train", ["--task", "colorize", f"run.out={out}", *TINY, "data.crop=64",
                              "loss.perceptual_weight=0.5",
                              f"loss.perceptual_ckpt={features}"]) == 2
    err = capsys.readouterr().err
    assert "data.val_crop=32 is too small for the perceptual term's feature network" in err
    assert "data.crop=" not in err  # 64 is fine
    assert not out.exists()


@pytest.mark.parametrize("task, extra", [
    ("colorize", []),
    ("colorize", ["model.head=reg", "model.blur=3", "run.precision=bf16",
                  "run.channels_last=true"]),
    ("splitbrain", ["data.crop=64", "data.val_crop=64"]),
    ("splitbrain", ["data.crop=64", "data.val_crop=64", "model.heads=[reg,reg]"]),
])
def test_training_step_has_no_host_device_synchronisation(tmp_path, task, extra):
    assert run_tool("train", ["--task", task, f"run.out={tmp_path}", *TINY, *extra]) == 0
    assert "step 2/2" in (tmp_path / "train.log").read_text()


def test_a_synchronisation_added_to_the_loss_stops_the_run_naming_the_line(
        tmp_path, monkeypatch, capsys):
    original = losses.soft_cross_entropy

    def reads_the_loss(*args, **kwargs):
        loss = original(*args, **kwargs)
        if loss > 100:  # the kind of check that costs a synchronisation every step
            raise RuntimeError("diverged")
        return loss
    monkeypatch.setattr(losses, "soft_cross_entropy", reads_the_loss)
    code = run_tool("train", ["--task", "colorize", f"run.out={tmp_path}", *TINY])
    assert code == 5
    log = (tmp_path / "train.log").read_text()
    assert "run.sync_debug: aten._local_scalar_dense" in log
    assert "test_hostsync.py" in log and "if loss > 100" in log
    assert not (tmp_path / "latest.pt").exists()


def test_the_cpu_shortcut_of_soft_encoding_is_replaced_under_the_watch():
    """Under the watch the nearest-bin search takes its GPU path, which then gets checked."""
    from splitbrain.color.quantize import _nearest

    ab = torch.rand(1, 2, 40, 40, generator=torch.Generator().manual_seed(0)) * 256 - 128
    with HostSyncWatch(device=[ab], raise_=False) as watch:
        bins, d2 = _nearest(ab, 10)
    assert watch.found == []
    bins_cpu, d2_cpu = _nearest(ab, 10)
    assert torch.equal(bins[:, 0], bins_cpu[:, 0])
    with HostSyncWatch(device=[ab], raise_=False) as watch:
        _nearest(ab, 10, sync_free=False)
    assert [op for op, _ in watch.found] == ["aten.nonzero.default"]


@pytest.mark.parametrize("extra, key", [(["run.nonfinite=skip"], "run.nonfinite"),
                                        (["run.precision=fp16"], "run.precision")])
def test_sync_debug_refuses_settings_that_synchronise_by_design(tmp_path, capsys, extra, key):
    assert run_tool("train", ["--task", "colorize", f"run.out={tmp_path / 'run'}", *TINY,
                              *extra]) == 2
    err = capsys.readouterr().err
    assert key in err and "sync_debug" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["splitbrain_alexnet_small", "alexnet_colorization_small"])
def test_the_probe_step_has_no_synchronisation(name):
    """tools/probe.py's SGD step (frozen forward, five heads) leaves the losses on the device."""
    from splitbrain.models import build_model
    from splitbrain.probe.encoder import FrozenEncoder
    from splitbrain.probe.solver_sgd import SGDRecipe, build_heads, make_optimizers, probe_step

    torch.manual_seed(0)
    encoder = FrozenEncoder(build_model(name), "all")
    heads = build_heads(encoder.dims, num_classes=3)
    optimizers, _ = make_optimizers(heads, SGDRecipe())
    rgb = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0])
    with HostSyncWatch(device=[rgb, labels, *device_tensors(encoder, heads)]):
        losses = probe_step(encoder, heads, optimizers, rgb, labels)
    assert set(losses) == set(encoder.layers)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("task, crop", [("colorize", 32), ("splitbrain", 64)])
def test_validation_reads_the_host_once_per_pass_not_per_batch(task, crop):
    """Losses, AuC histograms, PSNR and colourfulness are summed on the device; the few reads
    come at the end, so 2 batches and 6 batches cost the same number."""
    from splitbrain import config, engine, tasks
    from splitbrain.data import SamplePhotos

    cfg = config.resolve(task, overrides=[f"data.val_crop={crop}", "color.prior_images=4"])
    photos = SamplePhotos("val", crop, length=12, seed=0, augment=False)
    setup = tasks.setup(task, cfg, photos, torch.device("cpu"), lambda line: None)
    batches = [(torch.stack([photos[i][0] for i in range(j, j + 2)]), None)
               for j in range(0, 12, 2)]
    counts = []
    for n in (2, 6):
        watch = HostSyncWatch(device=[b for b, _ in batches] + device_tensors(
            setup.model, setup.objective), raise_=False)
        with watch:
            metrics = engine.evaluate(setup.model, setup.objective, batches[:n],
                                      torch.device("cpu"))
        counts.append(len(watch.found))
        assert all(v == v for v in metrics.values())  # nothing NaN
    assert counts[0] == counts[1] < 20, counts


@pytest.mark.parametrize("channels", [[0], [1, 2], [0, 2], [2, 0, 1], [0, 1, 2]])
def test_select_channels_matches_list_indexing(channels):
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(color.select_channels(x, channels), x[:, channels])
