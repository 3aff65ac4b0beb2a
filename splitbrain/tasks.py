"""The training tasks: which model a config asks for, its objective, what checkpoints keep.

colorize (L -> ab), splitbrain (each half of Lab predicts the other), autoencoder (Lab ->
Lab, plain or denoising: the split-brain paper's baselines) and hints (L plus user colour
hints -> ab, SIGGRAPH 2017).

:func:`setup` builds a run's model, ab prior and objective from its config; tools/train.py calls
it. :func:`objective_from_checkpoint` rebuilds the objective of a finished run (with the run's
own prior), for evaluation.
"""

from dataclasses import dataclass, field

import torch

from . import color, distributed, perceptual
from .models import build_model
from .hints import HintSampler
from .objectives import (AutoencoderObjective, ColorizationObjective, HintsObjective,
                         PerceptualTerm, SplitBrainObjective)
from .prior import estimate_prior, load_prior


@dataclass
class Setup:
    model: torch.nn.Module
    model_spec: dict          # {"name": ..., "kwargs": {...}}: enough to rebuild the model
    objective: object
    extra: dict = field(default_factory=dict)  # plain data stored in every checkpoint


# --- colorize -------------------------------------------------------------------------------

def colorize_model_spec(cfg):
    m = cfg["model"]
    kwargs = {"blur": m["blur"], "l_norm": m["l_norm"]}
    if m["head"] == "reg":
        kwargs["num_classes"] = 2  # the head predicts ab / AB_SCALE directly
    return {"name": m["name"], "kwargs": kwargs}


def colorize_objective(cfg, model, prior):
    c = cfg["color"]
    return ColorizationObjective(
        head=cfg["model"]["head"], k=c["k"], sigma=c["sigma"],
        class_weights=color.rebalance_weights(prior, c["lambda"]), rebalance=c["rebalance"],
        grey_mask=c["grey_mask"], temperature=c["temperature"])


def colorize_perceptual(cfg):
    """The ``loss.perceptual_*`` term of a colorize config, or None at weight 0 (nothing loaded)."""
    lo = cfg["loss"]
    if lo["perceptual_weight"] == 0:
        return None
    features = perceptual.load_features(lo["perceptual_ckpt"])
    layers = perceptual.check_layers(features, lo["perceptual_layers"])
    lin = None
    if lo["perceptual_lin"]:
        lin = perceptual.load_lin_weights(lo["perceptual_lin"], features, layers)
    return PerceptualTerm(features, lo["perceptual_weight"], layers, lin)


def colorize_color_state(cfg, model, prior):
    c = cfg["color"]
    return {
        "head": cfg["model"]["head"],
        "ab_centres": color.ab_bin_centres(),
        "l_norm": cfg["model"]["l_norm"],
        "prior": prior,  # float64: a resumed run must rebuild identical weights
        "class_weights": color.rebalance_weights(prior, c["lambda"]),
        "temperature": c["temperature"],
    }


# --- splitbrain -----------------------------------------------------------------------------

def splitbrain_model_spec(cfg):
    m = cfg["model"]
    return {"name": m["name"], "kwargs": {"blur": m["blur"], "padding": m["padding"],
                                          "norm": m["norm"], "heads": list(m["heads"]),
                                          "half": m["half"], "width": m["width"]}}


def split_specs(model):
    """The split of a SplitBrain model, or the one spec of a half trained alone."""
    return list(model.split) if hasattr(model, "split") else [model.spec]


def splitbrain_objective(cfg, model, prior):
    c = cfg["color"]
    class_weights = color.rebalance_weights(prior, c["lambda"]) if c["rebalance"] else None
    return SplitBrainObjective(split_specs(model), k=c["k"], sigma=c["sigma"],
                               class_weights=class_weights, temperature=c["temperature"])


def splitbrain_color_state(cfg, model, prior):
    state = {"ab_centres": color.ab_bin_centres(), "l_norm": model.l_norm,
             "temperature": cfg["color"]["temperature"]}
    if prior is not None:
        state["prior"] = prior
    return state


# --- autoencoder ----------------------------------------------------------------------------

def autoencoder_model_spec(cfg):
    m = cfg["model"]
    return {"name": m["name"], "kwargs": {"blur": m["blur"], "padding": m["padding"],
                                          "norm": m["norm"]}}


def autoencoder_objective(cfg, model, prior):
    c = cfg["corrupt"]
    return AutoencoderObjective(noise=c["noise"], drop=c["drop"], seed=cfg["run"]["seed"])


def autoencoder_color_state(cfg, model, prior):
    return {"l_norm": model.l_norm, "corrupt": dict(cfg["corrupt"])}


