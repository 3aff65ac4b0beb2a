"""The two training tasks: which model a config asks for, its objective, what checkpoints keep.

:func:`setup` builds a run's model, ab prior and objective from its config; tools/train.py calls
it. :func:`objective_from_checkpoint` rebuilds the objective of a finished run (with the run's
own prior), for evaluation.
"""

from dataclasses import dataclass, field

import torch

from . import color, distributed
from .models import build_model
from .objectives import ColorizationObjective, SplitBrainObjective
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
    kwargs = {"pool": m["pool"], "l_norm": m["l_norm"]}
    if m["head"] == "reg":
        kwargs["num_classes"] = 2  # the head predicts ab / AB_SCALE directly
    return {"name": m["name"], "kwargs": kwargs}


def colorize_objective(cfg, model, prior):
    c = cfg["color"]
    return ColorizationObjective(
        head=cfg["model"]["head"], k=c["k"], sigma=c["sigma"],
        class_weights=color.rebalance_weights(prior, c["lambda"]), rebalance=c["rebalance"],
        grey_mask=c["grey_mask"], temperature=c["temperature"])


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
    return {"name": m["name"], "kwargs": {"pool": m["pool"], "padding": m["padding"],
                                          "norm": m["norm"], "heads": list(m["heads"]),
                                          "half": m["half"]}}


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


# --- the table and the set-up -----------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    model_spec: object    # cfg -> {"name", "kwargs"}
    objective: object     # (cfg, model, prior) -> objective
    color_state: object   # (cfg, model, prior) -> the checkpoint's "color" entry
    needs_prior: object   # cfg -> whether a prior must exist (else only one given is used)


TASKS = {
    "colorize": Task(colorize_model_spec, colorize_objective, colorize_color_state,
                     lambda cfg: True),
    "splitbrain": Task(splitbrain_model_spec, splitbrain_objective, splitbrain_color_state,
                       lambda cfg: cfg["color"]["rebalance"]),
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
    # Estimated once, on rank 0, and broadcast in a distributed run.
    prior = distributed.from_main(lambda: choose_prior(cfg["color"], train_set, device, log,
                                                       resume, t.needs_prior(cfg)))
    objective = t.objective(cfg, model, prior)
    objective.class_weights = (None if objective.class_weights is None
                               else objective.class_weights.to(device))
    return Setup(model, spec, objective, {"color": t.color_state(cfg, model, prior)})


def objective_from_checkpoint(state, model):
    """The objective a checkpoint's run trained with, its stored prior included."""
    prior = state.get("color", {}).get("prior")
    return TASKS[state["task"]].objective(state["config"], model,
                                          None if prior is None else prior.double())
