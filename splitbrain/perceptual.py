"""A perceptual distance from our own features (Zhang et al., "The Unreasonable Effectiveness of
Deep Features as a Perceptual Metric", CVPR 2018, whose study included split-brain features).

Per layer, each spatial position's activation is unit-normalised along channels; the squared
difference of the two images' normalised activations is weighted per channel (1 everywhere,
or the non-negative "lin" weights fitted on 2AFC judgements), summed over channels, averaged
over positions, and the layers are summed. Identical images are at distance 0.

What the distance sees is what the network sees: a split-brain model (both halves) reads L and
ab, so colour counts; a colorization network (ECCV16, colorization AlexNet) or a lone L -> ab
half reads L only, so a change of colour alone gives distance 0.
"""

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from . import color
from .models import SplitBrain, SplitBrainHalf

DEFAULT_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
LIN_FORMAT = "splitbrain-lin"
_EPS = 1e-10  # keeps an all-zero activation (dead ReLUs) at a zero vector after normalising


class PerceptualError(ValueError):
    """A feature network, layer or weight file the distance cannot use."""


# --- the feature network ------------------------------------------------------------------------

def channels_seen(model):
    """The Lab channels (0: L, 1 and 2: ab) the network reads, as a sorted tuple."""
    if isinstance(model, SplitBrain):
        return tuple(sorted({c for half in model.halves for c in half.inputs}))
    if isinstance(model, SplitBrainHalf):
        return tuple(sorted(model.inputs))
    if getattr(model, "in_channels", None) == 1:
        return tuple(color.L_CHANNELS)
    raise PerceptualError(f"{type(model).__name__} is not a splitbrain network with feature "
                          f"taps (forward_features); use a colorize or splitbrain checkpoint")


def sees_colour(model):
    """True when the network reads a or b, i.e. a colour-only change can move the distance."""
    return any(c in color.AB_CHANNELS for c in channels_seen(model))


def require_colour(model, source="the feature network"):
    """Raise PerceptualError for a network that reads L only.

    Colorized output keeps the truth's lightness by construction, so such a network would put
    every colorization at distance 0 from the truth.
    """
    if not sees_colour(model):
        raise PerceptualError(
            f"{source} ({type(model).__name__}) reads L only, so it cannot tell colours apart: "
            f"a colorization, which keeps the truth's L, would be at distance 0 whatever its "
            f"colours. Use a split-brain checkpoint with both halves (python tools/train.py "
            f"--task splitbrain, then runs/splitbrain_demo/latest.pt)")


def check_layers(model, layers=DEFAULT_LAYERS):
    """Layer names as a tuple ("conv1,conv3" or a sequence), each a feature tap of ``model``."""
    if isinstance(layers, str):
        layers = layers.split(",")
    names = tuple(dict.fromkeys(name.strip() for name in layers if name.strip()))
    valid = tuple(getattr(model, "feature_layers", ()))
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        what = f"unknown layer(s) {unknown}" if unknown else "no layer given"
        raise PerceptualError(f"{what} for {type(model).__name__}; valid: {', '.join(valid)}")
    return names


