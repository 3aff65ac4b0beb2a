"""The data order: batches as a pure function of (seed, step), and repeatable augmentation.

A run resumed at step s sees exactly the batches an uninterrupted run sees after step s, on
any number of processes: :class:`StepBatches` draws each epoch's permutation from the seed,
gives every sample a seed of its own, and slices each global batch between ranks;
:class:`SeededSamples` runs a dataset's random augmentation under that sample seed.
"""

import torch
from torch.utils.data import DataLoader, Dataset


class SeededSamples(Dataset):
    """Wraps a dataset so that item ``(index, seed)`` is augmented with RNGs seeded by ``seed``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        return seeded(seed, self.dataset.__getitem__, index)


def seeded(seed, fn, *args):
    """``fn(*args)`` with the RNGs seeded by ``seed`` and restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn(*args)


class StepBatches:
    """Batch sampler yielding the batches of steps ``start, start+1, ...`` (forever).

    Epoch e is a permutation drawn from ``seed + e``; the last incomplete batch is dropped.
    Every yielded item is ``(index, sample_seed)`` with a seed unique to (step, position in the
    global batch). With ``world_size`` processes, rank r yields the r-th contiguous slice of
    each global batch of ``batch_size`` items, so the union over ranks, and every sample's
    augmentation, is the same for any number of processes.
    """

    def __init__(self, n, batch_size, seed=0, start_step=0, rank=0, world_size=1):
        if n < batch_size:
            raise ValueError(f"the dataset has {n} items, fewer than one batch of {batch_size}; "
                             f"lower the batch size or add images")
        if batch_size % world_size:
            raise ValueError(f"the global batch of {batch_size} does not split evenly over "
                             f"{world_size} processes; choose optim.batch_size divisible by "
                             f"{world_size}")
        self.n, self.batch_size, self.seed, self.start_step = n, batch_size, seed, start_step
        self.steps_per_epoch = n // batch_size
        per_rank = batch_size // world_size
        self.slice = slice(rank * per_rank, (rank + 1) * per_rank)

    def __iter__(self):
        step = self.start_step
        while True:
            epoch, pos = divmod(step, self.steps_per_epoch)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))
            for pos in range(pos, self.steps_per_epoch):
                idx = perm[pos * self.batch_size:(pos + 1) * self.batch_size].tolist()
                base = (self.seed * 1_000_003 + step) * self.batch_size
                yield [(i, base + j) for j, i in enumerate(idx)][self.slice]
                step += 1


def train_loader(dataset, batch_size, seed, start_step, workers=0, device=None, rank=0,
                 world_size=1):
    """An endless loader whose batch order depends only on (seed, step).

    ``batch_size`` is the global batch; this process loads its ``rank``-th slice of it.
    """
    sampler = StepBatches(len(dataset), batch_size, seed, start_step, rank, world_size)
    return DataLoader(SeededSamples(dataset), batch_sampler=sampler, num_workers=workers,
                      pin_memory=device is not None and device.type == "cuda",
                      persistent_workers=workers > 0)


def eval_loader(dataset, batch_size, workers=0, max_batches=0, rank=0, world_size=1):
    """Fixed-order loader; samples are seeded by their index, so evaluation is repeatable.

    Args:
        max_batches: evaluate only the first ``max_batches * batch_size`` items (0: all).
        rank, world_size: this process takes every ``world_size``-th item from ``rank`` on,
            in batches of ``batch_size / world_size`` (rounded up); sums over ranks cover the
            same items as one process.
    """
    n = len(dataset)
    if max_batches:
        n = min(n, max_batches * batch_size)
    mine = list(range(rank, n, world_size))
    per = -(-batch_size // world_size)
    batches = [[(i, i) for i in mine[s:s + per]] for s in range(0, len(mine), per)]
    return DataLoader(SeededSamples(dataset), batch_sampler=batches, num_workers=workers)
