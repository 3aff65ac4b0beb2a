"""The training loop and evaluation, as plain functions over explicit arguments.

The data order comes from the loaders of :mod:`splitbrain.loaders` (a pure function of (seed,
step)); checkpoints from :mod:`splitbrain.checkpoint`; device and precision from
:mod:`splitbrain.runtime`. This module only runs steps, validates and decides when to log.
"""

import contextlib
import time

import torch

from . import distributed
from .data_health import DataHealthError
from .hostsync import HostSyncError, HostSyncWatch, device_tensors, optimizer_host_tensors
from .metrics import accumulation_dtype
from .runlog import log_images
from .runtime import autocast


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf."""


class LoaderDiedError(RuntimeError):
    """A data-loader worker process died (killed for memory, a crash in a decoder).

    Attributes:
        step: the last completed step.
        whole: True when the weights, optimiser and scheduler are those of ``step`` (the news
            came between steps: fetching a batch, validating, logging); False when it came
            while step + 1 was updating them (PyTorch raises it from a signal handler, wherever
            the main process is), so they may be half updated and must not be saved.
        best_loss: the best validation loss so far.
    """

    def __init__(self, step, cause, best_loss=float("inf"), whole=True):
        where = f"after step {step}" if whole else f"during step {step + 1}"
        super().__init__(f"a data loader worker died {where}: {cause}")
        self.step, self.best_loss, self.whole = step, best_loss, whole


# --- evaluation -----------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model, objective, loader, device, precision="fp32"):
    """Mean loss (and logs) over ``loader`` plus the objective's metrics, model in eval mode.

    In a distributed run every rank passes its shard (``loaders.eval_loader(rank=...)``) and gets
    the numbers of all shards together: losses weighted by images and metric counts are summed
    over ranks before dividing.
    """
    model = distributed.unwrap(model)  # no DDP buffer broadcast: ranks may see other counts
    distributed.broadcast_buffers(model)  # one model on every rank: rank 0's (it is saved)
    was_training = model.training
    model.eval()
    totals, count = {}, 0
    total_dtype = accumulation_dtype(device)
    metrics = objective.new_metrics()
    for rgb, _ in loader:
        rgb = rgb.to(device, non_blocking=True)
        with autocast(device, precision):
            _, logs, pred = objective(model, rgb)
        for k, v in logs.items():  # summed on the device, read once at the end
            totals[k] = totals.get(k, 0.0) + v.detach().to(total_dtype) * rgb.shape[0]
        count += rgb.shape[0]
        objective.update_metrics(metrics, rgb, pred)
    model.train(was_training)
    totals = {k: float(v) for k, v in totals.items()}
    if distributed.world_size() > 1:  # a rank with no images in its shard has no keys yet
        totals = {k: totals.get(k, 0.0) for k in distributed.union_of_keys(totals)}
    totals = distributed.sum_floats({**totals, "__count": count})
    count = totals.pop("__count")
    out = {f"val/{k}": v / max(count, 1) for k, v in totals.items()}
    for name, meter in metrics.items():
        meter.reduce(distributed.all_reduce_sum, device)
        out.update({f"val/{name}/{k}": v for k, v in meter.compute().items()})
    return out


# --- training -------------------------------------------------------------------------------

def train_step(model, objective, optimizer, scaler, rgb, device, precision,
               skip_nonfinite=False):
    """One optimisation step, with no host-device synchronisation (bar fp16's loss scaling).

    Args:
        skip_nonfinite: leave the weights alone when the loss is NaN or inf (costs one
            synchronisation per step, to decide before the update).

    Returns:
        logs: dict of detached scalar tensors (the loss averaged over ranks);
        finite: a bool tensor on the device, False when the loss was NaN or inf.
    """
    with autocast(device, precision):
        loss, logs, _ = objective(model, rgb)
    optimizer.zero_grad(set_to_none=True)
    if skip_nonfinite:
        finite = torch.isfinite(loss.detach())
        if distributed.world_size() > 1:  # every rank skips together
            finite = distributed.all_reduce_sum(finite.float()) == distributed.world_size()
        if not bool(finite):
            return logs, torch.zeros((), dtype=torch.bool, device=loss.device)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    if distributed.world_size() > 1:
        # The same number on every rank, so they agree on when to stop.
        logs["loss"] = distributed.all_reduce_sum(logs["loss"].clone()) / distributed.world_size()
    return logs, torch.isfinite(logs["loss"])


class NonFiniteWatch:
    """Remembers, on the device, the first step whose loss was not finite.

    Checking costs one host-device synchronisation, so the loop checks only where it logs,
    validates or saves: a checkpoint is never written after a non-finite step.
    """

    def __init__(self, device):
        self.first = torch.full((), -1, dtype=torch.long, device=device)
        self.value = torch.zeros((), device=device)

    def add(self, step, loss, finite):
        new = (self.first < 0) & ~finite
        self.first = torch.where(new, step, self.first)
        self.value = torch.where(new, loss.detach().float(), self.value)

    def check(self):
        """Raise NonFiniteLossError naming the step and the loss, if one was seen."""
        first = int(self.first)
        if first >= 0:
            raise NonFiniteLossError(f"the loss is {float(self.value)} at step {first}")


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
          device, precision="fp32", channels_last=False, val_loader=None, image_batch=None,
          log_every=20, image_every=0, val_every=0, ckpt_every=0, writer=None, log=print,
          save=None, best_loss=float("inf"), progress=None, sync_debug=False, stop=None,
          data_health=None, skip_nonfinite=False):
    """Optimise from ``start_step`` to ``iterations``, validating, logging and saving on the way.

    Args:
        model: what the step calls (``distributed.wrap``): the network, or the network in
            DistributedDataParallel and/or torch.compile; validation and images use the
            network itself.
        loader: endless training loader positioned at ``start_step`` (``loaders.train_loader``).
        val_loader: validation loader (this rank's shard), or None.
        image_batch: fixed validation images for TensorBoard grids, or None.
        log_every, image_every, val_every, ckpt_every: intervals in steps (0: never); the
            last step logs, draws and validates whatever the intervals say.
        writer: TensorBoard ``SummaryWriter`` or None (ranks other than 0 pass None);
            log: callable taking a line.
        save: ``save(name, step, metrics)`` with name "latest" or "best", or None.
        best_loss: the best validation loss so far (a resumed run's).
        progress: a tqdm bar updated every step, or None.
        sync_debug: make any host-device synchronisation inside a step an error; the checks
            between steps are allowed. On CUDA through ``torch.cuda.set_sync_debug_mode``;
            elsewhere :class:`hostsync.HostSyncWatch` looks for the operations that would
            synchronise on a GPU (raising ``hostsync.HostSyncError``).
        stop: a ``runtime.StopSignals``; once it has received a signal the loop returns after
            the current step (in a distributed run every rank leaves after the next step,
            once all have seen the vote: see ``distributed.StopVote``), and the caller saves;
            ``stop.agreed`` tells whether the loop stopped early (on every rank, signalled
            or not).
        data_health: called with the step at logging steps (``data_health.DataHealth``): logs
            unreadable files and raises ``data_health.DataHealthError`` past its limit, with
            the ``step`` it stopped after (whole: the weights are those of that step) and
            the ``best_loss`` so far added to it.
        skip_nonfinite: skip (and count, as ``train/skipped_steps``) the updates of steps
            whose loss is not finite, instead of stopping the run.

    Returns:
        (step reached, best validation loss).

    Raises:
        NonFiniteLossError: the loss became NaN or inf (the message names the step); no
            checkpoint is written after that step.
        LoaderDiedError: a loader worker process died; its ``whole`` says whether the
            weights are those of its ``step`` (and may be saved).
        DataHealthError: too many unreadable files; the weights are those of its ``step``.
    """
    step = start_step
    meter = Throughput()
    watch = NonFiniteWatch(device)
    skipped = 0
    world = distributed.world_size()
    net = distributed.unwrap(model)  # for images: a forward on one rank must not broadcast
    model.train()
    # Without CUDA's own mode, the watch follows what is computed from these device tensors.
    watched = device_tensors(model, objective) if sync_debug and device.type != "cuda" else []
    debug_from = start_step + settling_steps(device)
    vote = distributed.StopVote()
    if stop is not None:
        stop.agreed = False

    def due(every):
        return step == iterations or (every and step % every == 0)

    batches = iter(loader)
    whole = True  # the weights, optimiser and step agree
    try:
        while step < iterations:
            try:
                rgb, _ = next(batches, (None, None))
            except (ConnectionError, EOFError) as err:
                # A worker killed mid-transfer can break its pipe before PyTorch's own
                # "DataLoader worker ... is killed" error arrives: the same death, between steps.
                stop_workers(batches, val_loader)
                raise LoaderDiedError(step, f"{type(err).__name__} from the loader's worker "
                                            f"pipe ({err})", best_loss, True) from err
            if rgb is None:  # a finite loader ran out (the training loaders are endless)
                break
            rgb = rgb.to(device, non_blocking=True)
            if channels_last:
                rgb = rgb.contiguous(memory_format=torch.channels_last)
            whole = False  # from here until step counts it, the update is under way
            with _sync_debug(sync_debug and step >= debug_from, device, optimizer,
                             [rgb, *watched]):
                logs, finite = train_step(model, objective, optimizer, scaler, rgb, device,
                                          precision, skip_nonfinite)
                scheduler.step()
                step += 1
                whole = True
                if skip_nonfinite:
                    skipped += int(not finite)  # skip mode synchronises every step anyway
                else:
                    watch.add(step, logs["loss"], finite)
            meter.add(rgb.shape[0] * world)
            if progress is not None:
                progress.update(1)

            if due(log_every):
                watch.check()
                if data_health is not None:
                    data_health(step)
                scalars = {f"train/{k}": float(v) for k, v in logs.items()}
                scalars["train/lr"] = scheduler.get_last_lr()[0]
                scalars["train/images_per_s"] = meter.rate()
                if skip_nonfinite:
                    scalars["train/skipped_steps"] = skipped
                _write_scalars(writer, scalars, step)
                if progress is not None:
                    progress.set_postfix(loss=f"{scalars['train/loss']:.3f}",
                                         img_s=f"{scalars['train/images_per_s']:.0f}")
                if progress is None or progress.disable:
                    log(f"step {step}/{iterations} " +
                        " ".join(f"{k.split('/')[1]}={v:.4g}" for k, v in scalars.items()))
            if image_batch is not None and writer is not None and due(image_every):
                log_images(writer, net, objective, image_batch.to(device), device, precision, step)
            if val_loader is not None and due(val_every):
                watch.check()
                metrics = evaluate(model, objective, val_loader, device, precision)
                _write_scalars(writer, metrics, step)
                log(f"step {step} validation: " +
                    " ".join(f"{k[4:]}={v:.4g}" for k, v in sorted(metrics.items())))
                if metrics["val/loss"] < best_loss:
                    best_loss = metrics["val/loss"]
                    if save is not None:
                        save("best", step, {"best_val_loss": best_loss, **metrics})
            if ckpt_every and step % ckpt_every == 0:
                watch.check()  # on every rank, so all stop together
                if save is not None:
                    save("latest", step, {"best_val_loss": best_loss})
            if stop is not None and vote(stop.received is not None):
                stop.agreed = True
                break
    except DataHealthError as err:  # raised at a logging step, after the update: a whole step
        err.step, err.best_loss = step, best_loss
        raise
    except RuntimeError as err:  # DataLoader's error for a worker that died
        if "DataLoader worker" not in str(err):
            raise
        stop_workers(batches, val_loader)
        raise LoaderDiedError(step, str(err).strip().splitlines()[0].rstrip("."),
                              best_loss, whole) from err
    vote.finish()
    watch.check()
    return step, best_loss


def stop_workers(*loaders):
    """End the worker processes of ``loaders`` (iterators or DataLoaders; others are let be)
    after one of their workers died, before anything else runs.

    Until a loader's workers are shut down, PyTorch's SIGCHLD handler watches their pids and
    raises "DataLoader worker ... is killed" at the next SIGCHLD, wherever the main process is
    then. When the dead worker's broken pipe is met first, that comes later: in the save of the
    last whole step, say, which it would break. The handler may also fire during this call:
    PyTorch forgets that loader's pids as it raises, so the error is the death already being
    handled, and the workers left are ended at exit.
    """
    for loader in loaders:
        it = getattr(loader, "_iterator", loader)  # persistent workers live in the loader
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is None:
            continue
        try:
            shutdown()
        except RuntimeError as err:
            if "DataLoader worker" not in str(err):
                raise
        if getattr(loader, "_iterator", None) is it:
            loader._iterator = None  # a later iter() starts new workers


@torch.no_grad()
def nonfinite_outputs(model, objective, batch):
    """What is not finite in ``model``'s work on ``batch``, in words; None when all is.

    A diverged run can keep finite weights (up to 1e6, say) that no longer give finite
    outputs. Before a save the network runs once on a fixed small batch (the validation images
    of the TensorBoard grids) as the tools run it: eval mode, float32, its outputs decoded to
    images by the objective. Costs a forward pass and one host-device synchronisation: for save
    time, never inside a step. Draws no random numbers (an objective in eval mode corrupts its
    input, if at all, from its own fixed generator).

    Args:
        model: the network itself (not DistributedDataParallel: one rank calls this).
        batch: (B, 3, H, W) sRGB images on the model's device.
    """
    was_training = model.training
    model.eval()
    try:
        _, _, pred = objective(model, batch)
        outputs = pred.output if isinstance(pred.output, (list, tuple)) else [pred.output]
        visuals = objective.visuals(batch, pred)
    finally:
        model.train(was_training)
    checks = [("network output", t) for t in outputs]
    checks += [(f"decoded image {name!r}", t) for name, t in visuals.items()]
    finite = torch.stack([torch.isfinite(t).all() for _, t in checks]).tolist()  # one sync
    bad = [what for (what, _), ok in zip(checks, finite) if not ok]
    if not bad:
        return None
    return f"{' and '.join(bad)} not finite on {len(batch)} validation image(s)"


def settling_steps(device):
    """First steps that CUDA's sync debug mode leaves out, for their one-time work: in the
    first, cuDNN times its convolution kernels (``runtime.use_fast_kernels``) and torch.compile
    compiles; DistributedDataParallel settles its gradient buckets in the second step's forward,
    with a copy to the host. The mode starts once the step is the steady one."""
    if device.type != "cuda":
        return 0
    return 2 if distributed.world_size() > 1 else 1


@contextlib.contextmanager
def _sync_debug(enabled, device, optimizer, on_device):
    if not enabled:
        yield
    elif device.type != "cuda":
        with HostSyncWatch(device=on_device, host=optimizer_host_tensors(optimizer)):
            yield
    else:
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        except RuntimeError as err:
            if "synchronizing" not in str(err):
                raise
            raise HostSyncError(f"{err} inside the training step (CUDA's sync debug mode; the "
                                "traceback above names the line)") from err
        finally:
            torch.cuda.set_sync_debug_mode("default")


def _write_scalars(writer, scalars, step):
    if writer is not None:
        for k, v in scalars.items():
            writer.add_scalar(k, v, step)
