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
import socket
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
    global _HOST_GROUP, _PATIENT_GROUP
    _HOST_GROUP = (dist.new_group(backend="gloo", timeout=datetime.timedelta(
        minutes=timeout_minutes)) if dist.get_backend() != "gloo" else None)
    # For waiting on one process's long work (a dataset download): hours, not minutes.
    _PATIENT_GROUP = dist.new_group(backend="gloo", timeout=datetime.timedelta(hours=12))
    return Context(dist.get_rank(), dist.get_world_size(), local_rank, device)


# Collectives of host values (stop votes, unreadable-file marks) go through gloo, so that they
# never touch the GPU's stream: the default group under gloo, a gloo side group under NCCL.
_HOST_GROUP = None
_PATIENT_GROUP = None


def close():
    """Leave the process group, after every rank has arrived (rank 0 may still be saving)."""
    global _HOST_GROUP, _PATIENT_GROUP
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    _HOST_GROUP = _PATIENT_GROUP = None


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


def in_turns(fn):
    """``fn()`` on every rank, first on rank 0, then on each other node's local rank 0, then
    on the rest, with barriers between: for work that fills a cache the next can reuse (a
    dataset download), whether the cache is shared by all nodes or each node has its own."""
    if not _active():
        return fn()
    first, local_first = dist.get_rank() == 0, int(os.environ.get("LOCAL_RANK", "0")) == 0
    out = fn() if first else None
    dist.barrier(group=_PATIENT_GROUP)  # a download may take longer than the usual timeout
    if local_first and not first:
        out = fn()
    dist.barrier(group=_PATIENT_GROUP)
    return fn() if not local_first else out


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


def union_of_keys(mapping):
    """The sorted union of ``mapping``'s keys over ranks (host objects, through gloo)."""
    if not _active():
        return sorted(mapping)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, sorted(mapping), group=_HOST_GROUP)
    return sorted(set().union(*gathered))


def check_same(value, what, fix):
    """Raise ValueError unless every process holds an equal ``value``, naming each distinct
    value with the ranks and hosts that hold it; ``fix`` ends the message.

    For what each rank reads for itself and the run assumes is one thing: its dataset
    (``data.fingerprint``), the checkpoint it resumes from. If one node's copy of the data is
    incomplete, the ranks index different images with the same (seed, step); if one node reads
    an older ``latest.pt``, the ranks resume at different steps. Both would go on silently.
    """
    if not _active():
        return
    gathered = [None] * world_size()
    try:
        dist.all_gather_object(gathered, (socket.gethostname(), value), group=_HOST_GROUP)
    except RuntimeError as err:  # a peer left (its own error ended it) before comparing
        raise ValueError(f"{what}: another process stopped before the processes could compare "
                         f"it ({str(err).splitlines()[0][:200]}); its error says why") from None
    groups = {}  # each distinct value: the ranks (and their hosts) that hold it
    for rank_, (host, v) in enumerate(gathered):
        groups.setdefault(repr(v), (v, []))[1].append((rank_, host))
    if len(groups) == 1:
        return

    def who(members):
        ranks, hosts = [r for r, _ in members], sorted({h for _, h in members})
        named = (f"rank {ranks[0]}" if len(ranks) == 1 else
                 f"ranks {', '.join(map(str, ranks))}" if len(ranks) <= 4 else
                 f"{len(ranks)} ranks ({ranks[0]}, {ranks[1]}, ...)")
        on = ", ".join(hosts[:3]) + (f" and {len(hosts) - 3} more hosts" if len(hosts) > 3 else "")
        return f"{named} on {on}"

    def show(v):
        return ", ".join(f"{k} {x}" for k, x in v.items()) if isinstance(v, dict) else str(v)
    # Rank 0's value first; every distinct value once, with who holds it (a bad node's 8 ranks
    # are one entry, whether or not rank 0 is among them).
    seen = "; ".join(f"{who(members)}: {show(v)}" for v, members in groups.values())
    raise ValueError(f"{what}: the processes differ. {seen[0].upper()}{seen[1:]}. {fix}")


def wrap(model, ctx, sync_bn=False, compile=False):
    """What the training step calls: ``model`` in DistributedDataParallel when the run has
    several processes, and compiled by ``torch.compile`` when asked.

    Args:
        sync_bn: normalise BatchNorm over the global batch (CUDA only: PyTorch's SyncBatchNorm
            has no CPU kernel). Without it each rank normalises over its own slice.
        compile: compile the (wrapped) network; torch.compile splits a DDP network's graph at
            its gradient buckets, so their all-reduce still overlaps the backward.
            :func:`unwrap` gives ``model`` back.
    """
    if ctx.distributed:
        model = _ddp(model, ctx, sync_bn)
    return torch.compile(model) if compile else model


def _ddp(model, ctx, sync_bn):
    if sync_bn:
        if ctx.device.type != "cuda":
            raise ValueError("run.sync_bn needs CUDA (PyTorch's SyncBatchNorm has no CPU "
                             "kernel); set run.sync_bn=false for CPU runs")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model):
    """The network inside :func:`wrap`'s wrappers (torch.compile, DistributedDataParallel)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's OptimizedModule
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


def host_max_(tensor):
    """Replace a CPU tensor by its element-wise maximum over ranks, in place (through gloo)."""
    if _active():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=_HOST_GROUP)
    return tensor


def broadcast_buffers(model):
    """Give every rank rank 0's buffers (BatchNorm running statistics), in place.

    DistributedDataParallel broadcasts them at the start of each forward, so after the last
    step each rank holds statistics updated by its own slice; validation and checkpoints must
    use one model, rank 0's.
    """
    if _active():
        for b in model.buffers():
            dist.broadcast(b, src=0)


class StopVote:
    """Agree, every step and without waiting on the network, whether any rank wants to stop.

    Each step a rank casts its vote (did it receive a stop signal?) in an asynchronous
    all-reduce over gloo, and reads the previous step's result, which has long arrived: every
    rank sees the same result after the same step, so all leave the loop together, one step
    after the first signal anywhere. torchrun forwards a signal to its own node's workers only
    and kills them 30 s later; waiting for a logging step could take longer than that.
    """

    def __init__(self):
        self._pending = None
        self._box = None

    def __call__(self, want_stop):
        """Cast this step's vote; return whether the previous step's votes say stop."""
        if not _active():
            return bool(want_stop)
        agreed = False
        if self._pending is not None:
            self._pending.wait()
            agreed = self._box.item() > 0
        self._box = torch.tensor([1.0 if want_stop else 0.0])
        self._pending = dist.all_reduce(self._box, op=dist.ReduceOp.SUM, group=_HOST_GROUP,
                                        async_op=True)
        return agreed

    def finish(self):
        """Wait for the vote in flight (every rank casts the same number of votes)."""
        if self._pending is not None:
            self._pending.wait()
            self._pending = None
