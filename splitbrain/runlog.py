"""What a run leaves for people to read: its text log, fatal errors, TensorBoard image grids."""

import contextlib
import sys
import time

import torch

from . import distributed
from .compat import torchvision
from .runtime import autocast


class RunLog:
    """Print a line and append it, time-stamped, to a text log.

    Created without a path it keeps its lines until :meth:`attach` names the file, so a run
    can log its checks before deciding to create its folder.
    """

    def __init__(self, path=None):
        self.path, self._pending = path, []

    def attach(self, path):
        """Start writing to ``path``, beginning with the lines logged so far."""
        self.path = path
        with open(path, "a") as f:
            f.writelines(line + "\n" for line in self._pending)
        self._pending = []

    def __call__(self, message):
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        print(line, flush=True)
        if self.path is None:
            self._pending.append(line)
            return
        with open(self.path, "a") as f:
            f.write(line + "\n")


def silent(message):
    """The run log of ranks other than 0 in a distributed run: rank 0 speaks for the run."""


class RunError(Exception):
    """A problem the user can fix, raised by a run's library calls instead of exiting.

    A tool reports it with ``fatal(err.message, log=err.log, code=err.code)``; a caller that
    runs many runs in one process (a study) records it and goes on.

    Attributes:
        message: what went wrong and what to do, as :func:`fatal` prints it.
        code: the exit code a tool ends with (2: bad settings or input; the training run's
            others are listed in :mod:`splitbrain.lifecycle`).
        log: the run's log when the message belongs in it (:func:`fatal` writes it there when
            the log has its file), else None.
    """

    def __init__(self, message, code=2, log=None):
        super().__init__(str(message))
        self.message, self.code, self.log = str(message), code, log


def fatal(message, log=None, code=2):
    """Report a problem the user can fix, without a traceback, and exit non-zero.

    Through ``log`` when it is a run log writing to its file; otherwise (no log yet, a rank
    other than 0, whose log is :func:`silent`, or a log whose disk is full) on stderr, naming
    the rank in a distributed run.
    """
    text = f"error: {message}"
    if isinstance(log, RunLog) and log.path is not None:
        with contextlib.suppress(OSError):  # printed before the write: a full disk hides nothing
            log(text)
    else:
        rank = distributed.rank()
        if rank:
            text = f"error (rank {rank}): {message}"
        print(text, file=sys.stderr, flush=True)
    sys.exit(code)


def image_grid(rows):
    """{name: (B, C, H, W)} -> {"images/<names>": (3, H', W')}: one grid, a row per name."""
    names = list(rows)
    images = torch.stack([rows[k].float().cpu().clamp(0, 1) for k in names], 1)  # (B, R, 3, H, W)
    images = images.flatten(0, 1)  # (B * R, 3, H, W): each sample's row of R images
    grid = torchvision.utils.make_grid(images, nrow=len(names), padding=2)
    return {"images/" + "_".join(names): grid}


@torch.no_grad()
def log_images(writer, model, objective, batch, device, precision, step):
    """TensorBoard grids of the objective's visuals on a fixed batch, and predicted-bin histograms.

    Args:
        batch: (B, 3, H, W) sRGB validation images on ``device``.
    """
    was_training = model.training
    model.eval()
    with autocast(device, precision):
        _, _, pred = objective(model, batch)
    model.train(was_training)
    for name, grid in image_grid(objective.visuals(batch, pred)).items():
        writer.add_image(name, grid, step)
    for name, values in objective.histograms(pred).items():
        writer.add_histogram(name, values.flatten().cpu(), step)