# --- hints -----------------------------------------------------------------------------------

def hints_model_spec(cfg):
    m = cfg["model"]
    return {"name": m["name"], "kwargs": {"blur": m["blur"], "l_norm": m["l_norm"],
                                          "hints": True}}


def hints_objective(cfg, model, prior):
    c, lo = cfg["color"], cfg["loss"]
    weights = None if prior is None else color.rebalance_weights(prior, c["lambda"])
    return HintsObjective(HintSampler.from_config(cfg["hints"]), k=c["k"], sigma=c["sigma"],
                          class_weights=weights, grey_mask=c["grey_mask"],
                          temperature=c["temperature"], cl_weight=lo["cl_weight"],
                          huber_delta=lo["huber_delta"], seed=cfg["run"]["seed"],
                          rank=distributed.rank())


def hints_color_state(cfg, model, prior):
    c = cfg["color"]
    return {"head": "reg", "ab_centres": color.ab_bin_centres(), "l_norm": cfg["model"]["l_norm"],
            "prior": prior, "class_weights": color.rebalance_weights(prior, c["lambda"]),
            "temperature": c["temperature"], "hints": dict(cfg["hints"])}


# --- the table and the set-up -----------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    model_spec: object    # cfg -> {"name", "kwargs"}
    objective: object     # (cfg, model, prior) -> objective
    color_state: object   # (cfg, model, prior) -> the checkpoint's "color" entry
    needs_prior: object   # cfg -> whether a prior must exist (else only one given is used)
    extra_loss: object = None  # cfg -> a term the objective adds to its loss, or None


TASKS = {
    "colorize": Task(colorize_model_spec, colorize_objective, colorize_color_state,
                     lambda cfg: True, colorize_perceptual),
    "splitbrain": Task(splitbrain_model_spec, splitbrain_objective, splitbrain_color_state,
                       lambda cfg: cfg["color"]["rebalance"]),
    "autoencoder": Task(autoencoder_model_spec, autoencoder_objective, autoencoder_color_state,
                        lambda cfg: False),
    "hints": Task(hints_model_spec, hints_objective, hints_color_state, lambda cfg: True),
}


def choose_prior(c, train_set, device, log, resume=None, needed=True):
    """The ab prior of a run: the resumed run's own, ``color.prior``'s file, or estimated.

    Returns None when no source exists and ``needed`` is False (nothing to estimate for).
    """
    if resume is not None and "prior" in resume.get("color", {}):
        return resume["color"]["prior"].double()
    if c["prior"]:
        log(f"ab prior from {c['prior']}")
        return load_prior(c["prior"])
    if not needed:
        return None
    prior, hist = estimate_prior(train_set, c["prior_images"], device=device,
                                 sigma=c["prior_sigma"])
    log(f"ab prior estimated on {hist.images} images: "
        f"{int((hist.counts > 0).sum())}/313 bins seen")
    return prior


def setup(task, cfg, train_set, device, log, resume=None):
    """A run's fresh model, objective and checkpoint extras; a resumed run reuses its prior.

    Args:
        task: a key of ``TASKS``.
        cfg: the resolved config.
        train_set: the training dataset (the prior is estimated on it when needed).
        device: where the objective's tensors live.
        log: callable taking a message line.
        resume: the checkpoint being resumed, or None.
    """
    t = TASKS[task]
    spec = t.model_spec(cfg)
    model = build_model(spec["name"], **spec["kwargs"])
    # Estimated once, on rank 0, and broadcast in a distributed run (the autoencoder has
    # no colour classes, so no "color" keys and no prior).
    prior = None
    if "color" in cfg:
        prior = distributed.from_main(lambda: choose_prior(cfg["color"], train_set, device, log,
                                                           resume, t.needs_prior(cfg)))
    objective = t.objective(cfg, model, prior)
    if resume is not None and hasattr(objective, "step"):  # its corruption follows the step
        objective.step = resume["step"]
    objective.class_weights = (None if objective.class_weights is None
                               else objective.class_weights.to(device))
    if t.extra_loss is not None:
        term = t.extra_loss(cfg)
        if term is not None:
            log(f"perceptual loss term: weight {term.weight}, features "
                f"{cfg['loss']['perceptual_ckpt']}, layers {','.join(term.layers)}")
            objective.perceptual = term.to(device)
    return Setup(model, spec, objective, {"color": t.color_state(cfg, model, prior)})


def objective_from_checkpoint(state, model):
    """The objective a checkpoint's run trained with, its stored prior included."""
    prior = state.get("color", {}).get("prior")
    return TASKS[state["task"]].objective(state["config"], model,
                                          None if prior is None else prior.double())


