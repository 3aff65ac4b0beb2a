"""A training run's life cycle as library calls: config, checks, resume, data, train, save.

:func:`train_run` is ``tools/train.py`` without its command line, so that a study can run one
training run after another in one process. A problem the user can fix raises
:class:`RunError` (never ``sys.exit``); its ``code`` is the exit code the tool ends with:

====  ===========================================================================================
2     bad settings or input: the config, the data, the checkpoint to resume, the run folder
3     the loss or the weights are not finite, or the weights give non-finite outputs (every
      save checks; the message names the last good checkpoint, or says none was saved)
4     too large a share of the data files is unreadable (``data.max_bad_fraction``); the step
      reached is saved first
5     ``run.sync_debug`` found a host-device synchronisation inside a step
6     writing to the run folder failed (a full disk): the last whole checkpoint stays
7     ``run.compile``: torch.compile could not compile the network
8     a data loader worker died (killed for memory, a decoder crash)
====  ===========================================================================================

A stop signal (SIGINT, SIGTERM) is no error: the run saves its step and returns a
:class:`TrainResult` that says ``stopped``, with 130 or 143 for a tool to exit with.

The settings and the data are checked before any file is written. Under torchrun every
process calls :func:`train_run`; rank 0 alone writes (logs, TensorBoard, checkpoints).
"""

import collections
import contextlib
import copy
import shlex
import signal
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from . import checkpoint as ckpt
from . import config as config_lib
from . import distributed, engine, tasks
from .cli import tool_command
from .data import SAME_FILES, build_dataset, fingerprint
from .data_health import DataHealth, DataHealthError
from .hostsync import HostSyncError
from .jpeg_gpu import choose_decode, gpu_train_loader
from .loaders import eval_loader, train_loader
from .runlog import RunError, RunLog, silent
from .runtime import StopSignals, compile_counts, use_fast_kernels

__all__ = ["RunError", "TrainResult", "train_run", "apply_optim_changes"]


@dataclass
class TrainResult:
    """How a training run ended, when it did not raise :class:`RunError`.

    Attributes:
        run_dir: the run folder (``run.out``).
        step: the step reached, saved in ``run_dir / "latest.pt"``.
        best_loss: the best validation loss so far (inf when never validated).
        stopped: a stop signal (here, or on another process) ended the run before
            ``optim.iterations``; it resumes from ``latest.pt``.
        exit_code: 0, or the conventional 130 (SIGINT) / 143 (SIGTERM) after a stop signal.
    """

    run_dir: Path
    step: int
    best_loss: float
    stopped: bool = False
    exit_code: int = 0


@dataclass
class _Run:
    """What every stage of one run reads: its task, config, process and folder."""

    task: str
    cfg: dict
    ctx: distributed.Context
    run_dir: Path
    command: str  # the --resume command line that messages give
    log: object = silent  # a RunLog on rank 0 once the settings and data are checked

    @property
    def latest(self):
        return self.run_dir / "latest.pt"

    def write_failed(self, err):
        """The RunError for a failed write to the run folder (code 6): what is safe, what next."""
        if self.latest.exists():
            then = (f"the last complete one: {self.latest}. Free space (or fix {self.run_dir}), "
                    f"then resume with: {self.command}")
        else:
            then = f"none was written yet. Free space (or fix {self.run_dir}) and start again"
        return RunError(f"writing to {self.run_dir} failed: {err}. Checkpoints are written whole "
                        f"or not at all; {then}", log=self.log, code=6)


