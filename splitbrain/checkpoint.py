"""Checkpoints, the whole round trip: atomic writes, save, load, resume, and model rebuilding.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts::

    {"format": "splitbrain", "version": 3, "task": "colorize",
     "model": {"name": "eccv16", "kwargs": {...}}, "state_dict": {...},
     "color": {"head": "cl", "ab_centres": (313, 2) tensor, "class_weights": (313,) tensor, ...},
     "config": {...}, "step": 1200, "optimizer": {...}, "scheduler": {...}, "metrics": {...}}

so ``torch.load(..., weights_only=True)`` can read it. :func:`load` also accepts version-1
checkpoints (head kinds named "classification" / "regression"), version-2 ones (downsampling
named ``pool: max | maxblur`` rather than the anti-aliasing filter size ``blur``) and the
official ECCV16 release weights, and hands every caller the same current layout; :func:`build_model` turns any of them
into the network they hold.

Every file the project writes (checkpoints, priors, configs, colorized photos) goes through
:func:`atomic_write`, so a crash or a full disk never leaves a half-written file in place.
"""

import copy
import hashlib
import os
import re
import tempfile
from pathlib import Path

import torch

FORMAT = "splitbrain"
VERSION = 3
# Version 1 named the head kinds in full; they are "cl" and "reg" everywhere now.
_OLD_HEAD_NAMES = {"classification": "cl", "regression": "reg"}
# Versions 1 and 2 named the downsampling; version 3 records the anti-aliasing filter size
# ("maxblur" always used the 3-tap binomial filter).
_OLD_POOL_BLUR = {"max": 1, "maxblur": 3}

# The official PyTorch ECCV16 release multiplies the last layer's logits by this factor (the
# annealing folded into the weights) before its softmax; 1 / 2.606 is its temperature.
OFFICIAL_ECCV16_LOGIT_SCALE = 2.606


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or made for something else."""


# --- writing ----------------------------------------------------------------------------------

def atomic_write(path, write):
    """Create or replace ``path`` so that readers see the old file or the new one, never a part.

    Args:
        path: the file to write; its folder is created if needed.
        write: ``write(tmp)`` writes the whole content to the path ``tmp`` (a hidden file in
            the same folder, with the same suffix, so format-by-extension writers work).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:  # on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)  # the rename itself, through a power cut
    finally:
        tmp.unlink(missing_ok=True)


def fsync_folder(folder):
    """Flush a folder's entries (a rename, a new file) to disk, where the platform allows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform whose folders cannot be opened (Windows): nothing to flush
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename still happened
        pass
    finally:
        os.close(fd)


def check_writable_folder(folder, option):
    """Raise OSError unless ``folder`` is, or can be created as, a writable folder.

    Args:
        option: how the user named it (e.g. "run.out" or "-o"), for the message.
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OSError(f"{option} {folder}: {probe} is a file, not a folder; choose another "
                      f"{option}")
    try:  # a real write: permission bits do not tell for root, /proc or read-only mounts
        os.rmdir(tempfile.mkdtemp(prefix=".splitbrain-write-test-", dir=probe))
    except OSError as err:
        raise OSError(f"{option} {folder}: {probe} is not writable ({err.strerror}); choose "
                      f"another {option}") from None


def save(state, path):
    """Write ``state`` (plain data) as a checkpoint at ``path``, atomically, with a checksum."""
    state = {"format": FORMAT, "version": VERSION, **state}
    state["checksum"] = checksum(state)
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def checksum(state):
    """SHA-256 over every value of a checkpoint (tensors by their bytes), the checksum excluded."""
    digest = hashlib.sha256()

    def add(obj):
        if torch.is_tensor(obj):
            t = obj.detach().cpu().contiguous()
            digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(obj, dict):
            digest.update(b"{")
            for key in sorted(obj, key=str):
                if key != "checksum":
                    digest.update(repr(key).encode())
                    add(obj[key])
            digest.update(b"}")
        elif isinstance(obj, (list, tuple)):
            digest.update(b"[")
            for item in obj:
                add(item)
            digest.update(b"]")
        else:
            digest.update(repr(obj).encode())

    add(state)
    return digest.hexdigest()


