"""The Split-Brain paper's comparison at CIFAR-10 scale, as one resumable study.

A study (``configs/study_cifar10.yaml``) lists rows, each a way to pretrain the same
architecture (or none: random init), and budgets (seeds, and keys set in every pretraining
and probe config). For every row and seed it pretrains on the training images (labels
unused), probes the frozen conv1..conv5 with linear classifiers (labels used), and, for rows
that predict ab, scores colour quality against the all-grey prediction. The results go into
one markdown table, a plot and a JSON file.

Splits: the training images lose ``val_per_class`` per class to a validation split; settings
are chosen there (``eval_split="val"``), and the test split is scored with them
(``eval_split="test"``). Pretraining sees the remaining training images; the probes fit on
``probe_per_class`` of those per class.

Every stage leaves a file that says it is complete (a checkpoint at the last step, a probe's
results.json, a colour JSON), so a stopped study continues where it left off; a stage that
fails is recorded and the others go on.

Train and probe run in this process through :func:`splitbrain.lifecycle.train_run` and
:func:`splitbrain.probe.run.probe_run`.
"""

import json
import os
import random
import shutil
import tarfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import checkpoint as ckpt
from . import color
from . import config as config_lib
from .images import find_images
from .metrics import ColorMetrics
from .objectives import update_colour_metrics
from .runtime import resolve_device

from .study_report import (COLOUR_METRICS, LAYERS, format_tables, mean_spread,  # noqa: F401
                           plot, summarise, write_report)
EVAL_SPLITS = ("val", "test")


class StudyError(ValueError):
    """A study that cannot start: a bad study file, data not found, an unknown row."""


# --- the study file -------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    name: str
    label: str
    task: str = None          # None: the architecture ``arch`` with random weights
    config: str = None        # the task's config file
    set: dict = field(default_factory=dict)  # the keys that make this row
    arch: str = None

    @property
    def colorizes(self):
        """Whether the row's network predicts ab from L (colour quality is scored)."""
        if self.task == "colorize":
            return True
        return self.task == "splitbrain" and self.set.get("model.half", "both") in ("both",
                                                                                    "l2ab")


@dataclass(frozen=True)
class Study:
    rows: dict                # name -> Row, in the file's order
    split: dict
    budget: dict              # the chosen budget: seeds, colour_images, train, probe
    budget_name: str
    root: Path                # the folder config paths are relative to


def load_study(path, budget, root=None):
    """Read a study file and pick a budget; every problem is a :class:`StudyError`."""
    path = Path(path)
    try:
        raw = config_lib.load_yaml(path)
    except config_lib.ConfigError as err:
        raise StudyError(str(err)) from None
    for key in ("rows", "split", "budgets"):
        if not isinstance(raw.get(key), dict) or not raw[key]:
            raise StudyError(f"{path}: needs a '{key}' mapping")
    if budget not in raw["budgets"]:
        raise StudyError(f"unknown budget {budget!r}; {path} has {', '.join(raw['budgets'])}")
    chosen = raw["budgets"][budget]
    for key in ("seeds", "colour_images", "train", "probe"):
        if key not in chosen:
            raise StudyError(f"{path}: budget {budget!r} needs '{key}'")
    for key in ("val_per_class", "probe_per_class", "seed"):
        if not isinstance(raw["split"].get(key), int):
            raise StudyError(f"{path}: split.{key} must be a whole number")
    rows = {}
    for name, spec in raw["rows"].items():
        spec = dict(spec or {})
        unknown = set(spec) - {"label", "task", "config", "set", "arch"}
        if unknown:
            raise StudyError(f"{path}: row {name!r} has unknown key(s) {sorted(unknown)}; "
                             f"valid: label, task, config, set, arch")
        row = Row(name, spec.get("label", name), spec.get("task"), spec.get("config"),
                  dict(spec.get("set") or {}), spec.get("arch"))
        if row.task is None and not row.arch:
            raise StudyError(f"{path}: row {name!r} has no task, so it needs 'arch' (the "
                             f"architecture probed with random weights)")
        if row.task is not None and not row.config:
            raise StudyError(f"{path}: row {name!r} needs 'config' (its task's config file)")
        rows[name] = row
    return Study(rows, raw["split"], chosen, budget, Path(root or Path.cwd()))


