"""Where and how a run computes: device choice, autocast, and stopping on signals."""

import contextlib
import os
import signal
import sys

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


DEVICES = "auto, cpu, cuda, cuda:N (a GPU index), or another torch device type such as mps"


def resolve_device(name="auto"):
    """"auto" picks CUDA when present, else the CPU.

    Raises:
        ValueError: a name torch does not know (e.g. "gpu"), or a GPU that is not there.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):  # torch's own message lists two dozen backends
        raise ValueError(f"unknown device {name!r}; valid: {DEVICES}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available; "
                         "use device=auto or device=cpu")
    if device.type == "cuda" and device.index is not None and \
            device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA "
                         f"GPU(s), numbered from 0; use device=cuda or device=auto")
    return device


def use_fast_kernels(device):
    """On CUDA, let cuDNN time its convolution algorithms for each new input shape and keep
    the fastest (``torch.backends.cudnn.benchmark``): training crops have one size, so it times
    once. The choice can differ between runs, so on a GPU two runs agree up to float rounding,
    not bit for bit. Photos of every size (colorizing) would time at each new size: not there.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def compile_counts():
    """(graphs compiled, graph breaks) by torch.compile in this process so far."""
    from torch._dynamo.utils import counters
    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def check_precision(precision):
    """Raise ValueError unless ``precision`` is one of ``PRECISIONS``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")


def autocast(device, precision):
    """Autocast context for ``precision`` ("fp32" disables it)."""
    check_precision(precision)
    if PRECISIONS[precision] is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


class StopSignals:
    """SIGINT and SIGTERM ask a long loop to stop after its current step; a second one exits.

    Clusters send SIGTERM before preemption and people press Ctrl-C: either way the loop
    finishes the step it is in, the caller saves a checkpoint and says how to resume. A second
    signal means "now": the process exits at once with the conventional 128 + signal code
    (the last checkpoint written stays intact: writes are atomic).

    Attributes:
        received: the first signal's number, or None.
    """

    CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        for sig in self.CODES:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, sig, frame):
        if self.received is not None:
            print(f"\n{signal.Signals(sig).name} again: exiting at once (checkpoints already "
                  f"written stay whole)", file=sys.stderr, flush=True)
            os._exit(self.CODES[sig])
        self.received = sig
        print(f"\n{signal.Signals(sig).name}: stopping after this step (send it again to exit "
              f"at once)", file=sys.stderr, flush=True)

    @property
    def name(self):
        return signal.Signals(self.received).name if self.received else None

    @property
    def exit_code(self):
        return self.CODES.get(self.received, 0)
