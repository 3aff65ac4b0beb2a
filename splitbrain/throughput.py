"""Where a training step's time goes: whole steps, the work outside the network, the loader.

Used by ``tools/benchmark.py --step``. Every figure is measured in the same process and run;
nothing here asserts a speed.
"""

import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from . import color
from .data import SAMPLE_PHOTOS, ImageFiles, sample_photo, train_transform
from .hostsync import HostSyncWatch, device_tensors, optimizer_host_tensors
from .loaders import train_loader
from .models import build_model
from .objectives import ColorizationObjective, SplitBrainObjective
from .runtime import autocast
from .tasks import split_specs

# Dense bf16 peak TFLOP/s (no sparsity) of accelerators, matched on the device name.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 756.0,
                    "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                    "RTX 4090": 165.0, "RTX 3090": 71.0}
# Paper crop sizes: ECCV16 176×176, split-brain 180×180.
PAPER_SIZES = {"eccv16": 176, "eccv16_small": 176, "alexnet_colorization": 176,
               "alexnet_colorization_small": 176, "splitbrain_alexnet": 180,
               "splitbrain_alexnet_small": 180}


@dataclass
class StepResult:
    net: str
    precision: str
    channels_last: bool
    compiled: bool
    step_ms: float
    images_per_s: float
    outside_share: float  # of the step: colour conversion, targets and loss, forward+backward
    tflops: float  # achieved, from the counted FLOPs of one step
    peak_mib: float  # CUDA peak allocation; NaN on the CPU
    syncs: int = -1  # host-device synchronisations in one step; -1: not counted


def device_peak_tflops(device):
    """The device's dense bf16 peak, or None when it is not in the table (or a CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, steps, warmup):
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class _Replay(torch.nn.Module):
    """Stands in for the network: returns saved outputs, so only the objective's work is left."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = [o.detach().requires_grad_() for o in outputs]

    def forward(self, x):
        return self.outputs if len(self.outputs) > 1 else self.outputs[0]


def _task(net):
    model = build_model(net)
    if net.startswith("splitbrain"):
        return model, SplitBrainObjective(split_specs(model))
    return model, ColorizationObjective("cl", class_weights=torch.ones(color.NUM_AB_BINS))