def select(study, rows=None, seeds=None):
    """The study restricted to some rows (names, in the file's order) and seeds."""
    if rows:
        unknown = [r for r in rows if r not in study.rows]
        if unknown:
            raise StudyError(f"unknown row(s) {unknown}; valid: {', '.join(study.rows)}")
        study = Study({k: v for k, v in study.rows.items() if k in rows}, study.split,
                      study.budget, study.budget_name, study.root)
    if seeds is not None:
        study = Study(study.rows, study.split, dict(study.budget, seeds=list(seeds)),
                      study.budget_name, study.root)
    return study


# --- data and splits ------------------------------------------------------------------------

@dataclass(frozen=True)
class Splits:
    train: Path        # pretraining images (labels unused), ImageFolder layout
    val: Path          # held out from the training images
    probe_val: Path    # ROOT with train/ (the probe's labelled images) and val/ -> val
    probe_test: Path   # ROOT with train/ (the same) and val/ -> the test split
    test: Path

    def probe_root(self, eval_split):
        return self.probe_val if eval_split == "val" else self.probe_test

    def eval_folder(self, eval_split):
        return self.val if eval_split == "val" else self.test


def unpack_data(data, work, download=False, log=print):
    """A folder holding train/ and test/ (ImageFolder layout) for ``data``.

    ``data`` is such a folder, a .tar.gz of one (unpacked into ``work``), or "cifar10"
    (torchvision's copy, written once into ``work`` as PNG files; ``download`` fetches it).
    """
    work = Path(work)
    if data == "cifar10":
        folder = work / "cifar10"
        if not (folder / "done").exists():
            _export_cifar10(folder, work / "torchvision", download, log)
        return folder
    path = Path(data)
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        folder = work / path.name.split(".")[0]
        if not (folder / "done").exists():
            log(f"unpacking {path} into {folder}")
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            with tarfile.open(path) as tar:
                tar.extractall(folder, filter="data")
            (folder / "done").write_text("")
        inner = [p for p in folder.iterdir() if p.is_dir()]
        if not (folder / "train").is_dir() and len(inner) == 1:
            folder = inner[0]  # the archive holds one folder
        path = folder
    if not path.is_dir():
        raise StudyError(f"--data {data}: not found; give a folder with train/ and test/ "
                         f"(ImageFolder layout), a .tar.gz of one, or cifar10")
    for split in ("train", "test"):
        if not (path / split).is_dir():
            raise StudyError(f"--data {data}: {path / split} not found; the folder needs "
                             f"train/ and test/, each with one subfolder of images per class")
    return path


def _export_cifar10(folder, root, download, log):
    from .compat import torchvision

    for split, train in (("train", True), ("test", False)):
        try:
            dataset = torchvision.datasets.CIFAR10(str(root), train=train, download=download)
        except RuntimeError as err:
            raise StudyError(f"CIFAR-10 not found in {root} ({err}); pass --download to fetch "
                             f"it, or give the folder or archive with --data") from None
        log(f"writing CIFAR-10 {split} ({len(dataset)} images) as PNG files under {folder}")
        for i, (image, label) in enumerate(dataset):
            target = folder / split / dataset.classes[label] / f"{i:05d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            image.save(target)
    (folder / "done").write_text("")


