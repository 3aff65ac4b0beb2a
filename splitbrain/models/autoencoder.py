"""The autoencoder baselines of the split-brain paper: Lab -> Lab through the same AlexNet.

Zhang, Isola, Efros, "Split-Brain Autoencoders", CVPR 2017, Table 2 compares the split-brain
model with a plain autoencoder and a denoising ("drop") autoencoder trained on the same data
(docs/reference.md §4a). Here the autoencoder is a :class:`SplitBrainHalf` that sees all three
Lab channels and regresses all three: the same encoder (conv1..conv5, the taps the probe
reads), the same fc6/fc7 and 1×1 head at conv5's resolution as every cross-channel network, so
the rows of the comparison differ only in what the network sees and predicts. The decoder is
that head: it reconstructs Lab at conv5's resolution (a quarter of a 32×32 input in the
"cifar" layout), and the network's downsampling is the bottleneck that keeps it from copying
its input. The corruption of the denoising variant lives in the objective
(:class:`splitbrain.objectives.AutoencoderObjective`), not in the network.
"""

from .. import color
from .alexnet import (ALEXNET_WIDTHS, CIFAR_FC_WIDTH, CIFAR_WIDTHS, FC_WIDTH, SMALL_FC_WIDTH,
                      SMALL_WIDTHS)
from .splitbrain import SplitBrainHalf

LAB_CHANNELS = color.L_CHANNELS + color.AB_CHANNELS  # [0, 1, 2]


def _autoencoder(widths, fc_width, **kwargs):
    return SplitBrainHalf(inputs=LAB_CHANNELS, targets=LAB_CHANNELS, head="reg",
                          **{"widths": widths, "fc_width": fc_width, **kwargs})


def autoencoder_alexnet(**kwargs):
    """Lab -> Lab AlexNet autoencoder at full AlexNet widths (4096-wide fc6/fc7)."""
    return _autoencoder(ALEXNET_WIDTHS, FC_WIDTH, **kwargs)


def autoencoder_alexnet_small(**kwargs):
    """The autoencoder at quarter widths (the widths of ``alexnet_colorization_small``)."""
    return _autoencoder(SMALL_WIDTHS, SMALL_FC_WIDTH, **kwargs)


def autoencoder_alexnet_cifar(**kwargs):
    """The autoencoder for 32×32 images, as wide as ``alexnet_colorization_cifar``."""
    return _autoencoder(CIFAR_WIDTHS, CIFAR_FC_WIDTH, **{"padding": "cifar", **kwargs})


def is_autoencoder(model):
    """Whether ``model`` reconstructs the channels it sees (a Lab -> Lab half)."""
    spec = getattr(model, "spec", None)
    return bool(spec) and list(spec["inputs"]) == LAB_CHANNELS == list(spec["targets"])
