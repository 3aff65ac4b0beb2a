"""Unreadable files in a long run: why each was skipped, and when to stop.

Datasets of image folders (``data.ImageFiles``, ``data.LabelledFolder``) mark each file they
cannot decode with a reason code in shared memory; :class:`DataHealth` reads those marks as
the run goes, logs them (in total and per epoch) and stops the run past a set share.
"""

import torch

from . import distributed

# Why a file was skipped, as a small code kept in shared memory (0: readable or not tried).
SKIP_REASONS = ("", "not an image", "truncated or corrupt", "empty file", "missing",
                "too large", "other")


def skip_reason(err):
    """The :data:`SKIP_REASONS` entry of an :class:`ImageReadError`."""
    reason = err.reason.lower()
    for code, words in ((3, ("empty file",)), (4, ("file not found", "is a folder")),
                        (5, ("too large", "over the limit")),
                        (1, ("cannot identify", "not an image")),
                        (2, ("truncated", "broken", "corrupt", "decoder", "eof", "error"))):
        if any(w in reason for w in words):
            return SKIP_REASONS[code]
    return SKIP_REASONS[-1]


def reason_counts(marks):
    """{reason: number of files} of a tensor of :data:`SKIP_REASONS` codes (0s left out)."""
    codes = torch.bincount(marks.long(), minlength=len(SKIP_REASONS)).tolist()
    return {SKIP_REASONS[c]: n for c, n in enumerate(codes) if c and n}


class DataHealthError(RuntimeError):
    """Too large a share of a dataset's files is unreadable to go on."""


class DataHealth:
    """Counts a dataset's unreadable files as a run goes, logs them and stops past a limit.

    Args:
        dataset: a dataset that marks its unreadable files (``_unreadable``: folders of images,
            see ``data._SkipUnreadable``); others are always fine.
        max_bad_fraction: the share of unreadable files above which the run stops.
        log: callable taking a line; writer: TensorBoard ``SummaryWriter`` or None.
    """

    def __init__(self, dataset, max_bad_fraction, log=print, writer=None, steps_per_epoch=0):
        self.dataset, self.max_bad_fraction = dataset, max_bad_fraction
        self.log, self.writer = log, writer
        self.total = len(getattr(dataset, "_paths", ()))
        self.reported = 0
        self.steps_per_epoch = steps_per_epoch
        self.epoch, self.at_epoch_start = None, {}
        self._elsewhere = None

    def counts(self):
        """{reason: files}; in a distributed run, over every rank's marks as of the last
        :meth:`__call__` (the same numbers on every rank)."""
        marks = getattr(self.dataset, "_unreadable", None)
        if marks is None:
            return {}
        if self._elsewhere is not None:  # the gathered snapshot alone: loader workers may
            marks = self._elsewhere       # mark more files since, on some ranks only
        return reason_counts(marks)

    def _gather_marks(self):
        """Merge the other ranks' marks (each rank only sees the files it read itself), so that
        every rank counts the same files and stops at the same step. A collective: every rank
        calls it at the same steps."""
        marks = getattr(self.dataset, "_unreadable", None)
        if marks is not None and distributed.world_size() > 1:
            self._elsewhere = distributed.host_max_(marks.clone())

    def summary(self):
        counts = self.counts()
        bad = sum(counts.values())
        detail = ", ".join(f"{reason}: {n}" for reason, n in counts.items())
        return bad, f"{bad} of {self.total} training files unreadable ({detail})"

    def __call__(self, step):
        """Log new skips (and each epoch's); raise DataHealthError past ``max_bad_fraction``.

        In a distributed run every rank calls this at the same steps (it sums over ranks).
        """
        self._gather_marks()
        if self.steps_per_epoch:
            epoch = (step - 1) // self.steps_per_epoch
            counts = self.counts()
            if self.epoch is not None and epoch != self.epoch:
                new = {k: n - self.at_epoch_start.get(k, 0) for k, n in counts.items()}
                new = {k: n for k, n in new.items() if n}
                if new:
                    self.log(f"epoch {self.epoch}: {sum(new.values())} unreadable file(s) found "
                             f"({', '.join(f'{k}: {n}' for k, n in new.items())})")
                self.at_epoch_start = counts
            if self.epoch is None or epoch != self.epoch:
                self.epoch = epoch
        bad, text = self.summary()
        if not bad or bad == self.reported:
            return
        self.reported = bad
        self.log(f"step {step}: {text}")
        if self.writer is not None:
            self.writer.add_scalar("data/unreadable_files", bad, step)
        if bad / self.total > self.max_bad_fraction:
            raise DataHealthError(
                f"{text}: {100 * bad / self.total:.0f}% is above data.max_bad_fraction="
                f"{self.max_bad_fraction}; fix or remove the files (the warnings name each), "
                f"or raise data.max_bad_fraction")