# The networks that take hints (ECCV16's layout; see splitbrain.models.eccv16).
HINT_MODELS = ("eccv16", "eccv16_small")


# --- one validation pass before any work --------------------------------------------------------

def check_config(task, cfg):
    """Every value of a training config in its range, checked before anything is written.

    Also builds the model once and runs a crop through it, so a crop too small for the
    network's depth is an error now, not at step 1.

    Raises:
        ValueError: naming every problem found, each with its key.
    """
    from .models import MODELS
    from .models.layers import BLUR_SIZES
    from .runtime import PRECISIONS

    m, d, o, r = cfg["model"], cfg["data"], cfg["optim"], cfg["run"]
    problems = []

    def need(ok, key, value, what):
        if not ok:
            problems.append(f"{key}={value!r}: {what}")

    need(m["name"] in MODELS, "model.name", m["name"], f"one of {', '.join(MODELS)}")
    need(m["blur"] in BLUR_SIZES, "model.blur", m["blur"],
         f"anti-aliasing filter size, one of {' | '.join(map(str, BLUR_SIZES))} (1: off)")
    need(r["precision"] in PRECISIONS, "run.precision", r["precision"],
         f"one of {', '.join(PRECISIONS)}")
    for key in ("batch_size", "iterations"):
        need(o[key] >= 1, f"optim.{key}", o[key], "must be at least 1")
    need(o["lr"] > 0, "optim.lr", o["lr"], "must be > 0")
    need(o["weight_decay"] >= 0, "optim.weight_decay", o["weight_decay"], "must be >= 0")
    need(len(o["betas"]) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1
                                      for b in o["betas"]),
         "optim.betas", o["betas"], "two numbers in [0, 1), e.g. [0.9, 0.99]")
    need(o["lr_gamma"] > 0, "optim.lr_gamma", o["lr_gamma"], "must be > 0")
    need(all(isinstance(s, int) and s > 0 for s in o["lr_steps"]), "optim.lr_steps",
         o["lr_steps"], "positive step numbers")
    if "color" in cfg:
        problems += _color_problems(cfg["color"])
    for key in ("crop", "val_crop", "train_length", "val_length"):
        need(d[key] >= 1, f"data.{key}", d[key], "must be at least 1")
    need(d["workers"] >= 0, "data.workers", d["workers"], "must be >= 0")
    need(d["decode"] in ("cpu", "gpu"), "data.decode", d["decode"], "cpu | gpu")
    need(0 <= d["max_bad_fraction"] <= 1, "data.max_bad_fraction", d["max_bad_fraction"],
         "in [0, 1]")
    for key in ("log_every", "image_every", "val_every", "ckpt_every"):
        need(r[key] >= 1, f"run.{key}", r[key], "must be at least 1 (steps)")
    need(r["nonfinite"] in ("stop", "skip"), "run.nonfinite", r["nonfinite"], "stop | skip")
    if r["sync_debug"]:
        need(r["nonfinite"] != "skip", "run.nonfinite", r["nonfinite"],
             "skip reads the loss on the host every step, which run.sync_debug=true forbids; "
             "use run.nonfinite=stop for the check")
        need(r["precision"] != "fp16", "run.precision", r["precision"],
             "fp16's loss scaling reads its overflow flag on the host every step, which "
             "run.sync_debug=true forbids; check with bf16 or fp32")
    need(r["keep"] >= 0, "run.keep", r["keep"], "must be >= 0 (0: only latest.pt and best.pt)")
    need(r["val_batches"] >= 0, "run.val_batches", r["val_batches"], "must be >= 0 (0: all)")
    if task == "colorize":
        need(m["head"] in color.HEADS, "model.head", m["head"], f"one of {', '.join(color.HEADS)}")
        problems += _loss_problems(cfg)
    elif task == "hints":
        need(m["name"] in HINT_MODELS, "model.name", m["name"],
             f"a network that takes hints: {' | '.join(HINT_MODELS)}")
        lo = cfg["loss"]
        need(lo["cl_weight"] >= 0, "loss.cl_weight", lo["cl_weight"], "must be >= 0")
        need(lo["huber_delta"] > 0, "loss.huber_delta", lo["huber_delta"], "must be > 0")
        try:
            HintSampler.from_config(cfg["hints"])
        except (ValueError, TypeError) as err:
            problems.append(f"hints.*: {err}")
    elif task == "splitbrain":
        need(all(h in color.HEADS for h in m["heads"]) and len(m["heads"]) == 2, "model.heads",
             m["heads"], "two of cl | reg, e.g. [cl, cl]")
        need(m["width"] in ("half", "full"), "model.width", m["width"],
             "half (each half half as wide as the single network, the paper) | full")
    else:
        c = cfg["corrupt"]
        need(c["noise"] >= 0, "corrupt.noise", c["noise"], "must be >= 0 (0: no noise)")
        need(0 <= c["drop"] < 1, "corrupt.drop", c["drop"],
             "in [0, 1): the share of input pixels dropped (0: none)")
    if problems:
        raise ValueError("bad config values:\n  " + "\n  ".join(problems))
    _check_crops(task, cfg)


