"""Trained probe heads as plain linear classifiers, saved beside a probe's results.

Both solvers end in the same function of a layer's features x (B, D):

    logits = ((x - mean) / scale) @ weight.T + bias

the SGD solver's :class:`~splitbrain.probe.solver_sgd.LinearProbe` in eval mode (its
parameter-free BatchNorm: running mean, sqrt(running var + eps)) and the sklearn solver's
StandardScaler + LogisticRegression. Saving that one form lets ``tools/evaluate.py`` classify
new views of images (shift consistency) with either solver's heads, without refitting.
"""

import torch
import torch.nn as nn

from .. import checkpoint as ckpt
from . import ProbeError

HEADS_FILE = "heads.pt"
_KIND = "splitbrain-probe-heads"


class LinearHead(nn.Module):
    """Standardise features, then one linear map: (B, D) -> (B, num_classes) logits."""

    def __init__(self, mean, scale, weight, bias):
        super().__init__()
        for name, value in (("mean", mean), ("scale", scale), ("weight", weight),
                            ("bias", bias)):
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32).clone())
        if self.weight.shape != (self.bias.shape[0], self.mean.shape[0]) or \
                self.scale.shape != self.mean.shape:
            raise ValueError(f"inconsistent head shapes: mean {tuple(self.mean.shape)}, scale "
                             f"{tuple(self.scale.shape)}, weight {tuple(self.weight.shape)}, "
                             f"bias {tuple(self.bias.shape)}")

    def forward(self, x):
        return ((x.float() - self.mean) / self.scale) @ self.weight.T + self.bias


def from_linear_probe(probe):
    """The LinearHead equal to a trained LinearProbe in eval mode."""
    norm = probe.norm
    return LinearHead(norm.running_mean.detach().cpu(),
                      (norm.running_var.detach().cpu() + norm.eps).sqrt(),
                      probe.fc.weight.detach().cpu(), probe.fc.bias.detach().cpu())


def from_sklearn(pipeline, num_classes):
    """The LinearHead of a fitted StandardScaler + multinomial LogisticRegression pipeline.

    Classes the regression never saw in training get a bias of -inf: never predicted, as
    its ``predict_proba`` (zero columns) never predicts them.
    """
    scaler, logistic = pipeline[0], pipeline[-1]
    dim = logistic.coef_.shape[1]
    weight = torch.zeros(num_classes, dim)
    bias = torch.full((num_classes,), float("-inf"))
    seen = torch.as_tensor(logistic.classes_, dtype=torch.long)
    coef = torch.as_tensor(logistic.coef_, dtype=torch.float32)
    intercept = torch.as_tensor(logistic.intercept_, dtype=torch.float32)
    if len(seen) == 2 and coef.shape[0] == 1:  # sklearn keeps one row for two classes
        coef, intercept = torch.cat([-coef / 2, coef / 2]), torch.cat([-intercept / 2,
                                                                       intercept / 2])
    weight[seen], bias[seen] = coef, intercept
    scale = torch.as_tensor(scaler.scale_ if scaler.scale_ is not None else [1.0] * dim)
    return LinearHead(torch.as_tensor(scaler.mean_), scale, weight, bias)


def save_heads(path, heads, meta):
    """Write ``{layer: LinearHead}`` and what they were trained on to ``path`` (atomically)."""
    state = {"kind": _KIND, "meta": dict(meta),
             "heads": {name: {k: v.clone() for k, v in head.state_dict().items()}
                       for name, head in heads.items()}}
    ckpt.atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_heads(path):
    """({layer: LinearHead}, meta) from a file of :func:`save_heads`.

    Raises:
        ProbeError: a missing file, or a file that holds no probe heads.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ProbeError(f"{path} not found: probe heads are saved as {HEADS_FILE} in the "
                         f"run folder of tools/probe.py (runs from before this file existed "
                         f"must be run again)") from None
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ProbeError(f"{path} is not a probe heads file ({type(err).__name__}); pass the "
                         f"{HEADS_FILE} that tools/probe.py wrote") from None
    if not isinstance(state, dict) or state.get("kind") != _KIND:
        raise ProbeError(f"{path} is not a probe heads file; pass the {HEADS_FILE} that "
                         f"tools/probe.py wrote")
    heads = {name: LinearHead(**tensors) for name, tensors in state["heads"].items()}
    return heads, state["meta"]
