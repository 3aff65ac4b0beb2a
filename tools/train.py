#!/usr/bin/env python
"""Train a colorization or split-brain model.

    python tools/train.py --task colorize                      # demo on the bundled photos
    python tools/train.py --task colorize --config configs/colorize_eccv16_imagenet.yaml \
        data.train=/data/imagenet/train data.val=/data/imagenet/val
    python tools/train.py --task colorize --resume run.out=runs/colorize_demo
    torchrun --max-restarts=3 ... tools/train.py --auto-resume ...  # restarts continue the run

Any config key can be overridden as key=value (or --key value). Outputs go to run.out:
config.yaml, train.log, TensorBoard events (tensorboard --logdir runs), latest.pt, best.pt.
"""

import argparse
import collections
import signal
import sys
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from splitbrain import checkpoint as ckpt
from splitbrain import config as config_lib
from splitbrain import distributed, engine, tasks
from splitbrain.data import SAME_FILES, build_dataset, fingerprint
from splitbrain.loaders import eval_loader, train_loader
from splitbrain.jpeg_gpu import choose_decode, gpu_train_loader
from splitbrain.data_health import DataHealth, DataHealthError
from splitbrain.hostsync import HostSyncError
from splitbrain.runlog import RunLog, fatal, silent
from splitbrain.runtime import StopSignals, compile_counts, use_fast_kernels


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=sorted(tasks.TASKS))
    parser.add_argument("--config", help="YAML file (default: configs/<task>_demo.yaml)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in run.out from its latest checkpoint")
    parser.add_argument("--auto-resume", action="store_true",
                        help="resume when run.out holds a checkpoint, else start anew: one "
                             "command line for the first start and every restart (torchrun "
                             "--max-restarts, requeued cluster jobs)")
    parser.add_argument("--device", help="shorthand for run.device=...")
    parser.add_argument("--half", choices=["both", "l2ab", "ab2l"],
                        help="splitbrain: shorthand for model.half=... (train one half alone)")
    args, overrides = parser.parse_known_args(argv)
    if args.device:
        overrides.append(f"run.device={args.device}")
    if args.half:
        if args.task != "splitbrain":
            parser.error("--half applies to --task splitbrain only")
        overrides.append(f"model.half={args.half}")
    return args, overrides


