"""Losses as pure functions of tensors. Models return logits; the training step owns the loss."""

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits, indices, weights, pixel_weights=None):
    """Cross-entropy against a sparse soft target, optionally rebalanced per pixel.

    L = -mean_pixels[ w(pixel) * sum_k t_k log softmax(logits)_{indices_k} ]

    The dense (B, Q, H, W) target never exists: only the k log-probabilities of each pixel's
    target bins are gathered. A 1-hot target is ``k = 1`` with weights of 1.

    Args:
        logits: (B, Q, H, W) class scores.
        indices: (B, k, H, W) long target bins.
        weights: (B, k, H, W) target probabilities (sum 1 over k).
        pixel_weights: optional (B, H, W) per-pixel weights (class rebalancing, grey mask).

    Returns:
        Scalar loss, averaged over all B*H*W pixels.
    """
    log_prob = F.log_softmax(logits.float(), dim=1)  # (B, Q, H, W)
    per_pixel = -(log_prob.gather(1, indices) * weights).sum(1)  # (B, H, W)
    if pixel_weights is not None:
        per_pixel = per_pixel * pixel_weights
    return per_pixel.mean()


def hard_cross_entropy(logits, target, pixel_weights=None):
    """Cross-entropy against 1-hot class targets: logits (B, Q, H, W), target (B, H, W) long."""
    target = target.unsqueeze(1)
    return soft_cross_entropy(logits, target, torch.ones_like(target, dtype=torch.float32),
                              pixel_weights)


def l2_regression(pred, target, pixel_weights=None):
    """Squared error summed over channels, averaged over pixels.

    Args:
        pred, target: (B, C, H, W) in the same (normalised) units.
        pixel_weights: optional (B, H, W).
    """
    per_pixel = (pred.float() - target.float()).square().sum(1)  # (B, H, W)
    if pixel_weights is not None:
        per_pixel = per_pixel * pixel_weights
    return per_pixel.mean()