def _color_problems(c):
    """What is wrong with a config's ``color.*`` keys, as message lines."""
    problems = []

    def need(ok, key, value, what):
        if not ok:
            problems.append(f"{key}={value!r}: {what}")

    need(1 <= c["k"] <= color.NUM_AB_BINS, "color.k", c["k"], f"in 1..{color.NUM_AB_BINS}")
    need(c["sigma"] > 0, "color.sigma", c["sigma"], "must be > 0")
    need(0 < c["lambda"] <= 1, "color.lambda", c["lambda"], "in (0, 1]")
    need(c["temperature"] >= 0, "color.temperature", c["temperature"],
         "must be >= 0 (0 decodes the mode)")
    need(c["prior_sigma"] > 0, "color.prior_sigma", c["prior_sigma"], "must be > 0")
    need(c["prior_images"] >= 0, "color.prior_images", c["prior_images"], "must be >= 0")
    if c["prior"]:
        from pathlib import Path
        need(Path(c["prior"]).is_file(), "color.prior", c["prior"],
             "file not found; make one with tools/compute_prior.py or set color.prior=null")
    return problems


def _loss_problems(cfg):
    """What is wrong with a colorize config's ``loss.perceptual_*`` keys, as message lines."""
    from pathlib import Path

    lo, problems = cfg["loss"], []
    weight, path = lo["perceptual_weight"], lo["perceptual_ckpt"]
    if not weight >= 0:
        problems.append(f"loss.perceptual_weight={weight!r}: must be >= 0 (0: no perceptual term)")
    if not weight > 0:
        return problems
    if cfg["model"]["head"] == "cl" and cfg["color"]["temperature"] == 0:
        problems.append("color.temperature=0 with loss.perceptual_weight > 0: decoding the mode "
                        "has no gradient; use a temperature > 0 (e.g. 0.38)")
    if not path or not Path(path).is_file():
        problems.append(f"loss.perceptual_ckpt={path!r}: file not found; give a split-brain "
                        f"checkpoint (e.g. runs/splitbrain_demo/latest.pt) or set "
                        f"loss.perceptual_weight=0")
        return problems
    if lo["perceptual_lin"] and not Path(lo["perceptual_lin"]).is_file():
        problems.append(f"loss.perceptual_lin={lo['perceptual_lin']!r}: file not found; fit one "
                        f"with tools/perceptual_2afc.py --save-lin, or set it to null")
        return problems
    try:
        term = colorize_perceptual(cfg)
    except perceptual.PerceptualError as err:
        problems.append(f"loss.perceptual_*: {err}")
        return problems
    for key in ("crop", "val_crop"):  # the term sees whole crops
        size = cfg["data"][key]
        try:
            with torch.no_grad():
                term(torch.zeros(1, 2, size, size), torch.zeros(1, 3, size, size))
        except RuntimeError:
            problems.append(f"data.{key}={size} is too small for the perceptual term's feature "
                            f"network ({cfg['loss']['perceptual_ckpt']}); use a larger crop "
                            f"(e.g. 64)")
    return problems


def _check_crops(task, cfg):
    """Run the training and validation crops through the model on the CPU."""
    spec = TASKS[task].model_spec(cfg)
    try:
        with torch.random.fork_rng(devices=[]):
            model = build_model(spec["name"], **spec["kwargs"]).eval()
    except (ValueError, TypeError) as err:
        raise ValueError(f"cannot build model {spec['name']!r}: {err}") from None
    channels = {"colorize": 1, "hints": 4}.get(task, 3)
    for key in ("crop", "val_crop"):
        size = cfg["data"][key]
        try:
            with torch.no_grad():
                out = model(torch.zeros(1, channels, size, size))
        except RuntimeError:
            out = None
        outputs = out if isinstance(out, list) else [out]
        if out is None or any(o.shape[-1] < 1 or o.shape[-2] < 1 for o in outputs):
            raise ValueError(f"data.{key}={size} is too small for {spec['name']}: the network "
                             f"cannot produce an output from it; use a larger crop (e.g. 64)")