def main(argv=None):
    args, overrides = parse_args(argv)
    try:
        cfg = config_lib.resolve(args.task, args.config, overrides)
        ctx = distributed.init(cfg["run"]["device"])
    except ValueError as err:  # a ConfigError, or a device that is not there
        fatal(err)
    use_fast_kernels(ctx.device)
    run_dir = Path(cfg["run"]["out"])
    latest = run_dir / "latest.pt"
    resume = f"python tools/train.py --task {args.task} --resume run.out={run_dir}"

    # --- resume or start -------------------------------------------------------------------
    state, new_keys, changes = None, [], []
    # --auto-resume: rank 0 decides for all (each node may see its own disk).
    if args.resume or (args.auto_resume and distributed.from_main(latest.exists)):
        try:
            state = ckpt.load(latest, task=args.task)
        except ckpt.CheckpointError as err:
            hint = (f"move {latest} aside (or choose another run.out) to start anew"
                    if latest.exists() else "start without --resume")
            fatal(f"{err}\nnothing to resume in {run_dir}; {hint}")
        if not {"config", "optimizer", "step"} <= set(state):
            fatal(f"{latest} is a checkpoint of weights only (published weights or "
                  f"tools/join_halves.py output), not of a training run, so there is no "
                  f"optimiser state to resume; move it aside or choose another run.out")
        try:  # one checkpoint for all: a node may see another (older) file at that path
            distributed.check_same(
                {"step": state["step"], "sha256": str(state.get("checksum", ""))[:16]},
                f"--resume from {latest}", "Every process must read the same checkpoint: put "
                "run.out on a filesystem every node sees (only rank 0 writes there)")
        except ValueError as err:
            fatal(err)
        stored, added = config_lib.add_new_keys(state["config"], args.task)
        if not args.config:
            new_keys = added  # the run's own config, with the key=value changes given now
            try:
                cfg = config_lib.apply_overrides(stored, config_lib.parse_overrides(overrides))
            except ValueError as err:
                fatal(err)
        # With --config, the config given now (file and key=value) is the run's from here on.
        before = config_lib.flatten(stored)
        changes = [f"resumed with {k} = {v!r} (was {before.get(k)!r})"
                   for k, v in config_lib.flatten(cfg).items()
                   if k in before and before[k] != v and k != "run.world_size"
                   and not k.startswith("optim.")]  # optim changes are logged where applied
        changed = sorted(k for k, v in config_lib.flatten(cfg["model"]).items()
                         if config_lib.flatten(state["config"].get("model", {})).get(k, v) != v)
        if changed:
            fatal(f"model.{', model.'.join(changed)} cannot change on --resume (the checkpoint "
                  f"holds the network it describes); start a new run with another run.out")
    elif latest.exists():
        fatal(f"{run_dir} already holds a run (latest.pt); pass --resume to continue it, or "
              f"choose another directory with run.out=...")
    elif (run_dir / "results.json").exists() or (run_dir / "heads.pt").exists():
        fatal(f"{run_dir} holds linear-probe results (tools/probe.py); choose another "
              f"directory with run.out=...")
    d, o, r = cfg["data"], cfg["optim"], cfg["run"]
    r["world_size"] = ctx.world_size  # recorded; optim.batch_size is the global batch
    device = ctx.device
    torch.manual_seed(r["seed"])

    # --- every check before any file is written ---------------------------------------------
    try:
        tasks.check_config(args.task, cfg)
        if r["compile"] and r["sync_debug"] and device.type != "cuda":
            raise ValueError("run.compile=true with run.sync_debug=true on a CPU: the CPU's "
                             "sync watch (splitbrain/hostsync.py) cannot see inside compiled "
                             "code; check the eager step (run.compile=false), or check on CUDA")
        ckpt.check_writable_folder(run_dir, "run.out")

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
        fatal(err)
    log = RunLog() if ctx.is_main else silent  # lines wait for train.log until it exists
    log(f"task {args.task} on {device} x {ctx.world_size} process(es), run directory {run_dir}")
    log(f"data: {len(train_set)} training items, {len(val_set)} validation items")
    if decode_note:
        log(decode_note)

    # --- model, objective (the prior is estimated here: still nothing written) -------------
    try:
        setup = tasks.setup(args.task, cfg, train_set, device, log, resume=state)
    except (ValueError, RuntimeError) as err:
        fatal(err)

    def write_failed(err):
        if latest.exists():
            then = (f"the last complete one: {latest}. Free space (or fix {run_dir}), then "
                    f"resume with: {resume}")
        else:
            then = f"none was written yet. Free space (or fix {run_dir}) and start again"
        fatal(f"writing to {run_dir} failed: {err}. Checkpoints are written whole or not at "
              f"all; {then}", log=log, code=6)

    # --- run folder: rank 0 writes for the run ---------------------------------------------
    distributed.barrier()  # every rank has passed every check
    if ctx.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            config_lib.save(cfg, run_dir / "config.yaml")
            log.attach(run_dir / "train.log")
        except OSError as err:
            write_failed(err)
        stale = ckpt.remove_stale_temp_files(run_dir)
        if stale:
            log(f"removed {len(stale)} temp file(s) left by a killed save: {', '.join(stale)}")
    model = setup.model.to(device)
    if r["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    log(f"model {setup.model_spec['name']}: "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")

    # --- optimiser, schedule ---------------------------------------------------------------
    optimizer = torch.optim.Adam(model.parameters(), lr=o["lr"], betas=tuple(o["betas"]),
                                 weight_decay=o["weight_decay"])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, o["lr_steps"], o["lr_gamma"])
    scaler = torch.amp.GradScaler(device.type, enabled=r["precision"] == "fp16"
                                  and device.type == "cuda")

    # --- resume ----------------------------------------------------------------------------
    step, best_loss = 0, float("inf")
    if state is not None:
        try:
            step, metrics = ckpt.resume(state, model, optimizer, scheduler, latest)
        except ckpt.CheckpointError as err:
            fatal(err)
        best_loss = metrics.get("best_val_loss", best_loss)
        for line in apply_optim_changes(optimizer, scheduler, state["config"]["optim"], o, step):
            log(line)
        loader.batch_sampler.start_step = step
        log(f"resumed from {latest} at step {step}")
        if new_keys:
            log(f"config keys added since this run started, at their defaults: "
                f"{', '.join(new_keys)}")
        for line in changes:
            log(line)

    def save(name, at_step, metrics):
        # A diverged run can keep a finite loss while its weights blow up: never save those.
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise engine.NonFiniteLossError(f"the weights are not finite at step {at_step}")
        path = run_dir / f"{name}.pt"
        ckpt.save(ckpt.training_state(args.task, model, setup.model_spec, cfg, at_step,
                                      optimizer, scheduler, setup.extra, metrics), path)
        if name == "latest" and r["keep"]:
            ckpt.keep_history(path, at_step, r["keep"])

    # --- loop ------------------------------------------------------------------------------
    try:
        train_model = distributed.wrap(model, ctx, r["sync_bn"], compile=r["compile"])
    except ValueError as err:
        fatal(err)
    if r["compile"]:
        log("run.compile: the network is compiled by torch.compile in the first step")
        compiled_before = compile_counts()
    try:
        writer = SummaryWriter(str(run_dir)) if ctx.is_main else None
    except OSError as err:
        write_failed(err)
    bar = tqdm(total=o["iterations"], initial=step, desc="train", unit="step",
               disable=None if ctx.is_main else True, dynamic_ncols=True)
    image_batch = torch.stack([val_set[i][0] for i in range(min(4, len(val_set)))])
    stop = StopSignals()
    health = DataHealth(train_set, d["max_bad_fraction"], log, writer,
                        loader.batch_sampler.steps_per_epoch)
    try:
        with stop:
            step, best_loss = engine.train(
                train_model, setup.objective, optimizer, scheduler, scaler, loader,
                start_step=step, iterations=o["iterations"], device=device,
                precision=r["precision"], channels_last=r["channels_last"],
                val_loader=eval_loader(val_set, o["batch_size"], d["workers"], r["val_batches"],
                                       ctx.rank, ctx.world_size),
                image_batch=image_batch, log_every=r["log_every"], image_every=r["image_every"],
                val_every=r["val_every"], ckpt_every=r["ckpt_every"], writer=writer, log=log,
                save=save if ctx.is_main else None, best_loss=best_loss, progress=bar,
                sync_debug=r["sync_debug"], stop=stop, data_health=health,
                skip_nonfinite=r["nonfinite"] == "skip")
        if ctx.is_main:
            save("latest", step, {"best_val_loss": best_loss})
            writer.close()
    except DataHealthError as err:
        fatal(f"{err}. Stopped at the last logging step; {latest} holds the last checkpoint.",
              log=log, code=4)
    except HostSyncError as err:
        fatal(f"run.sync_debug: {err}", log=log, code=5)
    except engine.LoaderDiedError as err:
        # Between steps the weights, optimiser and step agree, and the data order follows
        # from the step alone, so a save then resumes exactly.
        saved = (f"the last checkpoint is {latest}" if latest.exists() else
                 "no checkpoint was written yet")
        if not err.whole:
            saved = f"step {err.step + 1} may be half applied, so it is not saved; {saved}"
        elif ctx.is_main:
            try:
                save("latest", err.step, {"best_val_loss": err.best_loss})
                saved = f"saved {latest} at step {err.step}"
            except (OSError, engine.NonFiniteLossError) as save_err:
                saved += f" (saving step {err.step} failed: {save_err})"
        then = f"Resume with: {resume}" if latest.exists() else "Start again"
        fatal(f"{err}. The worker was probably killed for memory (see `dmesg`) or crashed "
              f"decoding a file; {saved}. {then} (with fewer data.workers if memory ran out)",
              log=log, code=8)
    except engine.NonFiniteLossError as err:
        kept = latest if latest.exists() else "none yet"
        fatal(f"{err}; stopping. Last good checkpoint: {kept}. "
              f"Try a lower optim.lr or precision=fp32.", log=log, code=3)
    except OSError as err:  # a full disk or a vanished folder, hours in: say what is safe
        write_failed(err)
    except RuntimeError as err:
        if not (r["compile"] and isinstance(err, torch._dynamo.exc.BackendCompilerFailed)):
            raise
        cause = getattr(err, "inner_exception", None) or err  # the compiler's own error
        first = (str(cause).strip().splitlines() or [""])[0][:300]
        again = (f"{resume} run.compile=false" if latest.exists() else
                 "the same command with run.compile=false")
        fatal(f"run.compile: torch.compile could not compile the network "
              f"({type(cause).__name__}: {first}). Train without it: {again}",
              log=log, code=7)
    if r["compile"]:
        graphs, breaks = (now - then for now, then in zip(compile_counts(), compiled_before))
        log(f"run.compile: {graphs} graph(s) compiled, {breaks} graph break(s)" +
            ("; nothing was compiled, the network ran eagerly" if not graphs else ""))
    bar.close()
    if stop.agreed:  # a signal here, or on another process (torchrun signals one node only)
        why = stop.name or "a stop signal on another process"
        log(f"{why}: stopped at step {step} of {o['iterations']}; saved {latest}. "
            f"Resume with: {resume}")
        distributed.close()
        sys.exit(stop.exit_code or StopSignals.CODES[signal.SIGTERM])
    bad, text = health.summary()
    log(f"done: {step} steps; checkpoints in {run_dir}" + (f"; {text}" if bad else ""))
    distributed.close()


def apply_optim_changes(optimizer, scheduler, before, now, step):
    """Make optimiser settings given on --resume take effect (the checkpoint's would win).

    Only keys that differ from the checkpoint's config are touched, so a plain resume stays
    bit for bit the uninterrupted run. Returns a log line per change.
    """
    changed = [k for k in ("lr", "betas", "weight_decay", "lr_steps", "lr_gamma")
               if before.get(k) != now[k]]
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


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # before the loop, where nothing is worth saving yet
        print("\ninterrupted before training started; nothing was saved", file=sys.stderr)
        sys.exit(130)