def load_features(path, init="checkpoint", seed=0):
    """The frozen feature network of any splitbrain checkpoint (eval mode, no gradients).

    Args:
        path: a colorize or splitbrain checkpoint (or the ECCV16 release weights).
        init: "checkpoint" for its weights, "random" for the same architecture with random
            weights drawn from ``seed`` (the untrained baseline).

    Raises:
        PerceptualError: unreadable file, unknown init, or a network without feature taps.
    """
    if init not in ("checkpoint", "random"):
        raise PerceptualError(f"unknown init {init!r}; valid: checkpoint, random")
    try:
        state = ckpt.load(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ckpt.build_model(state, path, weights=init == "checkpoint")
    except ckpt.CheckpointError as err:
        raise PerceptualError(str(err)) from None
    return freeze(model, source=str(path))


def random_features(name, seed=0, **kwargs):
    """A randomly initialised network of ``splitbrain.models.MODELS[name]``, frozen."""
    from .models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = build_model(name, **kwargs)
        except (ValueError, TypeError) as err:
            raise PerceptualError(str(err)) from None
    return freeze(model, source=name)


def freeze(model, source="the feature network"):
    """``model`` in eval mode with ``requires_grad`` off, after checking it has feature taps."""
    channels_seen(model)
    if not hasattr(model, "forward_features"):
        raise PerceptualError(f"{source} has no feature taps (forward_features)")
    return model.eval().requires_grad_(False)


# --- the distance -------------------------------------------------------------------------------

def network_input(model, lab):
    """What ``model`` takes, from a Lab batch (B, 3, H, W): L (B, 1, H, W) or the full Lab."""
    return lab[:, :1] if getattr(model, "in_channels", None) == 1 else lab


def channel_terms(lab_x, lab_y, model, layers=DEFAULT_LAYERS):
    """Per layer and channel, the spatial mean of the squared normalised-feature difference.

    Args:
        lab_x, lab_y: Lab batches, (B, 3, H, W), same shape.
        model: the feature network, in eval mode (BatchNorm must not mix images of a batch).

    Returns:
        dict layer -> (B, C_layer). Summed over channels and layers, this is the distance.
    """
    if lab_x.shape != lab_y.shape or lab_x.ndim != 4 or lab_x.shape[1] != 3:
        raise PerceptualError(f"expected two batches of the same shape (B, 3, H, W), got "
                              f"{tuple(lab_x.shape)} and {tuple(lab_y.shape)}")
    if model.training:
        raise PerceptualError("the feature network is in training mode, where BatchNorm mixes "
                              "the images of a batch; call model.eval() (load_features does)")
    layers = check_layers(model, layers)
    both = network_input(model, torch.cat([lab_x, lab_y]))  # (2B, C_in, H, W): one forward
    terms = {}
    for name, f in model.forward_features(both, layers).items():
        f = f.float()
        f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + _EPS)  # (2B, C, h, w), unit along C
        fx, fy = f.chunk(2)
        terms[name] = (fx - fy).pow(2).mean((2, 3))  # (B, C)
    return terms


def combine(terms, weights=None):
    """Sum :func:`channel_terms` over channels (weighted by ``weights``) and layers -> (B,)."""
    total = 0.0
    for name, t in terms.items():
        if weights is None:
            total = total + t.sum(1)
        else:
            total = total + t @ weights[name].to(t)  # (B, C) @ (C,)
    return total


def lab_distance(lab_x, lab_y, model, layers=DEFAULT_LAYERS, weights=None):
    """:func:`distance` for Lab batches (B, 3, H, W); differentiable in both inputs."""
    layers = check_layers(model, layers)
    if weights is not None:
        check_weights(weights, model, layers)
    return combine(channel_terms(lab_x, lab_y, model, layers), weights)


def distance(x, y, model, layers=DEFAULT_LAYERS, weights=None):
    """Perceptual distance between two sRGB batches, one value per pair.

    Args:
        x, y: sRGB (B, 3, H, W), float in [0, 1] (or uint8); same shape.
        model: a frozen splitbrain network (:func:`load_features`). A network that reads L
            only (colorize checkpoints) ignores colour: a colour-only change gives 0.
        layers: feature taps to use, e.g. ("conv1", ..., "conv5") or "conv2,conv3".
        weights: None (every channel weighs 1) or the "lin" weights, layer -> (C,) >= 0.

    Returns:
        (B,) distances: 0 for identical images, symmetric, non-negative.
    """
    return lab_distance(color.rgb_to_lab(color.to_float_rgb(x)),
                        color.rgb_to_lab(color.to_float_rgb(y)), model, layers, weights)


# --- "lin" weights: fitting, checking, files ------------------------------------------------------

def check_weights(weights, model, layers):
    """Raise PerceptualError unless ``weights`` has one non-negative (C,) vector per layer."""
    missing = [name for name in layers if name not in weights]
    if missing:
        raise PerceptualError(f"the lin weights have no entry for layer(s) {missing} (they hold "
                              f"{', '.join(weights)}); fit them for these layers")
    for name in layers:
        w, channels = weights[name], model.feature_channels[name]
        if w.shape != (channels,):
            raise PerceptualError(f"lin weights of {name} have shape {tuple(w.shape)}, the "
                                  f"network has {channels} channels there: fitted for another "
                                  f"network?")
        if not bool((w >= 0).all() and torch.isfinite(w).all()):
            raise PerceptualError(f"lin weights of {name} must be finite and >= 0")


