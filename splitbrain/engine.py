"""The training loop and evaluation, as plain functions over explicit arguments.

Data order is a pure function of (seed, step): each step's batch indices come from a seeded
permutation of the dataset, and every sample's augmentation is seeded by its own number. A run
resumed at step s therefore sees exactly the batches an uninterrupted run sees after step s.
"""

import contextlib
import math
import time

import torch
from torch.utils.data import DataLoader, Dataset

from . import checkpoint as ckpt


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf."""


# --- device and precision -------------------------------------------------------------------

def resolve_device(name="auto"):
    """"auto" picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available; "
                         "use device=auto or device=cpu")
    return device


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, precision):
    """Autocast context for ``precision`` ("fp32" disables it)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if PRECISIONS[precision] is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


# --- resumable, deterministic data order ----------------------------------------------------

class SeededSamples(Dataset):
    """Wraps a dataset so that item ``(index, seed)`` is augmented with RNGs seeded by ``seed``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class StepBatches:
    """Batch sampler yielding the batches of steps ``start, start+1, ...`` (forever).

    Epoch e is a permutation drawn from ``seed + e``; the last incomplete batch is dropped.
    Every yielded item is ``(index, sample_seed)`` with a seed unique to (step, position).
    """

    def __init__(self, n, batch_size, seed=0, start_step=0):
        if n < batch_size:
            raise ValueError(f"the dataset has {n} items, fewer than one batch of {batch_size}; "
                             f"lower the batch size or add images")
        self.n, self.batch_size, self.seed, self.start_step = n, batch_size, seed, start_step
        self.steps_per_epoch = n // batch_size

    def __iter__(self):
        step = self.start_step
        while True:
            epoch, pos = divmod(step, self.steps_per_epoch)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))
            for pos in range(pos, self.steps_per_epoch):
                idx = perm[pos * self.batch_size:(pos + 1) * self.batch_size].tolist()
                base = (self.seed * 1_000_003 + step) * self.batch_size
                yield [(i, base + j) for j, i in enumerate(idx)]
                step += 1


def train_loader(dataset, batch_size, seed, start_step, workers=0, device=None):
    """An endless loader whose batch order depends only on (seed, step)."""
    return DataLoader(SeededSamples(dataset), batch_sampler=StepBatches(len(dataset), batch_size,
                                                                        seed, start_step),
                      num_workers=workers, pin_memory=device is not None and device.type == "cuda",
                      persistent_workers=workers > 0)


def eval_loader(dataset, batch_size, workers=0):
    """Fixed-order loader; samples are seeded by their index, so evaluation is repeatable."""
    n = len(dataset)
    batches = [[(i, i) for i in range(s, min(s + batch_size, n))] for s in range(0, n, batch_size)]
    return DataLoader(SeededSamples(dataset), batch_sampler=batches, num_workers=workers)


# --- evaluation -----------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model, objective, loader, device, precision="fp32", temperature=0.38):
    """Mean loss (and logs) over ``loader`` plus the objective's metrics, model in eval mode."""
    was_training = model.training
    model.eval()
    totals, count = {}, 0
    metrics = objective.new_metrics()
    for rgb, _ in loader:
        rgb = rgb.to(device, non_blocking=True)
        with autocast(device, precision):
            _, logs, output = objective(model, rgb)
        for k, v in logs.items():
            totals[k] = totals.get(k, 0.0) + float(v) * rgb.shape[0]
        count += rgb.shape[0]
        objective.update_metrics(metrics, rgb, output, temperature)
    model.train(was_training)
    out = {f"val/{k}": v / max(count, 1) for k, v in totals.items()}
    for name, meter in metrics.items():
        out.update({f"val/{name}/{k}": v for k, v in meter.compute().items()})
    return out


# --- training -------------------------------------------------------------------------------

def train_step(model, objective, optimizer, scaler, rgb, device, precision):
    """One optimisation step. Returns the logs; raises NonFiniteLossError on NaN/inf loss."""
    with autocast(device, precision):
        loss, logs, _ = objective(model, rgb)
    if not math.isfinite(loss.item()):
        raise NonFiniteLossError(f"the loss is {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return logs


class Throughput:
    """Images per second over the last logging window."""

    def __init__(self):
        self.t, self.n = time.perf_counter(), 0

    def add(self, n):
        self.n += n

    def rate(self):
        now = time.perf_counter()
        rate = self.n / max(now - self.t, 1e-9)
        self.t, self.n = now, 0
        return rate


def save_checkpoint(path, model, model_spec, task, config, step, optimizer, scheduler,
                    extra=None, metrics=None):
    """Write a resumable checkpoint of plain data (see splitbrain.checkpoint)."""
    state = {
        "task": task,
        "model": model_spec,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config,
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "metrics": metrics or {},
    }
    state.update(extra or {})
    ckpt.save(state, path)