def keep_history(latest, step, keep):
    """Keep ``latest`` also as ``step_<step>.pt`` and delete all but the newest ``keep`` of those.

    The copy is a hard link where the file system allows it (no extra space: replacing
    ``latest`` later gives it a new file and leaves the link with the old one).
    """
    latest = Path(latest)
    kept = latest.with_name(f"step_{step:09d}.pt")
    kept.unlink(missing_ok=True)
    try:
        os.link(latest, kept)
    except OSError:
        atomic_write(kept, lambda tmp: Path(tmp).write_bytes(latest.read_bytes()))
    for old in sorted(latest.parent.glob("step_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)


def remove_stale_temp_files(folder):
    """Delete temp files that writers killed mid-write left in ``folder``; returns their names.

    A temp file names its writer's process id; files of processes still alive are kept.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp*"):
        match = re.fullmatch(r"\..+\.tmp(\d+)(\.\w+)?", tmp.name)
        if match is None or _alive(int(match.group(1))):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp.name)
    return removed


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != 0


def training_state(task, model, model_spec, config, step, optimizer, scheduler, extra=None,
                   metrics=None):
    """The checkpoint of a training run at ``step``: everything :func:`resume` needs."""
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
    return state


# --- reading ----------------------------------------------------------------------------------

def load(path, task=None, map_location="cpu"):
    """Read a checkpoint safely (no code runs) and bring it to the current layout.

    Args:
        path: a file written by :func:`save`, or the official ECCV16 release weights.
        task: if given, the task the checkpoint must come from (e.g. "colorize").

    Raises:
        CheckpointError: missing, corrupt, not a splitbrain checkpoint, or another task.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes), "
                              f"e.g. from a full disk or a copy that did not finish")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to read means an unusable file
        # torch's message may advise weights_only=False: never do that with a file from
        # elsewhere (it runs code). Keep only the first line of the reason.
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in reason or "Weights only load failed" in reason:
            reason = "not a plain-data checkpoint (truncated, corrupt, or holding code)"
        raise CheckpointError(
            f"cannot read checkpoint {path} ({size} bytes): {reason} [{type(err).__name__}]. It "
            f"is damaged or not a PyTorch checkpoint: give a latest.pt / best.pt written by "
            f"tools/train.py, or the official ECCV16 weights") from None
    if is_official_eccv16(state):
        state = from_official_eccv16(state)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a splitbrain checkpoint (no 'format: {FORMAT}' "
                              f"entry); pass a file written by tools/train.py")
    if "checksum" in state and checksum(state) != state["checksum"]:
        raise CheckpointError(f"{path} is corrupted: its contents do not match the checksum "
                              f"written with it (damaged on disk or in a copy); use an earlier "
                              f"checkpoint or a fresh copy")
    state = _upgrade(state)
    if task is not None and state.get("task") != task:
        made_by = {"colorize": "tools/train.py --task colorize",
                   "splitbrain": "tools/train.py --task splitbrain",
                   "autoencoder": "tools/train.py --task autoencoder",
                   "hints": "tools/train.py --task hints (a model that takes colour hints)"
                   }.get(task, f"a {task} run")
        raise CheckpointError(f"{path} is a checkpoint of task {state.get('task')!r}, "
                              f"but {task!r} is needed here: give one written by {made_by}")
    return state


def _upgrade(state):
    """An older checkpoint in the current layout.

    Version 1 -> 2: head kinds "cl" / "reg". Version 2 -> 3: ``pool: max | maxblur`` becomes
    the anti-aliasing filter size ``blur: 1 | 3``, in the model's arguments and its config.
    """
    version = state.get("version", 1)
    if version >= VERSION:
        return state
    state = dict(state, version=VERSION)
    _upgrade_pool(state)
    if version >= 2:
        return state
    if isinstance(state.get("color"), dict) and "head" in state["color"]:
        head = state["color"]["head"]
        state["color"] = dict(state["color"], head=_OLD_HEAD_NAMES.get(head, head))
    config = state.get("config")
    if isinstance(config, dict) and "loss" in config and isinstance(config.get("model"), dict):
        # The colorize config's top-level `loss: classification` is now `model.head: cl`.
        config = copy.deepcopy(config)
        loss = config.pop("loss")
        config["model"]["head"] = _OLD_HEAD_NAMES.get(loss, loss)
        state["config"] = config
    return state


