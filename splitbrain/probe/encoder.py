"""The frozen side of a linear probe: which layers, what input, the resized features, and the
checks that the encoder stays frozen (docs/reference.md §3).
"""

import itertools

import torch
import torch.nn.functional as F

from .. import checkpoint as ckpt
from .. import color
from ..models import AlexNetColorization, SplitBrain, SplitBrainHalf
from ..runtime import autocast, check_precision
from . import ProbeError, ProtocolError

PROBE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
# Side of the square map a layer is resized to, so every probe sees about 9k values at full
# AlexNet widths: conv1 96×10×10 = 9600, conv2 256×6×6 = 9216, conv3/conv4 384×5×5 = 9600,
# conv5 256×6×6 = 9216.
PROBE_SIZES = {"conv1": 10, "conv2": 6, "conv3": 5, "conv4": 5, "conv5": 6}
RESIZE_MODES = ("bilinear", "avgpool")  # official Caffe probe | VISSL
INITS = ("checkpoint", "random")  # the checkpoint's weights | the same architecture, random
# Models that take raw colour channels and have AlexNet's conv1..conv5; a SplitBrainHalf is one
# half trained alone (it picks its own channels out of the full Lab input).
PROBE_MODEL_TYPES = (AlexNetColorization, SplitBrain, SplitBrainHalf)
# Checkpoint tasks whose model has such an encoder.
PROBED_TASKS = ("colorize", "splitbrain", "autoencoder")


# --- the encoder ------------------------------------------------------------------------------

def check_encoder(model, source="the model"):
    """Raise ProbeError unless ``model`` has AlexNet conv1..conv5 taps the probe can read."""
    if not isinstance(model, PROBE_MODEL_TYPES):
        raise ProbeError(
            f"{source} ({type(model).__name__}) has no AlexNet conv1..conv5 encoder to probe; "
            f"the linear probe reads the colorization AlexNet (alexnet_colorization*) and "
            f"split-brain models (splitbrain_alexnet*)")


def parse_layers(layers, model=None):
    """Validate layer names; "all" or a comma-separated string is accepted.

    Args:
        layers: "all", "conv4", "conv2,conv4" or a sequence of names.
        model: if given, the names must also be feature taps of this model.

    Returns:
        The names as a tuple in conv1..conv5 order, without repeats.
    """
    if isinstance(layers, str):
        layers = PROBE_LAYERS if layers.strip() == "all" else layers.split(",")
    names = [name.strip() for name in layers if name.strip()]
    valid = [name for name in PROBE_LAYERS
             if model is None or name in getattr(model, "feature_layers", ())]
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        what = f"unknown layer(s) {unknown}" if unknown else "no layer given"
        raise ProbeError(f"{what}; valid: {', '.join(valid)}, or all")
    return tuple(name for name in PROBE_LAYERS if name in names)


def encoder_input(model, rgb):
    """The raw colour channels ``model`` takes, from an sRGB batch (B, 3, H, W).

    ``rgb`` is uint8 (0..255, as the datasets serve it) or float in [0, 1]; both give the same
    values (uint8 L goes through :func:`splitbrain.color.lightness`'s lookup table). A
    1-channel model (the colorization AlexNet) gets L (B, 1, H, W) in [0, 100]; a 3-channel
    model (split-brain, either a whole model or one half) gets the full Lab (B, 3, H, W) and
    selects each half's channels itself.
    """
    if model.in_channels == 1:
        return color.lightness(rgb)
    if model.in_channels == 3:
        return color.rgb_to_lab(rgb)
    raise ProbeError(f"{type(model).__name__} takes {model.in_channels} channels; the probe "
                     f"feeds L (1 channel) or Lab (3 channels)")


def resize_features(x, size, mode="bilinear"):
    """Resize a map to size×size and flatten it: (B, C, h, w) -> (B, C * size * size).

    "bilinear" interpolates (the official probe's choice; plain interpolation, no
    anti-aliasing, so shrinking conv1 55×55 to 10×10 samples rather than averages);
    "avgpool" is adaptive average pooling (VISSL), which averages every input position.
    """
    if mode == "bilinear":
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    elif mode == "avgpool":
        x = F.adaptive_avg_pool2d(x, size)
    else:
        raise ProbeError(f"unknown resize mode {mode!r}; valid: {', '.join(RESIZE_MODES)}")
    return x.flatten(1)  # (B, C * size * size)


class FrozenEncoder:
    """A model's conv taps, frozen in eval mode, resized and flattened for linear probes.

    Not an ``nn.Module`` on purpose: a ``.train()`` meant for the heads can never reach it.

    Args:
        model: a colorization AlexNet or split-brain model (see :data:`PROBE_MODEL_TYPES`).
        layers: names among conv1..conv5 (or "all").
        resize: "bilinear" or "avgpool".
        precision: "fp32", "bf16" or "fp16" autocast of the encoder forward; the probe
            features are always returned in fp32.

    Attributes:
        layers: the probed layers, in conv1..conv5 order.
        dims: layer -> probe feature size, channels × PROBE_SIZES[layer]².
    """

    def __init__(self, model, layers="all", resize="bilinear", precision="fp32"):
        check_encoder(model)
        if resize not in RESIZE_MODES:
            raise ProbeError(f"unknown resize mode {resize!r}; valid: {', '.join(RESIZE_MODES)}")
        try:
            check_precision(precision)
        except ValueError as err:
            raise ProbeError(str(err)) from None
        self.model = model.eval().requires_grad_(False)
        self.layers = parse_layers(layers, model)
        self.resize, self.precision = resize, precision
        self.dims = {name: model.feature_channels[name] * PROBE_SIZES[name] ** 2
                     for name in self.layers}

    @property
    def device(self):
        return next(self.model.parameters()).device

    def to(self, device):
        self.model.to(device)
        return self

    def check_eval(self):
        """Raise ProtocolError if any module of the encoder is in training mode."""
        training = [name or "(root)" for name, m in self.model.named_modules() if m.training]
        if training:
            raise ProtocolError(f"the frozen encoder must stay in eval mode (BatchNorm "
                                f"statistics frozen), but {training[:3]} are training")

    @torch.no_grad()
    def __call__(self, rgb):
        """sRGB batch (B, 3, H, W), uint8 or float in [0, 1] -> {layer: (B, dims[layer]) fp32}."""
        self.check_eval()
        x = encoder_input(self.model, rgb)
        with autocast(rgb.device, self.precision):
            maps = self.model.forward_features(x, self.layers)  # layer -> (B, C, h, w)
        return {name: resize_features(m.float(), PROBE_SIZES[name], self.resize)
                for name, m in maps.items()}


