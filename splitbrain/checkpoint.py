"""Checkpoints as plain data, written atomically and read without unpickling code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts::

    {"format": "splitbrain", "version": 1, "task": "colorize",
     "model": {"name": "eccv16", "kwargs": {...}}, "state_dict": {...},
     "color": {"ab_centres": (313, 2) tensor, "class_weights": (313,) tensor, ...},
     "config": {...}, "step": 1200, "optimizer": {...}, "scheduler": {...}, "metrics": {...}}

so ``torch.load(..., weights_only=True)`` can read it.
"""

import os
from pathlib import Path

import torch

FORMAT = "splitbrain"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or made for something else."""


def save(state, path):
    """Write ``state`` to ``path`` atomically: a crash mid-write never leaves a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(path, task=None, map_location="cpu"):
    """Read a splitbrain checkpoint safely.

    Args:
        path: file written by :func:`save`.
        task: if given, the task the checkpoint must come from (e.g. "colorize").

    Raises:
        CheckpointError: missing, corrupt, not a splitbrain checkpoint, or another task.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to read means an unusable file
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a splitbrain checkpoint (no 'format: {FORMAT}' "
                              f"entry); pass a file written by tools/train.py")
    if task is not None and state.get("task") != task:
        raise CheckpointError(f"{path} is a checkpoint of task {state.get('task')!r}, "
                              f"but {task!r} is needed")
    return state


def load_state_dict(model, state_dict, path="checkpoint"):
    """Load weights, turning key or shape mismatches into one clear error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[0]}: "
                         f"{tuple(state_dict[shapes[0]].shape)} vs {tuple(own[shapes[0]].shape)})")
        raise CheckpointError(f"{path} does not fit {type(model).__name__}: "
                              + "; ".join(parts) + ". Was it trained with another architecture?")
    model.load_state_dict(state_dict)
