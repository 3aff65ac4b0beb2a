"""A probe run as one library call: encoder and data checked, probes trained, results written.

:func:`probe_run` is ``tools/probe.py`` without its command line, so that a study can probe
one model after another in one process. A problem the user can fix raises
:class:`splitbrain.runlog.RunError` (code 2; also ``splitbrain.lifecycle.RunError``), never
``sys.exit``.
"""

from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from .. import checkpoint as ckpt
from .. import config as config_lib
from .. import distributed
from ..data import SAME_FILES, fingerprint
from ..runlog import RunError, RunLog, silent
from ..runtime import use_fast_kernels
from . import ProbeError
from .data import probe_datasets
from .encoder import open_encoder
from .heads import HEADS_FILE, save_heads
from .report import format_table, save_results
from .solver_sgd import SGDRecipe, probe_sgd
from .solver_sklearn import probe_sklearn

SOLVERS = ("sgd", "sklearn")  # probe.solver: splitbrain.probe.solver_sgd | solver_sklearn
TRAINING_RUN = ("latest.pt", "best.pt", "train.log")  # what tools/train.py leaves in run.out


def solve(cfg, encoder, train_set, val_set, num_classes, writer, log):
    """Run the config's solver: ({layer: {"dim", "top1", "top5", ...}}, {layer: LinearHead})."""
    d, o, r, s = cfg["data"], cfg["optim"], cfg["run"], cfg["sklearn"]
    if cfg["probe"]["solver"] == "sgd":
        return probe_sgd(encoder, train_set, val_set, num_classes, SGDRecipe(**o), r["seed"],
                         d["workers"], r["eval_every"], r["log_every"], writer, log)
    return probe_sklearn(encoder, train_set, val_set, num_classes, o["batch_size"], d["workers"],
                         s["Cs"], s["holdout"], s["max_iter"], s["knn_k"], s["knn_temperature"],
                         r["seed"], log, writer)


def probe_run(cfg):
    """Probe the config's encoder on its data, in this process; write the run folder.

    Args:
        cfg: the resolved probe config (``config.resolve("probe", ...)``, as
            ``tools/probe.py`` builds it from its flags).

    Returns:
        {"results": {layer: {"dim", "top1", "top5", ...}}, "run_dir": Path, "meta": the
        run's description saved with the results (None on ranks other than 0, which write
        nothing)}.

    Raises:
        RunError: bad settings or input (code 2), before any work; or results that could not
            be written (code 2; the table is printed).
    """
    e, p, d, r = cfg["encoder"], cfg["probe"], cfg["data"], cfg["run"]
    if p["solver"] not in SOLVERS:
        raise RunError(f"unknown probe.solver {p['solver']!r}; valid: {', '.join(SOLVERS)}")
    run_dir = Path(r["out"])
    encoder, spec, state, ctx, (train_set, val_set, classes) = _check(cfg, run_dir)
    distributed.barrier()  # every rank has looked before rank 0 writes

    # --- run directory (rank 0 writes for the run) -------------------------------------------
    def write_failed(err, when):
        return RunError(f"writing to {run_dir} failed {when} ({err}); free some space or fix "
                        f"the folder, then run again (results.json is written last, so a "
                        f"folder without it holds no result)")

    writer = None
    if ctx.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            config_lib.save(cfg, run_dir / "config.yaml")
            log = RunLog(run_dir / "probe.log")
            writer = SummaryWriter(str(run_dir))
        except OSError as err:
            raise write_failed(err, "before probing") from err
    else:
        log = silent
    encoder.to(ctx.device)
    torch.manual_seed(r["seed"])
    log(f"probing {spec['name']} ({e['init']} weights, {e['ckpt'] or 'no checkpoint'}) on "
        f"{ctx.device}: layers {', '.join(encoder.layers)}, {p['solver']} solver, {p['resize']} "
        f"resize")
    log(f"data {d['source']}: {len(classes)} classes, {len(train_set)} training and "
        f"{len(val_set)} validation images")

    # --- probe -----------------------------------------------------------------------------------
    try:  # the log and TensorBoard write as the probe goes
        results, heads = solve(cfg, encoder, train_set, val_set, len(classes), writer, log)
    except OSError as err:
        raise write_failed(err, "while probing") from err

    # --- report ----------------------------------------------------------------------------------
    for dataset in (train_set, val_set):  # every rank's unreadable files, for rank 0's count
        if getattr(dataset, "_unreadable", None) is not None:
            distributed.host_max_(dataset._unreadable)
    meta = None
    if ctx.is_main:
        writer.close()
        meta = _report(cfg, run_dir, results, heads, spec, state, ctx, train_set, val_set,
                       classes, log)
    distributed.close()
    return {"results": results, "run_dir": run_dir, "meta": meta}


