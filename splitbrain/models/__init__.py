"""The networks, by name: ``MODELS`` maps a name to a factory taking keyword arguments.

Every model takes raw colour channels (L in [0, 100], a and b in about [-110, 110]), normalises
them itself, returns logits, and exposes named feature taps through ``forward_features``.
"""

from .alexnet import (AlexNetColorization, AlexNetEncoder, AlexNetFCN, alexnet_colorization,
                      alexnet_colorization_cifar, alexnet_colorization_small)
from .autoencoder import (autoencoder_alexnet, autoencoder_alexnet_cifar,
                          autoencoder_alexnet_small, is_autoencoder)
from .eccv16 import ECCV16, eccv16, eccv16_small
from .splitbrain import (LAB_HALVES, LAB_SPLIT, SplitBrain, SplitBrainHalf, find_half,
                         half_name, splitbrain_alexnet, splitbrain_alexnet_cifar,
                         splitbrain_alexnet_small)

MODELS = {
    "eccv16": eccv16,
    "eccv16_small": eccv16_small,
    "alexnet_colorization": alexnet_colorization,
    "alexnet_colorization_small": alexnet_colorization_small,
    "alexnet_colorization_cifar": alexnet_colorization_cifar,
    "splitbrain_alexnet": splitbrain_alexnet,
    "splitbrain_alexnet_small": splitbrain_alexnet_small,
    "splitbrain_alexnet_cifar": splitbrain_alexnet_cifar,
    "autoencoder_alexnet": autoencoder_alexnet,
    "autoencoder_alexnet_small": autoencoder_alexnet_small,
    "autoencoder_alexnet_cifar": autoencoder_alexnet_cifar,
}



def build_model(name, **kwargs):
    """Build the model registered as ``name`` in ``MODELS`` with the factory's keyword arguments."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = ["LAB_HALVES", "LAB_SPLIT", "MODELS", "is_autoencoder", "AlexNetColorization",
           "AlexNetEncoder",
           "AlexNetFCN", "ECCV16", "SplitBrain", "SplitBrainHalf", "build_model", "find_half",
           "half_name"]