def _by_class(folder):
    classes = sorted(p.name for p in Path(folder).iterdir()
                     if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise StudyError(f"{folder} has no class subfolders (ImageFolder layout)")
    return {c: find_images(Path(folder) / c) for c in classes}


def _link_tree(files_by_class, target):
    """``target/<class>/<file>`` as symbolic links to the files (written whole or not at all)."""
    target = Path(target)
    if target.exists():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for cls, files in files_by_class.items():
        (tmp / cls).mkdir(parents=True)
        for f in files:
            os.symlink(Path(f).resolve(), tmp / cls / f.name)
    tmp.rename(target)
    return target


def make_splits(data_root, out, split):
    """Carve the validation and probe splits (symbolic links; the same on every call).

    Args:
        data_root: a folder with train/ and test/ (ImageFolder layout).
        out: where the split folders go.
        split: the study file's ``split`` (``val_per_class``, ``probe_per_class``, ``seed``).
    """
    out = Path(out)
    # The split folders are reused only for the same data and settings.
    settings = json.dumps({"data": str(Path(data_root).resolve()), **split}, sort_keys=True)
    stamp = out / "split.json"
    if out.exists() and not (stamp.exists() and stamp.read_text() == settings):
        shutil.rmtree(out)
    train, test = _by_class(Path(data_root) / "train"), _by_class(Path(data_root) / "test")
    if sorted(train) != sorted(test):
        raise StudyError(f"{data_root}: train/ and test/ have different classes")
    rng = random.Random(split["seed"])
    held, kept, probe = {}, {}, {}
    for cls, files in train.items():
        files = list(files)
        rng.shuffle(files)
        n_val, n_probe = split["val_per_class"], split["probe_per_class"]
        if len(files) < n_val + min(n_probe, 1) + 1:
            raise StudyError(f"class {cls!r} has {len(files)} training images, too few for "
                             f"split.val_per_class={n_val}")
        held[cls], kept[cls] = sorted(files[:n_val]), sorted(files[n_val:])
        probe[cls] = sorted(files[n_val:n_val + n_probe])
    splits = Splits(out / "train", out / "val", out / "probe_val", out / "probe_test",
                    out / "test")
    _link_tree(kept, splits.train)
    _link_tree(held, splits.val)
    _link_tree(test, splits.test)
    for root, evaluated in ((splits.probe_val, held), (splits.probe_test, test)):
        if not root.exists():
            tmp = root.with_name(root.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            _link_tree(probe, tmp / "train")
            _link_tree(evaluated, tmp / "val")
            tmp.rename(root)
    stamp.write_text(settings)
    return splits


# Keys a study may change when it continues a finished or stopped stage: a longer schedule,
# other loader processes; what the processes record about themselves.
MAY_CHANGE = ("optim.iterations", "data.workers", "run.world_size")


def check_same_settings(stored, cfg, where):
    """Raise StudyError when a stage found on disk was made with other settings than ``cfg``."""
    before, now = config_lib.flatten(stored), config_lib.flatten(cfg)
    changed = sorted(k for k in set(before) | set(now)
                     if k not in MAY_CHANGE and before.get(k) != now.get(k))
    if changed:
        shown = "; ".join(f"{k}: {before.get(k)!r} there, {now.get(k)!r} now" for k in changed[:4])
        raise StudyError(f"{where} was made with other settings ({shown}); give the study "
                         f"another --out, or remove {where} to redo it")


# --- the stages of one row and seed ---------------------------------------------------------

def _resolve(study, task, config, changes):
    path = study.root / config if not Path(config).is_absolute() else Path(config)
    cfg = config_lib.resolve(task, path, [])
    return config_lib.apply_overrides(cfg, changes)


def train_config(study, row, seed, splits, run_dir, prior=None, extra=None):
    """The resolved pretraining config of ``row`` for ``seed`` (nothing is run)."""
    changes = {**study.budget["train"], **row.set, **(extra or {}),
               "data.train": str(splits.train), "data.val": str(splits.val),
               "run.out": str(run_dir), "run.seed": seed}
    cfg = _resolve(study, row.task, row.config, changes)
    if prior is not None and "color" in cfg:  # one prior for every row (as for the metrics)
        cfg = config_lib.apply_overrides(cfg, {"color.prior": str(prior)})
    return cfg


def pretrain(study, row, seed, splits, run_dir, prior=None, extra=None, log=print):
    """Pretrain ``row`` with ``seed`` into ``run_dir``; continue a stopped run; skip a done one.

    Returns:
        The :class:`splitbrain.lifecycle.TrainResult`, or None when it was already complete.
    """
    from .lifecycle import train_run

    cfg = train_config(study, row, seed, splits, run_dir, prior, extra)
    latest = Path(run_dir) / "latest.pt"
    resume = latest.exists()
    if resume:
        state = ckpt.load(latest)
        check_same_settings(state["config"], cfg, run_dir)
        step = state["step"]
        if step >= cfg["optim"]["iterations"]:
            return None
        log(f"{row.name} seed {seed}: continuing at step {step}")
    elif Path(run_dir).exists():
        shutil.rmtree(run_dir)  # a start that wrote no checkpoint: begin it again
    return train_run(row.task, cfg, resume=resume,
                     command=f"the same tools/study.py command (it continues {run_dir})")


def probe_config(study, row, seed, splits, eval_split, run_dir, probe_dir, extra=None):
    """The resolved probe config of ``row``'s network for ``seed`` on ``eval_split``."""
    changes = {**study.budget["probe"], **(extra or {}),
               "data.source": str(splits.probe_root(eval_split)), "run.out": str(probe_dir),
               "run.seed": seed}
    if row.task is None:
        changes.update({"encoder.init": "random", "encoder.arch": row.arch})
    else:
        changes.update({"encoder.init": "checkpoint",
                        "encoder.ckpt": str(Path(run_dir) / "latest.pt")})
    cfg = config_lib.resolve("probe", study.root / "configs/probe_alexnet_cifar10.yaml", [])
    return config_lib.apply_overrides(cfg, changes)


def probe(study, row, seed, splits, eval_split, run_dir, probe_dir, extra=None):
    """Linear probes of conv1..conv5; returns {layer: {...}}, read back when already done."""
    from .probe.run import probe_run

    cfg = probe_config(study, row, seed, splits, eval_split, run_dir, probe_dir, extra)
    done = Path(probe_dir) / "results.json"
    if done.exists():
        check_same_settings(config_lib.load_yaml(Path(probe_dir) / "config.yaml"), cfg,
                            probe_dir)
        return json.loads(done.read_text())["layers"]
    shutil.rmtree(probe_dir, ignore_errors=True)  # an interrupted probe: its files are partial
    return probe_run(cfg)["results"]


@torch.no_grad()
def colour_quality(checkpoint, folder, class_weights, limit=None, batch_size=256,
                   device="cpu"):
    """AuC (raw, rebalanced), PSNR and colourfulness of a colorizer and of all-grey.

    Every image of ``folder`` (searched recursively; the first ``limit`` in sorted order) is
    colorized at its own size from its L; the network's ab is upsampled to that size.

    Args:
        checkpoint: a colorize or split-brain checkpoint (its L -> ab half).
        class_weights: (313,) rebalancing weights of the rebalanced AuC: one set for every
            model compared.

    Returns:
        {"model": {metric: value}, "grey": {...}, "images": N}.
    """
    from .colorize import colorizer_from_checkpoint
    from .data import build_dataset
    from .loaders import eval_loader

    state = ckpt.load(checkpoint)
    colorizer = colorizer_from_checkpoint(state, checkpoint)
    colorizer.model.to(device).eval()
    dataset = build_dataset(str(folder), "val", state["config"]["data"]["val_crop"],
                            train=False)
    if limit is not None and limit < len(dataset):
        dataset = torch.utils.data.Subset(dataset, range(limit))
    metrics = {"model": ColorMetrics(), "grey": ColorMetrics()}
    for rgb, _ in eval_loader(dataset, batch_size):
        rgb = rgb.to(device)
        lab = color.rgb_to_lab(rgb)
        colorizer.size = rgb.shape[-1]
        pred_ab = colorizer.predict_small_ab(lab[:, :1])  # (B, 2, h, w)
        update_colour_metrics(metrics, pred_ab.to(device), lab[:, 1:], lab[:, :1],
                              class_weights)
    return {name: {k: v for k, v in m.compute().items() if k in COLOUR_METRICS}
            for name, m in metrics.items()} | {"images": len(dataset)}


# --- the whole study --------------------------------------------------------------------------

@dataclass
class Outcome:
    """What a study run measured and what failed."""

    probes: dict = field(default_factory=dict)    # row -> seed -> {layer: {...}}
    colour: dict = field(default_factory=dict)    # row -> seed -> {"model", "grey", ...}
    failures: list = field(default_factory=list)  # {"row", "seed", "stage", "error"}
    seconds: dict = field(default_factory=dict)   # "row/seed/stage" -> wall seconds
    stopped: object = None                        # the TrainResult of a run a signal stopped


def estimate_study_prior(splits, out, images, log=print):
    """The ab prior of the pretraining images (one for every row), saved as prior.npy."""
    from .data import build_dataset
    from .prior import estimate_prior, load_prior, save_prior

    path = Path(out) / "prior.npy"
    if path.exists():
        return path, load_prior(path)
    train = build_dataset(str(splits.train), "train", 32, train=False)
    prior, hist = estimate_prior(train, images, sigma=5.0)
    log(f"ab prior of the training split: {hist.images} images, "
        f"{int((hist.counts > 0).sum())}/313 bins seen")
    save_prior(prior, path)
    return path, prior


def run_study(study, splits, out, eval_split="test", extra_train=None, extra_probe=None,
              log=print, only_done=False):
    """Every row and seed of ``study``: pretrain, probe, colour; continue what was begun.

    Seed by seed, every row in the file's order. With ``only_done`` nothing is run: the
    stages already complete on disk are read back (for a report of a study still under way).

    Returns:
        An :class:`Outcome`. A stage that raises is recorded in ``failures`` and the row's
        later stages for that seed are skipped; the other rows go on. A training run that a
        signal stopped ends the study (``stopped``), to be continued by running it again.
    """
    if eval_split not in EVAL_SPLITS:
        raise StudyError(f"unknown evaluation split {eval_split!r}; valid: val, test")
    out = Path(out)
    prior_path, prior = estimate_study_prior(splits, out, study.budget.get("prior_images",
                                                                           5000), log)
    class_weights = color.rebalance_weights(prior, 0.5).float()
    outcome = Outcome()
    # Seed by seed, every row: a study stopped part-way has whole tables of the seeds done.
    for seed in study.budget["seeds"]:
        for row in study.rows.values():
            run_dir = out / "runs" / row.name / f"seed{seed}"
            probe_dir = out / f"probes_{eval_split}" / row.name / f"seed{seed}"
            stage = "pretrain"
            if only_done and not (probe_dir / "results.json").exists():
                continue
            try:
                if row.task is not None and not only_done:
                    started = time.time()
                    result = pretrain(study, row, seed, splits, run_dir, prior_path,
                                      extra_train, log)
                    if result is not None:
                        outcome.seconds[f"{row.name}/{seed}/pretrain"] = time.time() - started
                        if result.stopped:
                            outcome.stopped = result
                            return outcome
                stage = "probe"
                started, ran = time.time(), not (probe_dir / "results.json").exists()
                layers = probe(study, row, seed, splits, eval_split, run_dir, probe_dir,
                               extra_probe)
                if ran:  # not read back from an earlier run
                    outcome.seconds[f"{row.name}/{seed}/probe"] = time.time() - started
                outcome.probes.setdefault(row.name, {})[seed] = layers
                colour_json = out / f"colour_{eval_split}" / row.name / f"seed{seed}.json"
                if row.colorizes and not (only_done and not colour_json.exists()):
                    stage = "colour"
                    outcome.colour.setdefault(row.name, {})[seed] = _colour_once(
                        study, run_dir, splits.eval_folder(eval_split), class_weights,
                        colour_json, (extra_train or {}).get("run.device"))
            except Exception as err:  # one failed row must not end the study
                # A RunError (from training or the probe) carries the message a user reads.
                message = getattr(err, "message", None) or f"{type(err).__name__}: {err}"
                log(f"FAILED {row.name} seed {seed} ({stage}): {message}")
                outcome.failures.append({"row": row.name, "seed": seed, "stage": stage,
                                         "error": message,
                                         "traceback": traceback.format_exc(limit=4)})
    return outcome


def _colour_once(study, run_dir, folder, class_weights, path, device=None):
    """The colour scores of a run, on the device its training used (``--train run.device``
    when given, else the budget's)."""
    if path.exists():
        return json.loads(path.read_text())
    if device is None:
        device = study.budget["train"].get("run.device", "cpu")
    device = resolve_device(str(device))
    result = colour_quality(run_dir / "latest.pt", folder, class_weights,
                            limit=study.budget["colour_images"], device=device)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2)))
    return result