def train_run(task, cfg=None, *, config_path=None, overrides=(), resume=False,
              auto_resume=False, command=None):
    """Train a ``task`` run from its config to its last checkpoint, in this process.

    Args:
        task: "colorize" or "splitbrain".
        cfg: a resolved config (:func:`config.resolve`), used as it is (a copy); None to
            resolve ``config_path`` and ``overrides``. On resume it is the run's config from
            here on, as ``--config`` is for ``tools/train.py``.
        config_path: YAML file for ``config.resolve`` (default: the task's demo config).
        overrides: ``key=value`` strings for ``config.resolve``. On resume without
            ``config_path`` (or ``cfg``) they apply to the run's stored config.
        resume: continue the run in ``run.out`` from its ``latest.pt``.
        auto_resume: resume when ``run.out`` holds a ``latest.pt`` (rank 0 decides for all),
            else start anew.
        command: the command line that messages give to resume the run (default: the
            ``tools/train.py --resume`` one).

    Returns:
        :class:`TrainResult`.

    Raises:
        RunError: a problem the user can fix; its ``code`` is the tool's exit code (see the
            module's docstring).
    """
    # With a config given now (cfg, or a file), it is the run's from here on, also on resume.
    config_given = cfg is not None or bool(config_path)
    cfg, ctx = _resolve(task, cfg, config_path, overrides)
    use_fast_kernels(ctx.device)
    run_dir = Path(cfg["run"]["out"])
    run = _Run(task, cfg, ctx, run_dir, command or
               f"{tool_command('train')} --task {task} --resume run.out={run_dir}")
    state, notes = _resume_or_start(run, resume, auto_resume, overrides, config_given)
    run.cfg["run"]["world_size"] = ctx.world_size  # recorded; optim.batch_size is the global batch
    torch.manual_seed(run.cfg["run"]["seed"])
    train_set, val_set, loader, decode_note = _check_and_load_data(run)
    run.log = RunLog() if ctx.is_main else silent  # lines wait for train.log until it exists
    run.log(f"task {task} on {ctx.device} x {ctx.world_size} process(es), run directory {run_dir}")
    run.log(f"data: {len(train_set)} training items, {len(val_set)} validation items")
    if decode_note:
        run.log(decode_note)
    # The model and objective (the prior is estimated here: still nothing written).
    try:
        setup = tasks.setup(task, run.cfg, train_set, ctx.device, run.log, resume=state)
    except (ValueError, RuntimeError) as err:
        raise RunError(err) from err
    _open_run_folder(run)
    model, optimizer, scheduler, scaler = _model_and_optimiser(run, setup)
    step, best_loss = 0, float("inf")
    if state is not None:
        step, best_loss = _restore(run, state, notes, model, optimizer, scheduler, loader)
    # A few fixed validation images: the TensorBoard grids, and the outputs checked before a save.
    image_batch = torch.stack([val_set[i][0] for i in range(min(4, len(val_set)))])
    save = _saver(run, setup, model, optimizer, scheduler, image_batch,
                  resumed_at=step if state is not None else None)
    return _train(run, model, setup.objective, optimizer, scheduler, scaler, loader, train_set,
                  val_set, save, step, best_loss, image_batch)


def _resolve(task, cfg, config_path, overrides):
    """(A private copy of the run's config, this process's distributed.Context)."""
    try:
        cfg = (copy.deepcopy(cfg) if cfg is not None else
               config_lib.resolve(task, config_path, overrides))
        return cfg, distributed.init(cfg["run"]["device"])
    except ValueError as err:  # a ConfigError, or a device that is not there
        raise RunError(err) from err


def _resume_or_start(run, resume, auto_resume, overrides, config_given):
    """Load the checkpoint to resume (or refuse a folder that holds a run), settling
    ``run.cfg``: the stored config with the ``overrides`` unless ``config_given``.

    Returns:
        (the checkpoint's state or None, the log lines to write once the run is restored).
    """
    latest, run_dir = run.latest, run.run_dir
    # --auto-resume: rank 0 decides for all (each node may see its own disk).
    if not (resume or (auto_resume and distributed.from_main(latest.exists))):
        if latest.exists():
            raise RunError(f"{run_dir} already holds a run (latest.pt); pass --resume to "
                           f"continue it, or choose another directory with run.out=...")
        if (run_dir / "results.json").exists() or (run_dir / "heads.pt").exists():
            raise RunError(f"{run_dir} holds linear-probe results (tools/probe.py); choose "
                           f"another directory with run.out=...")
        return None, []
    try:
        state = ckpt.load(latest, task=run.task)
    except ckpt.CheckpointError as err:
        raise RunError(f"{err}\n{_damaged_latest_advice(run)}") from err
    if not {"config", "optimizer", "step"} <= set(state):
        raise RunError(f"{latest} is a checkpoint of weights only (published weights or "
                       f"tools/join_halves.py output), not of a training run, so there is no "
                       f"optimiser state to resume; move it aside or choose another run.out")
    try:  # one checkpoint for all: a node may see another (older) file at that path
        distributed.check_same(
            {"step": state["step"], "sha256": str(state.get("checksum", ""))[:16]},
            f"--resume from {latest}", "Every process must read the same checkpoint: put "
            "run.out on a filesystem every node sees (only rank 0 writes there)")
    except ValueError as err:
        raise RunError(err) from err
    stored, added = config_lib.add_new_keys(state["config"], run.task)
    notes = []
    if not config_given:  # the run's own config, with the key=value changes given now
        try:
            run.cfg = config_lib.apply_overrides(stored, config_lib.parse_overrides(overrides))
        except ValueError as err:
            raise RunError(err) from err
        if added:
            notes.append(f"config keys added since this run started, at their defaults: "
                         f"{', '.join(added)}")
    before = config_lib.flatten(stored)
    notes += [f"resumed with {k} = {v!r} (was {before.get(k)!r})"
              for k, v in config_lib.flatten(run.cfg).items()
              if k in before and before[k] != v and k != "run.world_size"
              and k not in _OPTIM_APPLIED]  # those are logged where applied
    old_model = config_lib.flatten(state["config"].get("model", {}))
    changed = sorted(k for k, v in config_lib.flatten(run.cfg["model"]).items()
                     if old_model.get(k, v) != v)
    if changed:
        raise RunError(f"model.{', model.'.join(changed)} cannot change on --resume (the "
                       f"checkpoint holds the network it describes); start a new run with "
                       f"another run.out")
    return state, notes


