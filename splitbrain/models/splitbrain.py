"""Split-brain autoencoder: the input channels split between sub-networks that predict each other.

A split is a list of halves, each ``{"inputs": [...], "targets": [...], "num_classes": Q,
"head": "cl" | "reg"}`` with channel indices into the model's input. The default is Lab:
L -> ab over the 313 ab bins, and ab -> L over 50 lightness bins. The halves' inputs must
partition the input channels. A "reg" head outputs one value per target channel
(``num_classes == len(targets)``, filled in when left out).

Each half is a half-width fully convolutional AlexNet (see ``alexnet.py``): conv1..conv5 of
48, 128, 192, 192, 128 channels, stride-1 pool5, fc6 a 6×6 convolution with dilation 2, fc7,
2048 wide, BatchNorm after every convolution, and its own 1×1 head. The representation at a
layer is the channel concatenation of the halves: 96, 256, 384, 384, 256 at conv1..conv5.

Head resolution: 10×10 for 180×180 inputs with the default ``padding="alexnet"`` (which keeps
the classic 55/27/13 maps at 227 for the probe); 12×12, the paper's, with
``padding="official"``. Targets are resampled to whatever the heads produce.
"""

import torch
import torch.nn as nn

from .. import color
from .alexnet import ALEXNET_WIDTHS, CIFAR_FC_WIDTH, CIFAR_WIDTHS, CONV_LAYERS, AlexNetFCN
from .layers import check_choice, check_l_norm