def _upgrade_pool(state):
    """Replace a recorded ``pool`` choice by the filter size it stood for, in place."""
    spec = state.get("model")
    if isinstance(spec, dict) and isinstance(spec.get("kwargs"), dict) and "pool" in spec["kwargs"]:
        kwargs = dict(spec["kwargs"])
        kwargs["blur"] = _OLD_POOL_BLUR.get(kwargs.pop("pool"), 1)
        state["model"] = dict(spec, kwargs=kwargs)
    config = state.get("config")
    if isinstance(config, dict) and isinstance(config.get("model"), dict) \
            and "pool" in config["model"]:
        config = copy.deepcopy(config)
        config["model"]["blur"] = _OLD_POOL_BLUR.get(config["model"].pop("pool"), 1)
        state["config"] = config


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


def build_model(state, path="checkpoint", weights=True):
    """The network a checkpoint holds: its recorded architecture, with its weights.

    Works for every checkpoint :func:`load` returns: colorize, split-brain (both halves or one
    half trained alone, or halves joined by tools/join_halves.py) and the ECCV16 release.

    Args:
        state: a dict from :func:`load`.
        path: names the checkpoint in error messages.
        weights: False builds the same architecture with fresh (random) weights.

    Raises:
        CheckpointError: no model recorded, an unknown architecture, or weights that do not fit.
    """
    from .models import build_model as build

    spec = state.get("model")
    if not isinstance(spec, dict) or "name" not in spec:
        raise CheckpointError(f"{path} (task {state.get('task')!r}) records no model")
    try:
        model = build(spec["name"], **dict(spec.get("kwargs") or {}))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: cannot build its model {spec['name']!r}: {err}") from None
    if weights:
        load_state_dict(model, state["state_dict"], path)
    return model


def resume(state, model, optimizer, scheduler, path="checkpoint"):
    """Put a run back where its checkpoint left it: weights, optimiser and schedule.

    Returns:
        (step, metrics) stored in the checkpoint.
    """
    load_state_dict(model, state["state_dict"], path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["step"], state.get("metrics", {})


# --- the official ECCV16 release -------------------------------------------------------------

def is_official_eccv16(state):
    """True for the state dict of the official release (``colorization_release_v2``)."""
    return (isinstance(state, dict) and "format" not in state
            and "model1.0.weight" in state and "model_out.weight" in state)


def from_official_eccv16(release):
    """The official release's state dict as a splitbrain colorize checkpoint.

    The release's last layer carries a ×2.606 logit scale; it is divided out here so the
    network returns plain logits, and the stored temperature 1/2.606 reproduces the release's
    own decoding exactly. The bin centres are read from its ``model_out`` 1×1 convolution.
    Releases converted from Caffe have no BatchNorm step counters; zeros are filled in.
    """
    from .color import AB_SCALE

    weights = {k: v / OFFICIAL_ECCV16_LOGIT_SCALE if k.startswith("model8.6.") else v
               for k, v in release.items() if k != "model_out.weight"}
    for k in list(weights):
        if k.endswith(".running_var"):
            counter = k[:-len("running_var")] + "num_batches_tracked"
            weights.setdefault(counter, torch.tensor(0))
    centres = release["model_out.weight"][:, :, 0, 0].t().float() * AB_SCALE  # (313, 2)
    return {"format": FORMAT, "version": VERSION, "task": "colorize",
            "model": {"name": "eccv16", "kwargs": {"l_norm": "unit"}},
            "state_dict": weights,
            "color": {"head": "cl", "ab_centres": centres, "l_norm": "unit",
                      "temperature": 1 / OFFICIAL_ECCV16_LOGIT_SCALE},
            "source": "official ECCV16 release"}