def _damaged_latest_advice(run):
    """What to do when latest.pt cannot be read: resume from the newest intact step_*.pt (or
    best.pt) kept beside it, else start anew."""
    latest, run_dir = run.latest, run.run_dir
    if not latest.exists():
        return f"nothing to resume in {run_dir}; start without --resume"
    kept = sorted(run_dir.glob("step_*.pt"), reverse=True)  # zero-padded: newest first
    intact = None
    for path in kept:
        try:
            intact = (path, ckpt.load(path, task=run.task)["step"])
            break
        except (ckpt.CheckpointError, KeyError):
            continue
    best = run_dir / "best.pt"
    if best.exists():
        try:
            step = ckpt.load(best, task=run.task)["step"]
            if intact is None or step > intact[1]:
                intact = (best, step)
        except (ckpt.CheckpointError, KeyError):
            pass
    if intact is None:
        none = (f"none of the {len(kept)} step_*.pt saves beside it is intact either; "
                if kept else "")
        return (f"nothing to resume in {run_dir}: {none}move {latest} aside (or choose "
                f"another run.out) to start anew")
    path, step = intact
    return (f"{path.name} beside it is intact (step {step}): resume from there (the damaged "
            f"file is kept as {latest.name}.old) with:\n  {_resume_from_command(run, path)}")


def _check_and_load_data(run):
    """Every check before any file is written; the datasets and the training loader.

    Returns:
        (train_set, val_set, loader, a note on the decoder chosen or None).
    """
    d, o, r = run.cfg["data"], run.cfg["optim"], run.cfg["run"]
    ctx, device = run.ctx, run.ctx.device
    try:
        tasks.check_config(run.task, run.cfg)
        if r["compile"] and r["sync_debug"] and device.type != "cuda":
            raise ValueError("run.compile=true with run.sync_debug=true on a CPU: the CPU's "
                             "sync watch (splitbrain/hostsync.py) cannot see inside compiled "
                             "code; check the eager step (run.compile=false), or check on CUDA")
        ckpt.check_writable_folder(run.run_dir, "run.out")

        def datasets():
            return (build_dataset(d["train"], "train", d["crop"], train=True,
                                  length=d["train_length"], root=d["root"],
                                  download=d["download"], seed=r["seed"]),
                    build_dataset(d["val"], "val", d["val_crop"], train=False,
                                  length=d["val_length"], root=d["root"],
                                  download=d["download"], seed=r["seed"]))
        # One process downloads (CIFAR-10, STL-10) while the others wait for its files.
        train_set, val_set = (distributed.in_turns(datasets) if d["download"] else datasets())
        for key, dataset in (("train", train_set), ("val", val_set)):
            distributed.check_same(fingerprint(dataset), f"data.{key}={d[key]}", SAME_FILES)
        for dataset in (train_set, val_set):
            if hasattr(dataset, "check_readable"):
                dataset.check_readable()
        decode, decode_note = choose_decode(d["decode"], train_set, device)
        make_loader = gpu_train_loader if decode == "gpu" else train_loader
        loader = make_loader(train_set, o["batch_size"], r["seed"], 0, d["workers"], device,
                             ctx.rank, ctx.world_size)
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as err:
        raise RunError(err) from err
    return train_set, val_set, loader, decode_note


