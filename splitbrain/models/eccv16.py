"""The ECCV16 colorization network: L -> a 313-way ab distribution at 1/4 resolution.

Module layout and state-dict keys match the official PyTorch release
(``colorization_release_v2``) exactly, so its weights load with no renaming:

    model1..model7  nn.Sequential blocks of [Conv, ReLU] * n, then BatchNorm2d at index 2n
                    (model1/2: n = 2, BN at 4; model3..7: n = 3, BN at 6)
    model8          [ConvTranspose2d(512, 256, 4, s2, p1), ReLU, Conv 3×3, ReLU, Conv 3×3, ReLU,
                    Conv 1×1 256 -> 313]  (convolutions at indices 0, 2, 4, 6)

The release holds one more key, ``model_out.weight`` of shape (2, 313, 1, 1): the 313 ab bin
centres divided by 110, used there to decode the distribution. Decoding lives in the colour
core, so that key is not part of this network; a loader drops it (and may read the bin centres
from it), as ``splitbrain.colorize.from_official_eccv16`` does. The release has no BatchNorm
``num_batches_tracked`` buffers; ``load_state_dict`` fills in missing ones by itself.

With ``blur`` > 1 the three strided convolutions become stride-1 convolution + ReLU + blur
pool (anti-aliased, filter size ``blur``), which shifts the BatchNorm index of blocks 1-3 by
one: such a model no longer matches the release keys, by design.
"""

import torch
import torch.nn as nn

from .. import color
from .layers import check_blur, check_l_norm, make_strided_conv, run_taps

# Output channels of blocks 1..8 (block 8 before the 1×1 classifier).
ECCV16_WIDTHS = (64, 128, 256, 512, 512, 512, 512, 256)
ECCV16_SMALL_WIDTHS = tuple(w // 4 for w in ECCV16_WIDTHS)

# Per block 1..7: (number of 3×3 convs, stride of the last one, dilation).
_BLOCKS = ((2, 2, 1), (2, 2, 1), (3, 2, 1), (3, 1, 1), (3, 1, 2), (3, 1, 2), (3, 1, 1))


class ECCV16(nn.Module):
    """Colorization network of Zhang, Isola, Efros, "Colorful Image Colorization", ECCV 2016.

    A VGG-style stack without pooling: blocks of 3×3 conv + ReLU, BatchNorm at the end of each
    of blocks 1-7, strided convolutions in blocks 1-3 (resolution 1/8), dilation 2 in blocks 5
    and 6, and a 4×4 transposed convolution back to 1/4 resolution in block 8.

    Args:
        num_classes: output channels: 313 ab bins, or 2 for an ab regression head.
        widths: output channels of blocks 1..8 (the default is the published network).
        l_norm: how raw L in [0, 100] is normalised: "unit" ((L - 50) / 100, the PyTorch
            release) or "center" (L - 50, the Caffe nets).
        blur: anti-aliasing filter size: 1 (the published strided convolutions), 2, 3 or 5.
        hints: take user colour hints (Zhang, Zhu et al., SIGGRAPH 2017): the input is four
            channels, L, the hint ab (0 where none) and the hint mask (1 where a hint is
            given; see :mod:`splitbrain.hints`), and the output is 2 + num_classes channels:
            ab / 110 (a regression, the colorization) then the logits of the ab distribution
            (used to suggest colours). The official code's input scaling: ab / 110, mask -
            0.5.

    Input: raw L, (B, 1, H, W). Output: logits (B, num_classes, H/4, W/4) for H, W divisible
    by 8 (otherwise ceil(ceil(ceil(H/2)/2)/2) * 2).

    Feature taps (``forward_features``): "conv1".."conv7" are the outputs of blocks 1..7 (the
    last ReLU of the block, then its BatchNorm); "conv8" is the last ReLU of block 8, the
    input of the classifier.
    """

    def __init__(self, num_classes=color.NUM_AB_BINS, widths=ECCV16_WIDTHS, l_norm="unit",
                 blur=1, hints=False):
        super().__init__()
        if len(widths) != 8:
            raise ValueError(f"widths needs 8 entries (blocks 1..8), got {len(widths)}")
        check_l_norm(l_norm)
        check_blur(blur)
        self.num_classes, self.l_norm, self.hints = num_classes, l_norm, bool(hints)
        self.in_channels = 4 if hints else 1
        out_channels = num_classes + 2 if hints else num_classes

        cin = self.in_channels
        for i, (n_convs, stride, dilation) in enumerate(_BLOCKS, start=1):
            cout = widths[i - 1]
            layers = []
            for j in range(n_convs):
                if j == n_convs - 1 and stride > 1:
                    layers += make_strided_conv(blur, cin, cout, stride)
                else:
                    layers += [nn.Conv2d(cin, cout, 3, 1, padding=dilation, dilation=dilation),
                               nn.ReLU(inplace=True)]
                cin = cout
            layers.append(nn.BatchNorm2d(cout))
            setattr(self, f"model{i}", nn.Sequential(*layers))

        w8 = widths[7]
        self.model8 = nn.Sequential(
            nn.ConvTranspose2d(cin, w8, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w8, w8, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w8, w8, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w8, out_channels, 1),
        )
        self.feature_layers = tuple(f"conv{i}" for i in range(1, 9))
        self.feature_channels = dict(zip(self.feature_layers, widths))

    def _stages(self):
        blocks = [(f"conv{i}", [getattr(self, f"model{i}")]) for i in range(1, 8)]
        return blocks + [("conv8", list(self.model8)[:-1])]

    def forward_features(self, L, layers=("conv1", "conv2", "conv3", "conv4", "conv5")):
        """Named intermediate activations; the forward stops after the last one requested.

        Args:
            L: raw lightness, (B, 1, H, W) in [0, 100]; with hints, (B, 4, H, W): L, hint
                ab in Lab units, mask.
            layers: names from ``self.feature_layers`` (a single name may be a string).

        Returns:
            dict name -> (B, feature_channels[name], h, w), in the order requested.
        """
        if L.shape[1] != self.in_channels:
            what = ("L, hint a, hint b and the hint mask, (B, 4, H, W)" if self.hints
                    else "L alone, (B, 1, H, W)")
            raise ValueError(f"this ECCV16 takes {what}; got {tuple(L.shape)}")
        x = color.normalize_l(L[:, :1], self.l_norm)
        if self.hints:
            x = torch.cat([x, L[:, 1:3] / color.AB_SCALE, L[:, 3:] - 0.5], dim=1)
        return run_taps(x, self._stages(), layers)

    def forward(self, L):
        """Raw L (B, 1, H, W) -> logits (B, num_classes, H/4, W/4); with hints (B, 4, H, W)
        -> (B, 2 + num_classes, H/4, W/4): ab / 110, then the logits."""
        return self.model8[-1](self.forward_features(L, "conv8")["conv8"])


def eccv16(**kwargs):
    """The published ECCV16 network (about 32 M parameters)."""
    return ECCV16(**kwargs)


def eccv16_small(**kwargs):
    """ECCV16 with a quarter of the channels in every layer, for CPU demos at 64-96 px."""
    return ECCV16(**{"widths": ECCV16_SMALL_WIDTHS, **kwargs})