def _check(cfg, run_dir):
    """Every check before any work: the encoder, the processes, the data, the run folder.

    Returns:
        (encoder, its model spec, its checkpoint's state or None, distributed.Context,
        (train_set, val_set, class names)).
    """
    e, p, d, r = cfg["encoder"], cfg["probe"], cfg["data"], cfg["run"]
    try:
        encoder, spec, state = open_encoder(e["ckpt"], e["init"], e["arch"], p["layers"],
                                            p["resize"], r["precision"], r["seed"])
        ctx = distributed.init(r["device"])
        if ctx.distributed and p["solver"] != "sgd":
            raise ProbeError("probe.solver=sklearn runs in one process (its features are "
                             "cached in memory); launch it without torchrun")
        use_fast_kernels(ctx.device)
        distributed.check_same(  # one encoder for all: a node may see another file there
            {"sha256": str((state or {}).get("checksum", ""))[:16]}, f"encoder.ckpt={e['ckpt']}",
            "Every process must read the same checkpoint: put it where every node sees it")
        data = probe_datasets(
            d["source"], d["crop"], d["short_side"], d["root"], d["download"], d["train_length"],
            d["val_length"], r["seed"], augment=p["solver"] == "sgd")
        for split, dataset in (("train", data[0]), ("val", data[1])):
            distributed.check_same(fingerprint(dataset), f"data.source={d['source']} ({split})",
                                   SAME_FILES)
        for dataset in data[:2]:  # folders: some file must decode
            if hasattr(dataset, "check_readable"):
                dataset.check_readable()
        if p["solver"] == "sgd":
            SGDRecipe(**cfg["optim"]).check_data(len(data[0]))
        ckpt.check_writable_folder(run_dir, "--out")
    except (ProbeError, OSError, ValueError, RuntimeError) as err:
        raise RunError(err) from err
    if (run_dir / "results.json").exists():
        raise RunError(f"{run_dir} already holds probe results; choose another --out")
    trained = [name for name in TRAINING_RUN if (run_dir / name).exists()]
    if trained:  # its config.yaml and TensorBoard events would be overwritten and mixed
        raise RunError(f"{run_dir} holds a training run ({', '.join(trained)}); choose another "
                       f"--out, e.g. --out {run_dir / 'probe'}")
    return encoder, spec, state, ctx, data


def _report(cfg, run_dir, results, heads, spec, state, ctx, train_set, val_set, classes, log):
    """Rank 0: print and log the table, then write heads.pt and the results (results.json
    last, so that its presence means a complete run). Returns the run's meta."""
    e, p, d = cfg["encoder"], cfg["probe"], cfg["data"]
    table = format_table(results)
    print(table, flush=True)
    log("results:\n" + table)
    # Folders skip files they cannot decode (every rank's, loader workers included).
    skipped = {split: dataset.skip_counts() for split, dataset in
               (("train", train_set), ("val", val_set)) if hasattr(dataset, "skip_counts")}
    for split, counts in skipped.items():
        if counts:
            log(f"{split}: skipped {sum(counts.values())} unreadable file(s) ("
                f"{', '.join(f'{reason}: {n}' for reason, n in counts.items())}); the "
                f"warnings above name each")
    meta = {"model": spec, "ckpt": e["ckpt"], "init": e["init"],
            "task": state.get("task") if state else None, "data": d["source"],
            "num_classes": len(classes), "solver": p["solver"], "resize": p["resize"],
            "world_size": ctx.world_size, "unreadable_files": skipped}
    try:
        # The heads (for tools/evaluate.py --metric consistency --probe RUN_DIR), then the
        # results: results.json comes last, so its presence means a complete run.
        save_heads(run_dir / HEADS_FILE, heads, meta)
        save_results(results, run_dir, meta)
    except OSError as err:
        raise RunError(f"could not write the results to {run_dir} ({err}); the table is "
                       f"printed above; free some space or fix the folder and run again"
                       ) from err
    log(f"done: {HEADS_FILE}, results.csv and results.json in {run_dir}")
    return meta