def _open_run_folder(run):
    """Once every rank has passed every check, rank 0 writes the folder: config.yaml and
    train.log (with the lines logged so far)."""
    distributed.barrier()
    if not run.ctx.is_main:
        return
    try:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        config_lib.save(run.cfg, run.run_dir / "config.yaml")
        run.log.attach(run.run_dir / "train.log")
    except OSError as err:
        raise run.write_failed(err) from err
    stale = ckpt.remove_stale_temp_files(run.run_dir)
    if stale:
        run.log(f"removed {len(stale)} temp file(s) left by a killed save: {', '.join(stale)}")


def _model_and_optimiser(run, setup):
    """(model on the run's device, Adam, its step schedule, the fp16 GradScaler)."""
    o, r, device = run.cfg["optim"], run.cfg["run"], run.ctx.device
    model = setup.model.to(device)
    if r["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    run.log(f"model {setup.model_spec['name']}: "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    optimizer = torch.optim.Adam(model.parameters(), lr=o["lr"], betas=tuple(o["betas"]),
                                 weight_decay=o["weight_decay"])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, o["lr_steps"], o["lr_gamma"])
    scaler = torch.amp.GradScaler(device.type, enabled=r["precision"] == "fp16"
                                  and device.type == "cuda")
    return model, optimizer, scheduler, scaler


def _restore(run, state, notes, model, optimizer, scheduler, loader):
    """Put the checkpoint's step into the model, optimiser, schedule and data order.

    Returns:
        (step, best validation loss so far).
    """
    try:
        step, metrics = ckpt.resume(state, model, optimizer, scheduler, run.latest)
    except ckpt.CheckpointError as err:
        raise RunError(err) from err
    for line in apply_optim_changes(optimizer, scheduler, state["config"]["optim"],
                                    run.cfg["optim"], step):
        run.log(line)
    loader.batch_sampler.start_step = step
    run.log(f"resumed from {run.latest} at step {step}")
    for line in notes:
        run.log(line)
    return step, metrics.get("best_val_loss", float("inf"))


# The optim keys the checkpoint's optimiser and schedule hold: apply_optim_changes makes a
# change on --resume take effect and logs it. Every other changed key (optim.iterations,
# optim.batch_size, ...) takes effect by being the run's config, and is logged on resume.
_OPTIM_STATE_KEYS = ("lr", "betas", "weight_decay", "lr_steps", "lr_gamma")
_OPTIM_APPLIED = {f"optim.{k}" for k in _OPTIM_STATE_KEYS}


def apply_optim_changes(optimizer, scheduler, before, now, step):
    """Make optimiser settings given on --resume take effect (the checkpoint's would win).

    Only keys that differ from the checkpoint's config are touched, so a plain resume stays
    bit for bit the uninterrupted run. Returns a log line per change.
    """
    changed = [k for k in _OPTIM_STATE_KEYS if before.get(k) != now[k]]
    if not changed:
        return []
    passed = sum(1 for milestone in now["lr_steps"] if milestone <= step)
    for group in optimizer.param_groups:
        group["initial_lr"] = now["lr"]
        group["lr"] = now["lr"] * now["lr_gamma"] ** passed
        group["betas"] = tuple(now["betas"])
        group["weight_decay"] = now["weight_decay"]
    scheduler.base_lrs = [now["lr"]] * len(optimizer.param_groups)
    scheduler.milestones = collections.Counter(now["lr_steps"])
    scheduler.gamma = now["lr_gamma"]
    return [f"resumed with optim.{k} = {now[k]} (was {before.get(k)})" for k in changed]


