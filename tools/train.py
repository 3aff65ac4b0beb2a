#!/usr/bin/env python
"""Train a colorization or split-brain model.

    python tools/train.py --task colorize                      # demo on the bundled photos
    python tools/train.py --task colorize --config configs/colorize_eccv16_imagenet.yaml \
        data.train=/data/imagenet/train data.val=/data/imagenet/val
    python tools/train.py --task colorize --resume run.out=runs/colorize_demo

Any config key can be overridden as key=value (or --key value). Outputs go to run.out:
config.yaml, train.log, TensorBoard events (tensorboard --logdir runs), latest.pt, best.pt.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402
from tqdm import tqdm  # noqa: E402

from splitbrain import checkpoint as ckpt  # noqa: E402
from splitbrain import config as config_lib  # noqa: E402
from splitbrain import engine  # noqa: E402
from splitbrain.data import build_dataset  # noqa: E402
from splitbrain.runlog import RunLog, fatal, image_grid  # noqa: E402
from splitbrain.tasks import TASKS  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--config", help="YAML file (default: configs/<task>_demo.yaml)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in run.out from its latest checkpoint")
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
    except config_lib.ConfigError as err:
        fatal(err)
    run_dir = Path(cfg["run"]["out"])
    latest, best = run_dir / "latest.pt", run_dir / "best.pt"

    # --- resume or start -------------------------------------------------------------------
    state = None
    if args.resume:
        try:
            state = ckpt.load(latest, task=args.task)
        except ckpt.CheckpointError as err:
            fatal(f"{err}\nnothing to resume in {run_dir}; start without --resume")
        cfg = config_lib.apply_overrides(state["config"], config_lib.parse_overrides(overrides))
    elif latest.exists():
        fatal(f"{run_dir} already holds a run (latest.pt); pass --resume to continue it, or "
              f"choose another directory with run.out=...")
    run_dir.mkdir(parents=True, exist_ok=True)
    config_lib.save(cfg, run_dir / "config.yaml")
    log = RunLog(run_dir / "train.log")
    device = engine.resolve_device(cfg["run"]["device"])
    torch.manual_seed(cfg["run"]["seed"])
    log(f"task {args.task} on {device}, run directory {run_dir}")

    # --- data ------------------------------------------------------------------------------
    d = cfg["data"]
    try:
        train_set = build_dataset(d["train"], "train", d["crop"], train=True,
                                  length=d["train_length"], root=d["root"],
                                  download=d["download"], seed=cfg["run"]["seed"])
        val_set = build_dataset(d["val"], "val", d["val_crop"], train=False,
                                length=d["val_length"], root=d["root"],
                                download=d["download"], seed=cfg["run"]["seed"])
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        fatal(err)
    log(f"data: {len(train_set)} training items, {len(val_set)} validation items")

    # --- model, objective --------------------------------------------------------------------
    setup = TASKS[args.task](cfg, train_set, device, log, resume=state)
    model = setup.model.to(device)
    if cfg["run"]["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    log(f"model {setup.model_spec['name']}: "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")

    # --- optimiser, schedule ----------------------------------------------------------------
    o = cfg["optim"]
    optimizer = torch.optim.Adam(model.parameters(), lr=o["lr"], betas=tuple(o["betas"]),
                                 weight_decay=o["weight_decay"])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, o["lr_steps"], o["lr_gamma"])
    scaler = torch.amp.GradScaler(device.type, enabled=cfg["run"]["precision"] == "fp16"
                                  and device.type == "cuda")
    step, best_loss = 0, float("inf")
    if state is not None:
        try:
            ckpt.load_state_dict(model, state["state_dict"], latest)
        except ckpt.CheckpointError as err:
            fatal(err)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        best_loss = state["metrics"].get("best_val_loss", best_loss)
        log(f"resumed from {latest} at step {step}")

    # --- loop --------------------------------------------------------------------------------
    r = cfg["run"]
    loader = engine.train_loader(train_set, o["batch_size"], r["seed"], step, d["workers"], device)
    val_loader = engine.eval_loader(val_set, o["batch_size"], d["workers"])
    writer = SummaryWriter(str(run_dir))
    meter = engine.Throughput()

    def save(path, metrics=None):
        engine.save_checkpoint(path, model, setup.model_spec, args.task, cfg, step, optimizer,
                               scheduler, setup.extra,
                               {"best_val_loss": best_loss, **(metrics or {})})

    bar = tqdm(total=o["iterations"], initial=step, desc="train", unit="step", disable=None,
               dynamic_ncols=True)
    model.train()
    for rgb, _ in loader:
        if step >= o["iterations"]:
            break
        rgb = rgb.to(device, non_blocking=True)
        if r["channels_last"]:
            rgb = rgb.contiguous(memory_format=torch.channels_last)
        try:
            logs = engine.train_step(model, setup.objective, optimizer, scaler, rgb, device,
                                     r["precision"])
        except engine.NonFiniteLossError as err:
            kept = latest if latest.exists() else "none yet"
            fatal(f"{err} at step {step + 1}; stopping. Last good checkpoint: {kept}. "
                  f"Try a lower optim.lr or precision=fp32.", log=log, code=3)
        scheduler.step()
        step += 1
        meter.add(rgb.shape[0])
        bar.update(1)

        if step % r["log_every"] == 0 or step == o["iterations"]:
            scalars = {f"train/{k}": float(v) for k, v in logs.items()}
            scalars["train/lr"] = scheduler.get_last_lr()[0]
            scalars["train/images_per_s"] = meter.rate()
            for k, v in scalars.items():
                writer.add_scalar(k, v, step)
            bar.set_postfix(loss=f"{scalars['train/loss']:.3f}",
                            img_s=f"{scalars['train/images_per_s']:.0f}")
            if bar.disable:
                log(f"step {step}/{o['iterations']} " +
                    " ".join(f"{k.split('/')[1]}={v:.4g}" for k, v in scalars.items()))
        if step % r["image_every"] == 0 or step == o["iterations"]:
            log_images(writer, model, setup.objective, val_set, device, r, cfg, step)
        if step % r["val_every"] == 0 or step == o["iterations"]:
            metrics = engine.evaluate(model, setup.objective,
                                      _capped(val_loader, r["val_batches"]), device,
                                      r["precision"], cfg["color"]["temperature"])
            for k, v in metrics.items():
                writer.add_scalar(k, v, step)
            log(f"step {step} validation: " +
                " ".join(f"{k[4:]}={v:.4g}" for k, v in sorted(metrics.items())))
            if metrics["val/loss"] < best_loss:
                best_loss = metrics["val/loss"]
                save(best, metrics)
        if step % r["ckpt_every"] == 0:
            save(latest)
    save(latest)
    bar.close()
    writer.close()
    log(f"done: {step} steps; checkpoints in {run_dir}")


def _capped(loader, n):
    if not n:
        yield from loader
        return
    for i, batch in enumerate(loader):
        if i >= n:
            return
        yield batch


@torch.no_grad()
def log_images(writer, model, objective, val_set, device, r, cfg, step, n=4):
    """Grids of grey input / prediction / truth on fixed validation images, and predicted bins."""
    batch = torch.stack([val_set[i][0] for i in range(min(n, len(val_set)))]).to(device)
    model.eval()
    with engine.autocast(device, r["precision"]):
        _, _, output = objective(model, batch)
    model.train()
    rows = objective.visuals(batch, output, cfg["color"]["temperature"])
    for name, grid in image_grid(rows).items():
        writer.add_image(name, grid, step)
    for name, values in objective.histograms(output).items():
        writer.add_histogram(name, values.flatten().cpu(), step)


if __name__ == "__main__":
    main()