# --- loading -----------------------------------------------------------------------------------

def load_checkpoint(path):
    """Read a checkpoint whose model the probe can read (task colorize or splitbrain).

    Raises:
        ProbeError: missing, unreadable, not a splitbrain checkpoint, or another task.
    """
    try:
        state = ckpt.load(path)
    except ckpt.CheckpointError as err:
        raise ProbeError(str(err)) from None
    if state.get("task") not in PROBED_TASKS:
        raise ProbeError(f"{path} is a checkpoint of task {state.get('task')!r}; the probe "
                         f"reads {' or '.join(PROBED_TASKS)} checkpoints")
    return state


def load_encoder(state=None, init="checkpoint", arch=None, seed=0, path="the checkpoint"):
    """Rebuild the model of a checkpoint, or a random-weights model of an architecture.

    Args:
        state: a checkpoint dict from :func:`splitbrain.checkpoint.load`, or None.
        init: "checkpoint" (the checkpoint's weights) or "random" (the baseline: the same
            architecture with freshly initialised weights, seeded by ``seed``).
        arch: model name for ``init="random"`` without a checkpoint.
        path: names the checkpoint in error messages.

    Returns:
        (model, spec) where spec is ``{"name", "kwargs"}``.

    Raises:
        ProbeError: nothing to build, an unknown architecture, weights that do not fit, or a
            model without an encoder.
    """
    if init not in INITS:
        raise ProbeError(f"unknown init {init!r}; valid: {', '.join(INITS)}")
    if state is None:
        if init == "checkpoint":
            raise ProbeError("give a checkpoint (--ckpt FILE), or --init random --arch NAME "
                             "for the random-weights baseline")
        if not arch:
            raise ProbeError("--init random needs --arch NAME (e.g. alexnet_colorization_small) "
                             "or a checkpoint whose architecture to copy")
        source, state = "--arch", {"model": {"name": arch, "kwargs": {}}}
    else:
        spec = state.get("model")
        if not isinstance(spec, dict) or "name" not in spec:
            raise ProbeError(f"{path} (task {state.get('task')!r}) records no model; "
                             f"it holds no encoder to probe")
        if arch and arch != spec["name"]:
            raise ProbeError(f"--arch {arch} contradicts the checkpoint's model "
                             f"{spec['name']}; leave --arch out to use the checkpoint's")
        source = path
    spec = {"name": state["model"]["name"], "kwargs": dict(state["model"].get("kwargs") or {})}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the random init; overwritten by the checkpoint's weights
        try:
            model = ckpt.build_model(state, source, weights=(init == "checkpoint"))
        except ckpt.CheckpointError as err:
            raise ProbeError(str(err)) from None
    check_encoder(model, f"model {spec['name']!r}")
    return model, spec


def open_encoder(ckpt_path=None, init="checkpoint", arch=None, layers="all", resize="bilinear",
                 precision="fp32", seed=0):
    """The frozen encoder of a checkpoint file (or of ``arch`` with random weights).

    Every way the request can be wrong is a ProbeError here, before any work.

    Returns:
        (FrozenEncoder on the CPU, model spec ``{"name", "kwargs"}``, checkpoint dict or None).
    """
    state = load_checkpoint(ckpt_path) if ckpt_path else None
    model, spec = load_encoder(state, init, arch, seed, ckpt_path or "the checkpoint")
    return FrozenEncoder(model, layers, resize, precision), spec, state


# --- the protocol's checks on the frozen encoder --------------------------------------------

def snapshot(model):
    """A CPU copy of every parameter and buffer (BatchNorm statistics, non-persistent too)."""
    return {name: t.detach().to("cpu", copy=True)
            for name, t in itertools.chain(model.named_parameters(), model.named_buffers())}


def check_unchanged(model, before):
    """Raise ProtocolError unless every parameter and buffer equals ``before`` bitwise."""
    now = dict(itertools.chain(model.named_parameters(), model.named_buffers()))
    changed = sorted(name for name, t in before.items()
                     if name not in now or not torch.equal(now[name].detach().cpu(), t))
    if changed or set(now) != set(before):
        raise ProtocolError(f"the frozen encoder changed during probing: {len(changed)} "
                            f"tensors differ (e.g. {changed[:3]})")


def check_no_encoder_grad(encoder):
    """Raise ProtocolError if a gradient reached the encoder."""
    reached = [name for name, p in encoder.model.named_parameters() if p.grad is not None]
    if reached:
        raise ProtocolError(f"gradients reached the frozen encoder: {reached[:3]}")


def check_frozen(encoder):
    """Raise ProtocolError if an encoder parameter is trainable."""
    trainable = [name for name, p in encoder.model.named_parameters() if p.requires_grad]
    if trainable:
        raise ProtocolError(f"encoder parameters must be frozen, but {trainable[:3]} "
                            f"require grad")