def fit_lin_weights(near, far, steps=300, lr=0.05, reg=0.01):
    """Non-negative per-channel weights under which the less-distorted image is the closer.

    A logistic model of "the near image is closer": P = sigmoid(s * w . (t_far - t_near)),
    with ``t`` the :func:`channel_terms` of (reference, distortion), ``w = softplus(theta)``
    (non-negative by construction, starting at 1) and a free scale ``s > 0``; a small penalty
    ``reg * mean((w - 1)^2)`` fixes the scale of ``w`` and keeps unused channels near 1.
    (The paper fits its weights with a small network on human judgements; this is the plain
    logistic version of the same idea.)

    Args:
        near, far: dict layer -> (N, C) channel terms of the N triplets' two pairs.

    Returns:
        dict layer -> (C,) float32 weights, all >= 0.
    """
    layers = list(near)
    z = torch.cat([far[n] - near[n] for n in layers], 1).double()  # (N, sum C)
    theta = torch.full((z.shape[1],), math.log(math.expm1(1.0)), dtype=torch.double,
                       requires_grad=True)
    spread = float(z.sum(1).std()) if z.shape[0] > 1 else 1.0
    log_scale = torch.tensor(-math.log(spread + 1e-12), dtype=torch.double, requires_grad=True)
    opt = torch.optim.Adam([theta, log_scale], lr=lr)
    for _ in range(steps):
        w = F.softplus(theta)
        logits = log_scale.exp() * (z @ w)
        loss = F.softplus(-logits).mean() + reg * (w - 1).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = F.softplus(theta.detach()).float()
    return dict(zip(layers, w.split([near[n].shape[1] for n in layers])))


def save_lin_weights(path, weights, about=""):
    """Write lin weights (layer -> (C,)) to ``path`` atomically; ``about`` says what they fit."""
    state = {"format": LIN_FORMAT, "about": str(about),
             "weights": {k: v.detach().float().cpu().contiguous() for k, v in weights.items()}}
    ckpt.atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_lin_weights(path, model=None, layers=None):
    """Read a file of :func:`save_lin_weights`; checked against ``model`` and ``layers`` if given."""
    path = Path(path)
    if not path.is_file():
        raise PerceptualError(f"lin weights not found: {path}; fit them with "
                              f"tools/perceptual_2afc.py --save-lin FOLDER")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure to read means an unusable file
        state = None
    if not isinstance(state, dict) or state.get("format") != LIN_FORMAT:
        raise PerceptualError(f"{path} is not a lin-weights file (written by "
                              f"tools/perceptual_2afc.py --save-lin)")
    weights = state["weights"]
    if model is not None:
        check_weights(weights, model, check_layers(model, layers or tuple(weights)))
    return weights


# --- scoring a colorizer ------------------------------------------------------------------------

@torch.no_grad()
def score_colorizer(model, objective, loader, features, layers=DEFAULT_LAYERS, weights=None,
                    device="cpu"):
    """Mean perceptual distance of a colorizer's output to the truth, and of the grey image.

    The output is what a user gets: the input's L joined with the decoded ab, as clipped sRGB.
    Since it keeps the truth's L, only a feature network that reads colour can score it.

    Args:
        model: the colorization network; objective: its objective (``predict_ab``).
        loader: batches of (sRGB uint8 (B, 3, H, W), label).
        features: a frozen feature network that reads colour (:func:`require_colour`).

    Returns:
        {"model": mean distance, "grey": mean distance of the all-grey output, "images": N}.
    """
    require_colour(features)
    layers = check_layers(features, layers)
    was_training = model.training
    model.eval()
    sums, count = {"model": 0.0, "grey": 0.0}, 0
    for rgb, _ in loader:
        rgb = rgb.to(device)
        _, _, pred = objective(model, rgb)
        ab = objective.predict_ab(pred)  # (B, 2, h, w)
        truth = color.to_float_rgb(rgb)
        outputs = {"model": color.join_lab(pred.L, ab),
                   "grey": color.join_lab(pred.L, torch.zeros_like(ab))}
        for name, out in outputs.items():
            sums[name] += float(distance(out, truth, features, layers, weights).sum())
        count += rgb.shape[0]
    model.train(was_training)
    return {name: value / max(count, 1) for name, value in sums.items()} | {"images": count}
