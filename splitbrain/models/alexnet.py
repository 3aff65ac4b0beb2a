"""AlexNet for representation learning: the conv1..conv5 encoder and its fully convolutional net.

The encoder's feature taps "conv1".."conv5" are what the linear probe reads. For a 227×227
input and the default ``padding="alexnet"`` they are the classic maps: conv1 55×55, conv2 27×27,
conv3-conv5 13×13.

The fully convolutional net follows the official Caffe colorization AlexNet
(``train_alexnet/train_val.prototxt`` of Zhang et al.): pool5 at stride 1 keeps conv5's
resolution, fc6 is a 6×6 convolution with dilation 2 (padding 5, so the size is kept), fc7 a
1×1 convolution, and a 1×1 head predicts a class per position. Output size for an H×H input:

    padding="alexnet":  conv1 floor((H - 11) / 4) + 1, pools without padding.
                        227 -> 13×13, 180 -> 10×10, 96 -> 4×4 (inputs need at least 35 px)
    padding="official": conv1 padded by 5, pool1/pool2 by 1, as the official training net.
                        180 -> 12×12 (the split-brain paper's output), 227 -> 15×15,
                        96 -> 6×6
    padding="cifar":    for 32×32 images: conv1 5×5 at stride 1 (padded by 2), pool1/pool2
                        padded by 1, fc6 a 3×3 convolution. 32 -> 8×8 (conv1 32×32, conv2
                        16×16, conv3-conv5 8×8): the 1/4-resolution output of the
                        colorization nets, without upsampling the images.

"alexnet" and "official" use the same weights, so a net trained with one can be run with the
other; "cifar" has other kernel shapes.
"""

from dataclasses import dataclass

import torch.nn as nn

from .. import color
from .layers import (NORMS, check_blur, check_choice, check_l_norm, conv_bn_relu, make_pool,
                     run_taps)

ALEXNET_WIDTHS = (96, 256, 384, 384, 256)
SMALL_WIDTHS = tuple(w // 4 for w in ALEXNET_WIDTHS)
FC_WIDTH = 4096
SMALL_FC_WIDTH = 512
CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")

CIFAR_WIDTHS = SMALL_WIDTHS  # (24, 64, 96, 96, 64): the quarter-width net suits 32×32 images
CIFAR_FC_WIDTH = 256


@dataclass(frozen=True)
class Layout:
    """Kernel shapes of a padding scheme (see the module docstring)."""

    conv1: tuple  # (kernel, stride, padding)
    pool_padding: int  # of pool1 and pool2
    fc6: tuple  # (kernel, dilation, padding): keeps conv5's size


PADDINGS = {"alexnet": Layout((11, 4, 0), 0, (6, 2, 5)),
            "official": Layout((11, 4, 5), 1, (6, 2, 5)),
            "cifar": Layout((5, 1, 2), 1, (3, 1, 1))}


def _lrn():
    # Caffe AlexNet's LRN: 5 channels, alpha 1e-4 (divided by the size, as Caffe does), beta 0.75.
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


class _Tapped(nn.Module):
    """A network whose ``_stages()`` list its named activations (``feature_layers``)."""

    def forward_features(self, x, layers=CONV_LAYERS):
        """Named post-ReLU activations (``self.feature_layers``); the forward stops after the last one requested.

        Args:
            x: normalised input, (B, in_channels, H, W).
            layers: names from ``self.feature_layers`` (a single name may be a string).

        Returns:
            dict name -> (B, feature_channels[name], h, w), in the order requested.
        """
        return run_taps(x, self._stages(), layers)


class AlexNetEncoder(_Tapped):
    """conv1..conv5 of AlexNet (Krizhevsky, Sutskever, Hinton, NeurIPS 2012), without groups.

    conv1 11×11 stride 4 -> pool 3/2 -> conv2 5×5 -> pool 3/2 -> conv3, conv4, conv5 3×3. Each
    convolution is followed by BatchNorm then ReLU (``norm="bn"``), or by ReLU then LRN after
    conv1 and conv2 only (``norm="lrn"``, classic AlexNet), or by ReLU alone (``norm="none"``).
    pool5 is not part of the encoder: its stride depends on the net built on top.

    The encoder takes an already normalised input; the models built on it normalise raw
    colour channels themselves.

    Args:
        in_channels: input channels (1 for L, 2 for ab, 3 for Lab, ...).
        widths: output channels of conv1..conv5.
        norm: "bn", "lrn" or "none".
        blur: anti-aliasing filter size of pool1 and pool2: 1 (plain max pooling), 2, 3 or 5.
        padding: "alexnet", "official" or "cifar"; see the module docstring.
    """

    def __init__(self, in_channels=1, widths=ALEXNET_WIDTHS, norm="bn", blur=1,
                 padding="alexnet"):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"widths needs 5 entries (conv1..conv5), got {len(widths)}")
        check_choice("norm", norm, NORMS)
        check_blur(blur)
        check_choice("padding", padding, tuple(PADDINGS))
        layout = PADDINGS[padding]
        pool_pad = layout.pool_padding
        w1, w2, w3, w4, w5 = widths
        self.in_channels = in_channels
        kernel, stride, pad = layout.conv1
        self.conv1 = conv_bn_relu(in_channels, w1, kernel, stride=stride, padding=pad, norm=norm)
        self.norm1 = _lrn() if norm == "lrn" else nn.Identity()
        self.pool1 = make_pool(blur, 3, 2, pool_pad)
        self.conv2 = conv_bn_relu(w1, w2, 5, padding=2, norm=norm)
        self.norm2 = _lrn() if norm == "lrn" else nn.Identity()
        self.pool2 = make_pool(blur, 3, 2, pool_pad)
        self.conv3 = conv_bn_relu(w2, w3, 3, padding=1, norm=norm)
        self.conv4 = conv_bn_relu(w3, w4, 3, padding=1, norm=norm)
        self.conv5 = conv_bn_relu(w4, w5, 3, padding=1, norm=norm)
        self.feature_layers = CONV_LAYERS
        self.feature_channels = dict(zip(CONV_LAYERS, widths))

    def _stages(self):
        # Each tap is the ReLU output of its convolution, before LRN and pooling.
        return [("conv1", [self.conv1]),
                ("conv2", [self.norm1, self.pool1, self.conv2]),
                ("conv3", [self.norm2, self.pool2, self.conv3]),
                ("conv4", [self.conv4]),
                ("conv5", [self.conv5])]

    def forward(self, x):
        """Normalised input -> conv5 activations (B, widths[4], h, w)."""
        return self.forward_features(x, "conv5")["conv5"]