def _saver(run, setup, model, optimizer, scheduler, image_batch, resumed_at=None):
    """``save(name, step, metrics)``: the training state as ``run_dir/<name>.pt``.

    A save is refused (NonFiniteLossError) unless the weights are finite and the network's
    outputs on ``image_batch`` are too (:func:`engine.nonfinite_outputs`): every checkpoint on
    disk is one the tools can use. ``save.newest`` is (path, step) of the newest checkpoint
    known good: the newest save of this process, or the ``latest.pt`` resumed at
    ``resumed_at``; None when there is none.
    """
    keep = run.cfg["run"]["keep"]
    batch = image_batch.to(run.ctx.device)

    def save(name, at_step, metrics):
        # One synchronisation for all the weights and buffers (BatchNorm's running statistics
        # are what eval mode uses), at save time only.
        tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
        if not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            raise engine.NonFiniteLossError(f"the weights are not finite at step {at_step}")
        # A diverged run can keep finite weights whose outputs are not: never save those.
        bad = engine.nonfinite_outputs(model, setup.objective, batch)
        if bad:
            raise engine.NonFiniteLossError(f"the weights of step {at_step} are finite but "
                                            f"useless: {bad}")
        path = run.run_dir / f"{name}.pt"
        ckpt.save(ckpt.training_state(run.task, model, setup.model_spec, run.cfg, at_step,
                                      optimizer, scheduler, setup.extra, metrics), path)
        if name == "latest" and keep:
            ckpt.keep_history(path, at_step, keep)
        if save.newest is None or at_step >= save.newest[1]:
            save.newest = (path, at_step)

    save.newest = (run.latest, resumed_at) if resumed_at is not None else None
    return save


def _train(run, model, objective, optimizer, scheduler, scaler, loader, train_set, val_set,
           save, step, best_loss, image_batch):
    """The loop from ``step`` to ``optim.iterations``, its last save and its closing lines."""
    d, o, r, ctx = run.cfg["data"], run.cfg["optim"], run.cfg["run"], run.ctx
    try:
        train_model = distributed.wrap(model, ctx, r["sync_bn"], compile=r["compile"])
    except ValueError as err:
        raise RunError(err) from err
    if r["compile"]:
        run.log("run.compile: the network is compiled by torch.compile in the first step")
        compiled_before = compile_counts()
    try:
        # A resumed run logs again from step + 1: purge_step makes TensorBoard drop what an
        # earlier process logged from there on (after its last save), so curves do not overlap.
        writer = (SummaryWriter(str(run.run_dir), purge_step=step + 1 if step else None)
                  if ctx.is_main else None)
    except OSError as err:
        raise run.write_failed(err) from err
    bar = tqdm(total=o["iterations"], initial=step, desc="train", unit="step",
               disable=None if ctx.is_main else True, dynamic_ncols=True)
    stop = StopSignals()
    health = DataHealth(train_set, d["max_bad_fraction"], run.log, writer,
                        loader.batch_sampler.steps_per_epoch)
    try:
        with stop:
            step, best_loss = engine.train(
                train_model, objective, optimizer, scheduler, scaler, loader,
                start_step=step, iterations=o["iterations"], device=ctx.device,
                precision=r["precision"], channels_last=r["channels_last"],
                val_loader=eval_loader(val_set, o["batch_size"], d["workers"], r["val_batches"],
                                       ctx.rank, ctx.world_size),
                image_batch=image_batch, log_every=r["log_every"], image_every=r["image_every"],
                val_every=r["val_every"], ckpt_every=r["ckpt_every"], writer=writer, log=run.log,
                save=save if ctx.is_main else None, best_loss=best_loss, progress=bar,
                sync_debug=r["sync_debug"], stop=stop, data_health=health,
                skip_nonfinite=r["nonfinite"] == "skip")
            if ctx.is_main:  # still under the guard: a signal now lets the save finish
                save("latest", step, {"best_val_loss": best_loss})
                writer.close()
    except Exception as err:
        # In one process after another (a study), leave no open event file or progress bar.
        bar.close()
        if writer is not None:
            with contextlib.suppress(Exception):  # a full disk: the error below says so
                writer.close()
        reported = _loop_error(run, err, save)
        if reported is err:
            raise
        raise reported from err
    if r["compile"]:
        graphs, breaks = (now - then for now, then in zip(compile_counts(), compiled_before))
        run.log(f"run.compile: {graphs} graph(s) compiled, {breaks} graph break(s)" +
                ("; nothing was compiled, the network ran eagerly" if not graphs else ""))
    bar.close()
    if stop.agreed:  # a signal here, or on another process (torchrun signals one node only)
        why = stop.name or "a stop signal on another process"
        run.log(f"{why}: stopped at step {step} of {o['iterations']}; saved {run.latest}. "
                f"Resume with: {run.command}")
        distributed.close()
        return TrainResult(run.run_dir, step, best_loss, stopped=True,
                           exit_code=stop.exit_code or StopSignals.CODES[signal.SIGTERM])
    bad, text = health.summary()
    run.log(f"done: {step} steps; checkpoints in {run.run_dir}" + (f"; {text}" if bad else ""))
    distributed.close()
    return TrainResult(run.run_dir, step, best_loss)


