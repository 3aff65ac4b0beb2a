"""Building blocks shared by the networks: downsampling, conv blocks, named feature taps.

Every way a network reduces resolution is built here, so one ``blur`` argument (the size of
the anti-aliasing filter) switches a whole model between the published downsampling
(``blur=1``: max pooling, or a strided convolution where the network has no pooling) and
anti-aliased downsampling (``blur`` 2, 3 or 5; Zhang, "Making Convolutional Networks
Shift-Invariant Again", ICML 2019): max pooling at stride 1 followed by a strided binomial
blur of that size, and stride-1 convolution + ReLU followed by a strided blur in place of a
strided convolution. All sizes give the same output sizes (docs/reference.md §5).
"""

import kornia
import torch.nn as nn

from .. import color

# Anti-aliasing filter sizes of the paper's tables: 1 = none (the published network), then the
# binomial filters [1, 1], [1, 2, 1] and [1, 4, 6, 4, 1] (kornia's Pascal-triangle kernels).
BLUR_SIZES = (1, 2, 3, 5)
NORMS = ("bn", "lrn", "none")


def check_choice(what, value, valid):
    """Raise a ValueError naming the valid choices unless ``value`` is one of them."""
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(map(str, valid))}")


def check_l_norm(l_norm):
    """Fail at construction, not at the first forward, on an unknown L normalisation."""
    check_choice("L normalisation", l_norm, tuple(color.L_NORMS))


def check_blur(blur):
    """Fail at construction on an anti-aliasing filter size the paper does not use."""
    check_choice("anti-aliasing filter size (model.blur)", blur, BLUR_SIZES)


def make_pool(blur, kernel_size, stride, padding=0):
    """Max pooling, plain or anti-aliased.

    Args:
        blur: anti-aliasing filter size; 1 gives ``nn.MaxPool2d`` (floor rounding), 2, 3 or 5
            give ``MaxBlurPool2D`` (max over ``kernel_size`` at stride 1, then a strided
            ``blur`` × ``blur`` binomial blur).
        kernel_size: max-pooling window.
        stride: downsampling factor. At stride 1 nothing is subsampled, so there is nothing
            to anti-alias and every size gives plain max pooling.
        padding: implicit -inf padding on each side, as ``nn.MaxPool2d`` pads.

    Returns:
        A module mapping (B, C, H, W) to (B, C, floor((H + 2p - k) / s) + 1, ...) for every size.
    """
    check_blur(blur)
    if blur == 1 or stride == 1:
        return nn.MaxPool2d(kernel_size, stride, padding)
    if not 0 <= padding <= kernel_size // 2:
        raise ValueError(f"padding must be in 0..{kernel_size // 2}, got {padding}")
    pool = kornia.filters.MaxBlurPool2D(blur, stride=stride, max_pool_size=kernel_size)
    if padding == 0:
        return pool
    # -inf never wins a max and every window keeps at least one real value (padding <= k // 2).
    return nn.Sequential(nn.ConstantPad2d(padding, float("-inf")), pool)


def make_strided_conv(blur, in_channels, out_channels, stride, kernel_size=3, padding=1):
    """A downsampling convolution followed by its ReLU, as a list of modules.

    Args:
        blur: anti-aliasing filter size; 1 gives the published strided convolution
            ``[Conv(stride), ReLU]``, 2, 3 or 5 the anti-aliased
            ``[Conv(stride 1), ReLU, BlurPool2D(blur, stride)]``. All give ceil(H / stride)
            rows for a 3×3 kernel with padding 1.
        in_channels, out_channels, stride, kernel_size, padding: of the convolution.
    """
    check_blur(blur)
    if blur == 1 or stride == 1:
        return [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
                nn.ReLU(inplace=True)]
    return [nn.Conv2d(in_channels, out_channels, kernel_size, 1, padding),
            nn.ReLU(inplace=True),
            kornia.filters.BlurPool2D(blur, stride=stride)]


def conv_bn_relu(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 norm="bn"):
    """Conv -> BatchNorm (if ``norm == "bn"``) -> ReLU, the AlexNet block of the BN nets.

    LRN is not applied here: in classic AlexNet it follows the ReLU and is placed by the caller.
    """
    check_choice("norm", norm, NORMS)
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation)]
    if norm == "bn":
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def check_layers(layers, valid):
    """Validate requested feature-tap names; a single name may be given as a string.

    Returns:
        The names as a tuple, in the order requested.
    """
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    if not layers:
        raise ValueError(f"no feature layers requested; valid: {', '.join(valid)}")
    unknown = [name for name in layers if name not in valid]
    if unknown:
        raise ValueError(f"unknown feature layer(s) {unknown}; valid: {', '.join(valid)}")
    return layers


def run_taps(x, stages, layers):
    """Run ``stages`` in order, collecting the named outputs; stop after the last one asked for.

    Args:
        x: the network input, already normalised.
        stages: sequence of ``(name, modules)``; ``modules`` run in order and the output of
            the last is the tap ``name``.
        layers: names to return (validated against the stage names).

    Returns:
        dict name -> tensor, in the order of ``layers``.
    """
    names = [name for name, _ in stages]
    layers = check_layers(layers, names)
    last = max(names.index(name) for name in layers)
    taps = {}
    for name, modules in stages[:last + 1]:
        for module in modules:
            x = module(x)
        taps[name] = x
    return {name: taps[name] for name in layers}
