"""Many processes, one run: torchrun's environment, DistributedDataParallel and the collectives.

``torchrun --nproc_per_node=N tools/train.py ...`` (or multi-node with torchrun's rendezvous
options) starts N copies of a script; each reads its rank from the environment torchrun sets.
Without torchrun every function here works as for a single process, so the same code runs both
ways. The rules a distributed run follows:

- every rank takes its slice of the same global batch (``loaders.StepBatches``), so the data
  order depends only on (seed, step), never on the number of processes;
- rank 0 alone writes files (logs, TensorBoard, checkpoints) and estimates the ab prior,
  which it broadcasts;
- validation sums counts across ranks (losses weighted by images, AuC histograms), so the
  metrics equal those of one process over the same images.
"""

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .runtime import resolve_device


@dataclass
class Context:
    """Where this process stands: its rank among ``world_size`` and the device it drives."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1


def launched_by_torchrun():
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device="auto", timeout_minutes=30):
    """Join the process group torchrun describes (or none), and pick this rank's device.

    CUDA ranks use NCCL and the GPU ``LOCAL_RANK``; CPU ranks use gloo.

    Args:
        device: "auto", "cpu", "cuda" (a CUDA index is replaced by the local rank).
        timeout_minutes: how long a collective may wait for a missing rank before failing.
    """
    device = resolve_device(device)
    if not launched_by_torchrun():
        return Context(device=device)
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    return Context(dist.get_rank(), dist.get_world_size(), local_rank, device)


def close():
    """Leave the process group, after every rank has arrived (rank 0 may still be saving)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _active():
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier():
    if _active():
        dist.barrier()


def from_main(fn):
    """Run ``fn()`` on rank 0 only and return its result (any picklable value) on every rank."""
    if not _active():
        return fn()
    box = [fn() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(tensor):
    """Sum ``tensor`` over ranks in place (the backend's device: CPU for gloo, CUDA for NCCL)."""
    if _active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def sum_floats(values):
    """{name: float} summed over ranks, in float64."""
    if not _active() or not values:
        return dict(values)
    keys = sorted(values)
    device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    all_reduce_sum(t)
    return dict(zip(keys, t.tolist()))


def wrap(model, ctx, sync_bn=False):
    """``model`` in DistributedDataParallel when the run has several processes.

    Args:
        sync_bn: normalise BatchNorm over the global batch (CUDA only: PyTorch's SyncBatchNorm
            has no CPU kernel). Without it each rank normalises over its own slice.
    """
    if not ctx.distributed:
        return model
    if sync_bn:
        if ctx.device.type != "cuda":
            raise ValueError("run.sync_bn needs CUDA (PyTorch's SyncBatchNorm has no CPU "
                             "kernel); set run.sync_bn=false for CPU runs")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model):
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def world_size():
    """Processes in the run (1 without torchrun)."""
    return dist.get_world_size() if _active() else 1


def rank():
    return dist.get_rank() if _active() else 0


def average_(tensors):
    """Replace each tensor by its mean over ranks, in place (gradients, BatchNorm statistics)."""
    if not _active():
        return
    world = dist.get_world_size()
    for t in tensors:
        if t is not None:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t.div_(world)