def _loop_error(run, err, save):
    """The RunError that reports ``err``, raised by the loop or its last save; ``err`` itself
    when it is no problem the user can fix (its traceback then says where it came from)."""
    latest, log = run.latest, run.log
    if isinstance(err, DataHealthError):
        # Met at a logging step, after the update: that whole step is saved, as for a signal.
        step = getattr(err, "step", None)
        saved = _save_whole_step(run, save, step, getattr(err, "best_loss", float("inf")))
        then = (f"then resume with: {run.command} (adding data.max_bad_fraction=... to go on "
                f"past those files)" if latest.exists() else "then start again")
        return RunError(f"{err}. Stopped after step {step}; {saved}; {then}", log=log, code=4)
    if isinstance(err, HostSyncError):
        return RunError(f"run.sync_debug: {err}", log=log, code=5)
    if isinstance(err, engine.LoaderDiedError):
        # Between steps the weights, optimiser and step agree, and the data order follows
        # from the step alone, so a save then resumes exactly.
        if err.whole:
            saved = _save_whole_step(run, save, err.step, err.best_loss)
        else:
            saved = (f"step {err.step + 1} may be half applied, so it is not saved; "
                     f"{_last_saved(run)}")
        then = f"Resume with: {run.command}" if latest.exists() else "Start again"
        return RunError(f"{err}. The worker was probably killed for memory (see `dmesg`) or "
                        f"crashed decoding a file; {saved}. {then} (with fewer data.workers if "
                        f"memory ran out)", log=log, code=8)
    if isinstance(err, engine.NonFiniteLossError):
        lower = f"optim.lr={run.cfg['optim']['lr'] / 10:g}"
        if save.newest is None:
            return RunError(f"{err}; stopping. No checkpoint of this run is good (finite "
                            f"weights giving finite outputs): none was saved. Start again "
                            f"with a lower learning rate (e.g. {lower}) or "
                            f"run.precision=fp32", log=log, code=3)
        path, step = save.newest
        good = (f"Last good checkpoint (finite weights, finite outputs on the validation "
                f"images): {path}, step {step}")
        if path == latest:
            then = f"resume from it with a lower learning rate: {run.command} {lower}"
        else:  # best.pt, saved after latest.pt
            then = (f"resume from it with a lower learning rate: "
                    f"{_resume_from_command(run, path)} {lower}")
        return RunError(f"{err}; stopping. {good}; {then}", log=log, code=3)
    if isinstance(err, OSError):  # a full disk or a vanished folder, hours in: say what is safe
        return run.write_failed(err)
    if run.cfg["run"]["compile"] and isinstance(err, torch._dynamo.exc.BackendCompilerFailed):
        cause = getattr(err, "inner_exception", None) or err  # the compiler's own error
        first = (str(cause).strip().splitlines() or [""])[0][:300]
        again = (f"{run.command} run.compile=false" if latest.exists() else
                 "the same command with run.compile=false")
        return RunError(f"run.compile: torch.compile could not compile the network "
                        f"({type(cause).__name__}: {first}). Train without it: {again}",
                        log=log, code=7)
    return err


def _last_saved(run):
    """Where the run stands on disk, in words, for a message."""
    return (f"the last checkpoint is {run.latest}" if run.latest.exists() else
            "no checkpoint was written yet")


def _save_whole_step(run, save, step, best_loss):
    """Save ``step`` (whole: met between steps) as latest.pt; what was saved, in words."""
    if step is None:
        return _last_saved(run)
    if not run.ctx.is_main:  # rank 0 writes; its own message says whether it could
        return f"rank 0 saves step {step} in {run.latest}"
    try:
        save("latest", step, {"best_val_loss": best_loss})
    except (OSError, engine.NonFiniteLossError) as err:
        return f"{_last_saved(run)} (saving step {step} failed: {err})"
    return f"saved {run.latest} at step {step}"


def _resume_from_command(run, path):
    """The shell command that makes ``path`` (a whole save in the run folder) the run's
    latest.pt, keeping the current one as latest.pt.old, and resumes from it."""
    latest = run.latest
    keep_old = (f"mv {shlex.quote(str(latest))} {shlex.quote(str(latest) + '.old')} && "
                if latest.exists() else "")
    return (f"{keep_old}cp {shlex.quote(str(path))} {shlex.quote(str(latest))} && "
            f"{run.command}")
