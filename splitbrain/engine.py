"""The training loop and evaluation, as plain functions over explicit arguments.

The data order comes from the loaders of :mod:`splitbrain.data` (a pure function of (seed,
step)); checkpoints from :mod:`splitbrain.checkpoint`; device and precision from
:mod:`splitbrain.runtime`. This module only runs steps, validates and decides when to log.
"""

import math
import time

import torch

from .runlog import log_images
from .runtime import autocast


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf."""


# --- evaluation -----------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model, objective, loader, device, precision="fp32", max_batches=0):
    """Mean loss (and logs) over ``loader`` plus the objective's metrics, model in eval mode.

    Args:
        max_batches: stop after this many batches (0: the whole loader).
    """
    was_training = model.training
    model.eval()
    totals, count = {}, 0
    metrics = objective.new_metrics()
    for i, (rgb, _) in enumerate(loader):
        if max_batches and i >= max_batches:
            break
        rgb = rgb.to(device, non_blocking=True)
        with autocast(device, precision):
            _, logs, pred = objective(model, rgb)
        for k, v in logs.items():
            totals[k] = totals.get(k, 0.0) + float(v) * rgb.shape[0]
        count += rgb.shape[0]
        objective.update_metrics(metrics, rgb, pred)
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


def train(model, objective, optimizer, scheduler, scaler, loader, *, start_step, iterations,
          device, precision="fp32", channels_last=False, val_loader=None, val_batches=0,
          image_batch=None, log_every=20, image_every=0, val_every=0, ckpt_every=0,
          writer=None, log=print, save=None, best_loss=float("inf"), progress=None):
    """Optimise from ``start_step`` to ``iterations``, validating, logging and saving on the way.

    Args:
        loader: endless training loader positioned at ``start_step`` (``data.train_loader``).
        val_loader: validation loader; ``val_batches`` caps it (0: all of it).
        image_batch: fixed validation images for TensorBoard grids, or None.
        log_every, image_every, val_every, ckpt_every: intervals in steps (0: never); the
            last step logs, draws and validates whatever the intervals say.
        writer: TensorBoard ``SummaryWriter`` or None; log: callable taking a line.
        save: ``save(name, step, metrics)`` with name "latest" or "best".
        best_loss: the best validation loss so far (a resumed run's).
        progress: a tqdm bar updated every step, or None.

    Returns:
        (step reached, best validation loss).

    Raises:
        NonFiniteLossError: the loss became NaN or inf (the message names the step).
    """
    step = start_step
    meter = Throughput()
    model.train()

    def due(every):
        return step == iterations or (every and step % every == 0)

    for rgb, _ in loader:
        if step >= iterations:
            break
        rgb = rgb.to(device, non_blocking=True)
        if channels_last:
            rgb = rgb.contiguous(memory_format=torch.channels_last)
        try:
            logs = train_step(model, objective, optimizer, scaler, rgb, device, precision)
        except NonFiniteLossError as err:
            raise NonFiniteLossError(f"{err} at step {step + 1}") from None
        scheduler.step()
        step += 1
        meter.add(rgb.shape[0])
        if progress is not None:
            progress.update(1)

        if due(log_every):
            scalars = {f"train/{k}": float(v) for k, v in logs.items()}
            scalars["train/lr"] = scheduler.get_last_lr()[0]
            scalars["train/images_per_s"] = meter.rate()
            _write_scalars(writer, scalars, step)
            if progress is not None:
                progress.set_postfix(loss=f"{scalars['train/loss']:.3f}",
                                     img_s=f"{scalars['train/images_per_s']:.0f}")
            if progress is None or progress.disable:
                log(f"step {step}/{iterations} " +
                    " ".join(f"{k.split('/')[1]}={v:.4g}" for k, v in scalars.items()))
        if image_batch is not None and writer is not None and due(image_every):
            log_images(writer, model, objective, image_batch.to(device), device, precision, step)
        if val_loader is not None and due(val_every):
            metrics = evaluate(model, objective, val_loader, device, precision, val_batches)
            _write_scalars(writer, metrics, step)
            log(f"step {step} validation: " +
                " ".join(f"{k[4:]}={v:.4g}" for k, v in sorted(metrics.items())))
            if metrics["val/loss"] < best_loss:
                best_loss = metrics["val/loss"]
                if save is not None:
                    save("best", step, {"best_val_loss": best_loss, **metrics})
        if save is not None and ckpt_every and step % ckpt_every == 0:
            save("latest", step, {"best_val_loss": best_loss})
    return step, best_loss


def _write_scalars(writer, scalars, step):
    if writer is not None:
        for k, v in scalars.items():
            writer.add_scalar(k, v, step)
