"""splitbrain: self-supervised colour prediction in PyTorch.

Colorization (Zhang, Isola, Efros, ECCV 2016), split-brain autoencoders (CVPR 2017), and the
linear probes that measure the features they learn.
"""

__version__ = "0.1.0"
