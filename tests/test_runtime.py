"""Device and precision choices."""

import pytest
import torch

from splitbrain.runtime import autocast, resolve_device


def test_device_and_precision_choices():
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="fp32"):
        autocast(torch.device("cpu"), "fp8")
    with autocast(torch.device("cpu"), "bf16"):
        out = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16


def test_fast_convolution_kernels_are_chosen_on_cuda_only(monkeypatch):
    from splitbrain.runtime import use_fast_kernels

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # restored afterwards
    use_fast_kernels(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False  # nothing to time on a CPU
    use_fast_kernels(torch.device("cuda"))  # only sets the flag: no GPU needed
    assert torch.backends.cudnn.benchmark is True