def bench_step(net, batch, size, device, precision="fp32", channels_last=False, compile=False,
               steps=3, warmup=1, seed=0):
    """Time a whole training step (colour work, forward, loss, backward, Adam) of ``net``."""
    torch.manual_seed(seed)
    model, objective = _task(net)
    model = model.to(device)
    if objective.class_weights is not None:
        objective.class_weights = objective.class_weights.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net_fn = torch.compile(model) if compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
    rgb = rgb.to(device)
    if channels_last:
        rgb = rgb.contiguous(memory_format=torch.channels_last)

    def step(fn=net_fn):
        with autocast(device, precision):
            loss, _, pred = objective(fn, rgb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return pred

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_s = _timed(step, device, steps, warmup)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")

    # The same objective on replayed network outputs: colour work, targets, loss and its
    # backward to the outputs, without the network.
    with autocast(device, precision):
        pred = objective(model, rgb)[2]
    outputs = pred.output if isinstance(pred.output, list) else [pred.output]
    replay = _Replay(outputs)

    def outside():
        with autocast(device, precision):
            loss, _, _ = objective(replay, rgb)
        loss.backward()

    outside_s = _timed(outside, device, max(steps, 3), 1)

    with FlopCounterMode(display=False) as counter:  # the same FLOPs as the compiled step
        step(model)
    flops = counter.get_total_flops()
    syncs = -1  # a compiled step is not watched on the CPU (dynamo under the watch's modes)
    if device.type == "cuda" or not compile:
        syncs = count_syncs(step, device, [rgb, *device_tensors(model, objective)],
                            optimizer_host_tensors(optimizer))
    return StepResult(net, precision, channels_last, compile, step_s * 1e3, batch / step_s,
                      outside_s / step_s, flops / step_s / 1e12, peak, syncs)


def count_syncs(fn, device, on_device=(), host=()):
    """Host-device synchronisations in one call of ``fn``.

    On CUDA, the warnings of PyTorch's sync debug mode; elsewhere what
    :class:`hostsync.HostSyncWatch` finds would synchronise on a GPU (``on_device``: the
    tensors that live on the device; ``host``: those on the host by design).
    """
    if device.type != "cuda":
        with HostSyncWatch(device=on_device, host=host, raise_=False) as watch:
            fn()
        return len(watch.found)
    _sync(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def jpeg_folder(folder, n, side=256):
    """``n`` JPEG files cut from the bundled photos (so decoding is real JPEG work)."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = [Image.fromarray(sample_photo(name)) for name in SAMPLE_PHOTOS]
    for i in range(n):
        img = photos[i % len(photos)]
        x = (i * 37) % max(1, img.width - side)
        img.crop((x, 0, x + side, min(side, img.height))).save(folder / f"{i:04d}.jpg", quality=90)
    return folder


def bench_loader(crop, batch, workers, batches=20, files=128, device=None):
    """Images/s of the data loader alone: JPEG decode, random crop and flip, collation.

    With a CUDA ``device`` the JPEGs are decoded there (``data.decode: gpu``), batches
    arriving on the device; otherwise in the loader's workers, as by default.
    """
    from .jpeg_gpu import gpu_train_loader

    with tempfile.TemporaryDirectory() as tmp:
        dataset = ImageFiles(jpeg_folder(Path(tmp), files), train_transform(crop))
        if device is not None:
            loader = gpu_train_loader(dataset, batch, 0, 0, workers, device)
        else:
            loader = train_loader(dataset, batch, 0, 0, workers)
        batches_iter = iter(loader)
        next(batches_iter)  # worker start-up is not throughput
        if device is not None:
            _sync(device)  # nor the first batch's decoding, still running on the GPU
        t = time.perf_counter()
        for _ in range(batches):
            next(batches_iter)
        if device is not None:
            _sync(device)
        rate = batches * batch / (time.perf_counter() - t)
        del batches_iter, loader  # stop the workers before their files go
        return rate


def _percent(value):
    """One decimal, or two significant digits below 1 (a share of 0.03% is not 0.0%)."""
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def step_table(results, peak=None):
    """Markdown table of :class:`StepResult` rows (and of failed configurations: strings).

    With the device's bf16 ``peak``, bf16 rows also show their share of it and how far the
    step is from the network's FLOP bound (step time / (FLOPs / peak); 1.0x is the bound).
    """
    head = ("| net | precision | channels_last | compile | step ms | images/s | outside network "
            "| TFLOP/s | peak MiB | host syncs |")
    if peak:
        head += " % of bf16 peak | x FLOP bound |"
    columns = head.count("|") - 1
    rows = [head, "|" + "---|" * columns]
    for r in results:
        if isinstance(r, str):  # "net precision ...: what failed"
            rows.append(f"| {r} |" + " |" * (columns - 1))
            continue
        row = (f"| {r.net} | {r.precision} | {'yes' if r.channels_last else 'no'} | "
               f"{'yes' if r.compiled else 'no'} | {r.step_ms:.1f} | {r.images_per_s:.1f} | "
               f"{_percent(100 * r.outside_share)}% | {r.tflops:.3g} | "
               f"{'-' if r.peak_mib != r.peak_mib else f'{r.peak_mib:.0f}'} | "
               f"{'-' if r.syncs < 0 else r.syncs} |")
        if peak:
            row += (f" {100 * r.tflops / peak:.1f}% | {peak / r.tflops:.2f}x |"
                    if r.precision == "bf16" and r.tflops > 0 else " - | - |")
        rows.append(row)
    return "\n".join(rows)
