"""Losses against dense references, and that they can be minimised."""

import torch
import torch.nn.functional as F

from splitbrain import color, losses
from references import dense_target


def random_soft_target(B=2, H=3, W=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    ab = torch.rand(B, 2, H, W, generator=g) * 200 - 100
    return color.soft_encode(ab, k=10, sigma=5.0)


def test_sparse_soft_cross_entropy_equals_dense_reference_value_and_gradient():
    idx, w = random_soft_target()
    logits = torch.randn(2, 313, 3, 4, generator=torch.Generator().manual_seed(1))
    pixel_w = torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(2))

    sparse_logits = logits.clone().requires_grad_()
    sparse = losses.soft_cross_entropy(sparse_logits, idx, w, pixel_w)
    sparse.backward()

    dense_logits = logits.clone().requires_grad_()
    dense = dense_target(idx, w)  # (B, 313, H, W)
    per_pixel = -(dense * F.log_softmax(dense_logits, 1)).sum(1)
    dense = (per_pixel * pixel_w).mean()
    dense.backward()

    torch.testing.assert_close(sparse, dense)
    torch.testing.assert_close(sparse_logits.grad, dense_logits.grad)


def test_hard_cross_entropy_equals_torch_cross_entropy():
    logits = torch.randn(2, 50, 5, 5, generator=torch.Generator().manual_seed(3))
    target = torch.randint(0, 50, (2, 5, 5), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(losses.hard_cross_entropy(logits, target),
                               F.cross_entropy(logits, target))


def test_zero_pixel_weight_removes_pixel():
    idx, w = random_soft_target()
    logits = torch.randn(2, 313, 3, 4, requires_grad=True)
    mask = torch.zeros(2, 3, 4)
    mask[0] = 1
    losses.soft_cross_entropy(logits, idx, w, mask).backward()
    assert logits.grad[1].abs().max() == 0 and logits.grad[0].abs().max() > 0


def test_l2_regression_matches_mse():
    pred, target = torch.randn(2, 2, 4, 4), torch.randn(2, 2, 4, 4)
    torch.testing.assert_close(losses.l2_regression(pred, target),
                               F.mse_loss(pred, target) * 2)  # summed over 2 channels


def test_soft_cross_entropy_falls_on_a_tiny_problem():
    idx, w = random_soft_target()
    logits = torch.zeros(2, 313, 3, 4, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=50.0)
    values = []
    for _ in range(20):
        loss = losses.soft_cross_entropy(logits, idx, w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(loss.item())
    # The minimum is the target's entropy; the loss must approach it from log(313).
    entropy = -(w * w.clamp(min=1e-12).log()).sum(1).mean().item()
    assert values[-1] < values[0] and values[-1] - entropy < 0.1 * (values[0] - entropy)