HALF_WIDTHS = tuple(w // 2 for w in ALEXNET_WIDTHS)  # (48, 128, 192, 192, 128)
HALF_FC_WIDTH = 2048
SMALL_HALF_WIDTHS = tuple(w // 4 for w in HALF_WIDTHS)  # (12, 32, 48, 48, 32)
SMALL_HALF_FC_WIDTH = 512
CIFAR_HALF_WIDTHS = tuple(w // 2 for w in CIFAR_WIDTHS)  # (12, 32, 48, 48, 32)
CIFAR_HALF_FC_WIDTH = CIFAR_FC_WIDTH // 2
WIDTHS = ("half", "full")  # of each half: half the single network's (the paper) | all of it

# The one table of the Lab split's halves: name -> what it sees, what it predicts, its bins.
LAB_HALVES = {
    "l2ab": {"inputs": color.L_CHANNELS, "targets": color.AB_CHANNELS,
             "num_classes": color.NUM_AB_BINS},
    "ab2l": {"inputs": color.AB_CHANNELS, "targets": color.L_CHANNELS,
             "num_classes": color.NUM_L_BINS},
}
LAB_SPLIT = tuple(dict(spec, head="cl") for spec in LAB_HALVES.values())


def half_name(spec):
    """"l2ab" or "ab2l" for a half of the Lab split (matched on its channels), else None."""
    for name, half in LAB_HALVES.items():
        if list(spec["inputs"]) == half["inputs"] and list(spec["targets"]) == half["targets"]:
            return name
    return None


def find_half(specs, name):
    """Index of the Lab half ``name`` ("l2ab" / "ab2l") among a split's half specs.

    Raises:
        ValueError: an unknown name, or a split without that half.
    """
    check_choice("half name", name, tuple(LAB_HALVES))
    for i, spec in enumerate(specs):
        if half_name(spec) == name:
            return i
    half = LAB_HALVES[name]
    raise ValueError(f"this split has no {name} half (inputs {half['inputs']}, targets "
                     f"{half['targets']})")


def lab_normalization(l_norm="unit"):
    """Per-channel (shift, scale) of raw Lab: L as ``color.normalize_l``, ab / AB_SCALE."""
    check_l_norm(l_norm)
    shift, scale = color.L_NORMS[l_norm]
    return [shift, 0.0, 0.0], [scale, color.AB_SCALE, color.AB_SCALE]


def check_half(half, in_channels):
    """Validate one half of a split; returns it with defaults filled in (lists of ints)."""
    unknown = sorted(set(half) - {"inputs", "targets", "num_classes", "head"})
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in a half; valid: inputs, targets, "
                         f"num_classes, head")
    spec = {}
    for key in ("inputs", "targets"):
        if not half.get(key):
            raise ValueError(f"a half needs a non-empty {key!r} list of channel indices, got "
                             f"{half.get(key)!r}")
        channels = [int(c) for c in half[key]]
        bad = [c for c in channels if not 0 <= c < in_channels]
        if bad:
            raise ValueError(f"{key} {channels}: channel(s) {bad} outside 0..{in_channels - 1}")
        if len(set(channels)) != len(channels):
            raise ValueError(f"{key} {channels} lists a channel twice")
        spec[key] = channels
    head = half.get("head", "cl")
    color.check_head(head)
    num_classes = half.get("num_classes")
    if head == "reg":
        if num_classes not in (None, len(spec["targets"])):
            raise ValueError(f"a 'reg' head outputs one value per target channel: num_classes "
                             f"must be {len(spec['targets'])}, got {num_classes}")
        num_classes = len(spec["targets"])
    elif num_classes is None or int(num_classes) < 2:
        raise ValueError(f"a 'cl' head needs num_classes >= 2 (the number of bins), "
                         f"got {num_classes!r}")
    spec.update(num_classes=int(num_classes), head=head)
    return spec


def check_split(halves, in_channels):
    """Validate a split: every half valid, and each input channel seen by exactly one half.

    Returns:
        The halves as a list of dicts with defaults filled in.
    """
    if not halves:
        raise ValueError("a split needs at least one half")
    specs = []
    for i, half in enumerate(halves):
        try:
            specs.append(check_half(half, in_channels))
        except ValueError as err:
            raise ValueError(f"half {i}: {err}") from None
    owner = {}
    for i, spec in enumerate(specs):
        for c in spec["inputs"]:
            if c in owner:
                raise ValueError(f"input channel {c} is seen by halves {owner[c]} and {i}; "
                                 f"each channel must be the input of exactly one half")
            owner[c] = i
    unseen = sorted(set(range(in_channels)) - set(owner))
    if unseen:
        raise ValueError(f"input channel(s) {unseen} are seen by no half; the halves' inputs "
                         f"must partition channels 0..{in_channels - 1}")
    return specs


class SplitBrainHalf(AlexNetFCN):
    """One sub-network of a split-brain autoencoder: its input channels -> its targets.

    Takes the full raw input (e.g. Lab, (B, 3, H, W)), selects its own channels and normalises
    them, so it can be trained alone and later joined with the others by
    :meth:`SplitBrain.from_halves`.

    Args:
        inputs: channel indices it sees.
        targets: channel indices it predicts.
        num_classes: output channels of the head: the number of bins for "cl" (required);
            ``len(targets)`` for "reg" (filled in when left out).
        head: "cl" (logits over bins) or "reg" (normalised values of the targets).
        in_channels: channels of the full input.
        widths, fc_width, norm, blur, padding: as for :class:`AlexNetFCN`.
        l_norm: L normalisation of the default Lab ``channel_shift``/``channel_scale``.
        channel_shift, channel_scale: per input channel, ``(x - shift) / scale`` is what the
            network sees; default Lab (see :func:`lab_normalization`). Give both for other
            inputs (e.g. RGB + depth).

    Attributes:
        spec: ``{"inputs", "targets", "num_classes", "head"}`` of this half.
        arch: the remaining constructor arguments; halves of one model must agree on them.
    """

    def __init__(self, inputs, targets, num_classes=None, head="cl", in_channels=3,
                 widths=HALF_WIDTHS, fc_width=HALF_FC_WIDTH, norm="bn", blur=1,
                 padding="alexnet", l_norm="unit", channel_shift=None, channel_scale=None):
        spec = check_half({"inputs": inputs, "targets": targets, "num_classes": num_classes,
                           "head": head}, in_channels)
        shift, scale = _channel_normalization(in_channels, l_norm, channel_shift, channel_scale)
        super().__init__(len(spec["inputs"]), spec["num_classes"], widths, fc_width, norm, blur,
                         padding)
        self.in_channels = in_channels  # the full input; the encoder sees len(inputs) of them
        self.spec = spec
        self.inputs, self.targets, self.head_type = spec["inputs"], spec["targets"], spec["head"]
        self.l_norm = l_norm
        self.arch = {"in_channels": in_channels, "widths": tuple(widths), "fc_width": fc_width,
                     "norm": norm, "blur": blur, "padding": padding, "l_norm": l_norm,
                     "channel_shift": tuple(shift), "channel_scale": tuple(scale)}
        # Derived from the constructor arguments, so kept out of the state dict.
        self.register_buffer("input_shift", _per_channel(shift, self.inputs), persistent=False)
        self.register_buffer("input_scale", _per_channel(scale, self.inputs), persistent=False)

    def forward_features(self, x, layers=CONV_LAYERS):
        """Named activations of this half for the full raw input x (B, in_channels, H, W).

        See :meth:`AlexNetFCN.forward_features`.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected the full input (B, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        x = color.select_channels(x, self.inputs)  # (B, len(inputs), H, W)
        x = (x - self.input_shift) / self.input_scale
        return super().forward_features(x, layers)


class SplitBrain(nn.Module):
    """Split-brain autoencoder: sub-networks that each predict the channels they do not see.

    Zhang, Isola, Efros, "Split-Brain Autoencoders: Unsupervised Learning by Cross-Channel
    Prediction", CVPR 2017.

    Args:
        halves: the split, a list of ``{"inputs", "targets", "num_classes", "head"}`` dicts
            (default: L -> ab over 313 bins, ab -> L over 50 bins, both "cl").
        in_channels: channels of the input (3 for Lab).
        widths, fc_width, norm, blur, padding: architecture of every half, as for
            :class:`SplitBrainHalf` (default: the paper's half-width AlexNet).
        l_norm, channel_shift, channel_scale: input normalisation, as for
            :class:`SplitBrainHalf`.

    Input: raw channels, (B, in_channels, H, W). ``forward`` returns one logits tensor per
    half, (B, num_classes[i], h, w); ``forward_features`` the per-layer concatenation of the
    halves' activations.

    Attributes:
        halves: ``nn.ModuleList`` of :class:`SplitBrainHalf`.
        split: the halves' specs with defaults filled in.
        num_classes: output channels per half.
    """

    def __init__(self, halves=LAB_SPLIT, in_channels=3, widths=HALF_WIDTHS,
                 fc_width=HALF_FC_WIDTH, norm="bn", blur=1, padding="alexnet",
                 l_norm="unit", channel_shift=None, channel_scale=None):
        super().__init__()
        self.split = check_split(halves, in_channels)
        arch = dict(in_channels=in_channels, widths=widths, fc_width=fc_width, norm=norm,
                    blur=blur, padding=padding, l_norm=l_norm, channel_shift=channel_shift,
                    channel_scale=channel_scale)
        self.halves = nn.ModuleList(SplitBrainHalf(**spec, **arch) for spec in self.split)
        self.in_channels, self.l_norm = in_channels, l_norm
        self.num_classes = [spec["num_classes"] for spec in self.split]
        self.feature_layers = self.halves[0].feature_layers
        self.feature_channels = {name: sum(h.feature_channels[name] for h in self.halves)
                                 for name in self.feature_layers}

    @classmethod
    def from_halves(cls, *halves):
        """Join separately built (or trained) halves into one model.

        Raises:
            ValueError: the halves differ in architecture or input normalisation, or their
                inputs do not partition the input channels.
        """
        if not halves or not all(isinstance(h, SplitBrainHalf) for h in halves):
            raise TypeError("from_halves takes SplitBrainHalf modules")
        arch = halves[0].arch
        for i, half in enumerate(halves[1:], start=1):
            diff = [f"{k}: {half.arch[k]} vs {arch[k]}" for k in arch if half.arch[k] != arch[k]]
            if diff:
                raise ValueError(f"half {i} does not match half 0 ({'; '.join(diff)}); the "
                                 f"halves of one model must share their architecture")
        # Build the shell without allocating weights (this also validates the split), then
        # put the given halves in place of its own.
        with torch.device("meta"):
            model = cls([h.spec for h in halves], **arch)
        model.halves = nn.ModuleList(halves)
        return model

    def half(self, which):
        """A half by index, or for the Lab split by name: "l2ab" or "ab2l"."""
        if not isinstance(which, str):
            return self.halves[which]
        return self.halves[find_half(self.split, which)]

    def forward_features(self, x, layers=CONV_LAYERS):
        """Per layer, the channel concatenation of every half's activation, in half order.

        Args:
            x: raw input, (B, in_channels, H, W).
            layers: names from ``self.feature_layers`` (a single name may be a string).

        Returns:
            dict name -> (B, feature_channels[name], h, w), in the order requested.
        """
        per_half = [h.forward_features(x, layers) for h in self.halves]
        return {name: torch.cat([f[name] for f in per_half], dim=1) for name in per_half[0]}

    def forward(self, x):
        """Raw input (B, in_channels, H, W) -> list of logits, one (B, Q_i, h, w) per half."""
        return [h(x) for h in self.halves]


def _channel_normalization(in_channels, l_norm, shift, scale):
    if shift is None and scale is None:
        if in_channels != 3:
            raise ValueError(f"the default normalisation is Lab's (3 channels); give "
                             f"channel_shift and channel_scale for {in_channels} channels")
        return lab_normalization(l_norm)
    if shift is None or scale is None:
        raise ValueError("give both channel_shift and channel_scale, or neither (Lab)")
    if len(shift) != in_channels or len(scale) != in_channels:
        raise ValueError(f"channel_shift and channel_scale need {in_channels} values each, got "
                         f"{len(shift)} and {len(scale)}")
    if any(s == 0 for s in scale):
        raise ValueError(f"channel_scale must be non-zero, got {list(scale)}")
    return [float(s) for s in shift], [float(s) for s in scale]


def _per_channel(values, channels):
    return torch.tensor([values[c] for c in channels]).view(1, -1, 1, 1)  # (1, C, 1, 1)


def _build(kwargs, half, heads, width="half"):
    check_choice("width", width, WIDTHS)
    if width == "full":  # each half as wide as the single network: a cross-channel encoder alone
        kwargs = dict(kwargs, widths=tuple(2 * w for w in kwargs.get("widths", HALF_WIDTHS)),
                      fc_width=2 * kwargs.get("fc_width", HALF_FC_WIDTH))
    in_channels = kwargs.get("in_channels", 3)
    halves = [dict(h) for h in kwargs.pop("halves", LAB_SPLIT)]
    if heads is not None:
        if len(heads) != len(halves):
            raise ValueError(f"heads gives {len(heads)} entries for {len(halves)} halves")
        for h, head in zip(halves, heads):
            h["head"] = head
            if head == "reg":
                h.pop("num_classes", None)  # one value per target channel
    if half in (None, "both"):
        return SplitBrain(halves, **kwargs)
    split = check_split(halves, in_channels)  # a half alone is still one of a valid split
    if isinstance(half, str):
        check_choice("half", half, ("both",) + tuple(LAB_HALVES))
        spec = split[find_half(split, half)]
    else:
        spec = split[half]
    return SplitBrainHalf(**spec, **kwargs)


def splitbrain_alexnet(half=None, heads=None, width="half", **kwargs):
    """The paper's split-brain AlexNet (two half-width AlexNets), or one of its halves.

    Args:
        half: None or "both" for the whole model; "l2ab", "ab2l" (Lab split) or an index
            for one :class:`SplitBrainHalf` alone.
        heads: optional "cl" / "reg" per half, overriding the split's heads.
        width: "half" (each half half as wide as AlexNet, the paper's split) or "full" (each
            half as wide as AlexNet: how the paper trains a single cross-channel encoder,
            e.g. ab -> L alone, to compare it with whole networks).
        **kwargs: :class:`SplitBrain` arguments (``halves``, ``blur``, ``padding``, ...).
    """
    return _build(kwargs, half, heads, width)


def splitbrain_alexnet_small(half=None, heads=None, width="half", **kwargs):
    """Split-brain AlexNet with a quarter of the half widths and 512-wide fc6/fc7, for CPU demos."""
    kwargs = {"widths": SMALL_HALF_WIDTHS, "fc_width": SMALL_HALF_FC_WIDTH, **kwargs}
    return _build(kwargs, half, heads, width)


def splitbrain_alexnet_cifar(half=None, heads=None, width="half", **kwargs):
    """Split-brain AlexNet for 32×32 images: halves of :func:`alexnet_colorization_cifar`.

    Halves of 12, 32, 48, 48, 32 channels and 128-wide fc6/fc7 (together the widths of the
    quarter-width AlexNet), in the "cifar" layout unless ``padding`` says otherwise.
    """
    kwargs = {"widths": CIFAR_HALF_WIDTHS, "fc_width": CIFAR_HALF_FC_WIDTH, "padding": "cifar",
              **kwargs}
    return _build(kwargs, half, heads, width)
