"""Import torchvision on a CPU-only PyTorch.

The torchvision wheel that pairs with torch 2.13.0 is built against CUDA. With the CPU build
of torch its C++ extension cannot load, and `import torchvision` fails with
``RuntimeError: operator torchvision::nms does not exist`` because the Python side registers
fake kernels for operators whose schemas were never defined. Defining the two schemas it
touches at import time (`nms`, `qnms`) lets the import finish; transforms, datasets and models
work, `torchvision.io` and `torchvision.ops` do not (we decode images with PIL; the optional
GPU JPEG decoding reaches `torchvision.io` only through :func:`jpeg_decoder` below).

Every module in splitbrain imports torchvision as::

    from splitbrain.compat import torchvision
"""

import torch

_LIBRARY = None  # keep the Library object alive: the schemas vanish when it is collected


def _define_missing_schemas():
    global _LIBRARY
    missing = {
        "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
        "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    }
    missing = {name: schema for name, schema in missing.items()
               if not _has_schema(f"torchvision::{name}")}
    if not missing:
        return
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    for schema in missing.values():
        _LIBRARY.define(schema)


def _has_schema(qualname):
    try:
        torch._C._dispatch_find_schema_or_throw(qualname, "")  # noqa: SLF001
        return True
    except RuntimeError:
        return False


try:
    import torchvision
except RuntimeError as err:
    if "torchvision::" not in str(err):
        raise
    import sys
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _define_missing_schemas()
    import torchvision  # noqa: E402

# `import torchvision` does not load transforms.v2; load it here, after the fix above, so that
# `torchvision.transforms.v2` is usable wherever torchvision comes from this module.
import torchvision.transforms.v2  # noqa: E402,F401

__all__ = ["jpeg_decoder", "torchvision"]


def jpeg_decoder():
    """torchvision's ``decode_jpeg`` and ``ImageReadMode`` (the one home of ``torchvision.io``).

    Importing always works; with CPU-only torch the image extension is missing and a call
    raises RuntimeError, which callers turn into a fallback (see :mod:`splitbrain.jpeg_gpu`).
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg, ImageReadMode