class AlexNetFCN(_Tapped):
    """AlexNet encoder + fc6, fc7 as convolutions + a 1×1 head; fully convolutional.

    The shared body of the colorization AlexNet, of each split-brain half and of the
    autoencoder. It takes an
    already normalised input; subclasses override ``forward_features`` to normalise raw colour
    channels first (``forward`` goes through it).

    Args:
        in_channels: channels the encoder sees.
        num_classes: channels of the head's output.
        widths: conv1..conv5 output channels.
        fc_width: channels of fc6 and fc7.
        norm, blur, padding: as for :class:`AlexNetEncoder`; with ``norm="bn"`` fc6 and fc7
            are followed by BatchNorm too.
    """

    def __init__(self, in_channels, num_classes, widths=ALEXNET_WIDTHS, fc_width=FC_WIDTH,
                 norm="bn", blur=1, padding="alexnet"):
        super().__init__()
        self.encoder = AlexNetEncoder(in_channels, widths, norm, blur, padding)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.pool5 = make_pool(blur, 3, 1, padding=1)  # stride 1: keeps conv5's resolution
        kernel, dilation, pad = PADDINGS[padding].fc6
        self.fc6 = conv_bn_relu(widths[4], fc_width, kernel, padding=pad, dilation=dilation,
                                norm=norm)
        self.fc7 = conv_bn_relu(fc_width, fc_width, 1, norm=norm)
        self.head = nn.Conv2d(fc_width, num_classes, 1)
        self.feature_layers = CONV_LAYERS + ("fc6", "fc7")
        self.feature_channels = {**self.encoder.feature_channels, "fc6": fc_width, "fc7": fc_width}

    def _stages(self):
        return self.encoder._stages() + [("fc6", [self.pool5, self.fc6]), ("fc7", [self.fc7])]

    def forward(self, x):
        """Input -> logits (B, num_classes, h, w) at conv5's resolution."""
        return self.head(self.forward_features(x, "fc7")["fc7"])


class AlexNetColorization(AlexNetFCN):
    """AlexNet trained to colorize: L -> 313 ab classes per position.

    The AlexNet variant of Zhang, Isola, Efros, "Colorful Image Colorization", ECCV 2016, used
    for its representation-learning experiments (BatchNorm after every convolution).

    Args:
        num_classes: 313 ab bins, or 2 for an ab regression head.
        widths, fc_width, norm, blur, padding: as for :class:`AlexNetFCN`.
        l_norm: "unit" ((L - 50) / 100) or "center" (L - 50, the Caffe nets).

    Input: raw L, (B, 1, H, W). Output: logits (B, num_classes, h, w); for 227 px, h = 13.
    """

    def __init__(self, num_classes=color.NUM_AB_BINS, widths=ALEXNET_WIDTHS, fc_width=FC_WIDTH,
                 norm="bn", blur=1, padding="alexnet", l_norm="unit"):
        check_l_norm(l_norm)
        super().__init__(1, num_classes, widths, fc_width, norm, blur, padding)
        self.l_norm = l_norm

    def forward_features(self, L, layers=CONV_LAYERS):
        """Named activations of raw L (B, 1, H, W); see :meth:`_Tapped.forward_features`."""
        if L.shape[1] != 1:
            raise ValueError(f"AlexNetColorization takes L alone, (B, 1, H, W); "
                             f"got {tuple(L.shape)}")
        return super().forward_features(color.normalize_l(L, self.l_norm), layers)


def alexnet_colorization(**kwargs):
    """Full-width colorization AlexNet (96..256 convolutions, 4096-wide fc6/fc7)."""
    return AlexNetColorization(**kwargs)


def alexnet_colorization_small(**kwargs):
    """Colorization AlexNet with a quarter of the conv widths and 512-wide fc6/fc7."""
    return AlexNetColorization(**{"widths": SMALL_WIDTHS, "fc_width": SMALL_FC_WIDTH, **kwargs})


def alexnet_colorization_cifar(**kwargs):
    """Colorization AlexNet for 32×32 images: quarter widths, 256-wide fc6/fc7, "cifar" layout."""
    return AlexNetColorization(**{"widths": CIFAR_WIDTHS, "fc_width": CIFAR_FC_WIDTH,
                                  "padding": "cifar", **kwargs})
