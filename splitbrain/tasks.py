"""Per-task set-up for tools/train.py: the model, the objective, and what the checkpoint keeps.

``TASKS`` maps a task name to a function ``setup(cfg, train_set, device, log, resume=None) -> Setup``.
"""

from dataclasses import dataclass, field

import torch

from . import color
from .models import build_model
from .prior import estimate_prior, load_prior
from .objectives import ColorizationObjective


@dataclass
class Setup:
    model: torch.nn.Module
    model_spec: dict          # {"name": ..., "kwargs": {...}}: enough to rebuild the model
    objective: object
    extra: dict = field(default_factory=dict)  # plain data stored in every checkpoint


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


def setup_colorize(cfg, train_set, device, log, resume=None):
    """Model and objective of ``--task colorize``; a resumed run reuses its stored prior."""
    c = cfg["color"]
    regression = cfg["loss"] == "regression"
    kwargs = {"pool": cfg["model"]["pool"], "l_norm": cfg["model"]["l_norm"]}
    if regression:
        kwargs["num_classes"] = 2  # the head predicts ab / AB_SCALE directly
    model = build_model(cfg["model"]["name"], **kwargs)

    prior = choose_prior(c, train_set, device, log, resume)
    class_weights = color.rebalance_weights(prior, c["lambda"])
    objective = ColorizationObjective(
        loss=cfg["loss"], k=c["k"], sigma=c["sigma"],
        class_weights=class_weights.to(device), rebalance=c["rebalance"],
        grey_mask=c["grey_mask"])
    extra = {"color": {
        "head": cfg["loss"],
        "ab_centres": color.ab_bin_centres(),
        "l_norm": cfg["model"]["l_norm"],
        "prior": prior,  # float64: a resumed run must rebuild identical weights
        "class_weights": class_weights,
        "temperature": c["temperature"],
    }}
    return Setup(model, {"name": cfg["model"]["name"], "kwargs": kwargs}, objective, extra)


TASKS = {"colorize": setup_colorize}


def half_names(specs):
    """A name per half for logs: "l2ab" / "ab2l" for the Lab halves, else "half<i>"."""
    from .models.splitbrain import LAB_HALVES

    by_channels = {(tuple(i), tuple(t)): name for name, (i, t) in LAB_HALVES.items()}
    return [by_channels.get((tuple(s["inputs"]), tuple(s["targets"])), f"half{i}")
            for i, s in enumerate(specs)]


def split_specs(model):
    """The split of a SplitBrain model, or the one spec of a half trained alone."""
    return list(model.split) if hasattr(model, "split") else [model.spec]


def setup_splitbrain(cfg, train_set, device, log, resume=None):
    """Model and objective of ``--task splitbrain``; ``model.half`` trains one half alone."""
    from .objectives import SplitBrainObjective

    m, c = cfg["model"], cfg["color"]
    kwargs = {"pool": m["pool"], "heads": list(m["heads"]), "half": m["half"]}
    model = build_model(m["name"], **kwargs)
    specs = split_specs(model)

    prior = choose_prior(c, train_set, device, log, resume, needed=c["rebalance"])
    class_weights = None
    if c["rebalance"]:
        class_weights = color.rebalance_weights(prior, c["lambda"]).to(device)
    objective = SplitBrainObjective(specs, [s["head"] for s in specs], half_names(specs),
                                    k=c["k"], sigma=c["sigma"], class_weights=class_weights)
    extra = {"color": {"ab_centres": color.ab_bin_centres(), "l_norm": model.l_norm,
                       "temperature": c["temperature"]}}
    if prior is not None:
        extra["color"]["prior"] = prior
    return Setup(model, {"name": m["name"], "kwargs": kwargs}, objective, extra)


TASKS["splitbrain"] = setup_splitbrain
