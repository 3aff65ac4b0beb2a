"""Find host-device synchronisations in a training step without a GPU.

On CUDA, ``torch.cuda.set_sync_debug_mode("error")`` makes every synchronising call an error.
A CPU has no such mode, so :class:`HostSyncWatch` looks for what synchronises once the step's
tensors live on a GPU:

- reading a device value on the host: ``.item()``, ``bool(t)``, ``float(t)``, ``.tolist()``,
  ``.numpy()``, ``.cpu()``;
- indexing a device tensor with a Python list or a host tensor (``x[:, [1, 2]]``): the index
  is copied to the device first, with a blocking copy;
- operations whose output size depends on the data: ``nonzero``, boolean-mask indexing,
  ``masked_select``, ``unique``, ``bincount``, ``repeat_interleave`` without ``output_size``,
  ``torch.equal``;
- copying host memory to the device without ``non_blocking=True``:
  ``torch.tensor(data, device=d)``, ``host_tensor.to(d)``, ``device_tensor.copy_(host_tensor)``.
  (PyTorch waits for the whole stream before such a copy from pageable memory.)

To tell host from device tensors on a machine where both are CPU tensors, the watch follows
where each tensor came from: the ``device`` tensors given to it (the batch, the model's weights,
the objective's tables) and everything computed from them are device tensors; tensors made
inside the watch by factories without a device (``torch.tensor(data)``, ``torch.arange(n)``),
and everything computed from those alone, are host tensors. Tensors it has not seen made are
treated as device tensors for reads and as host tensors for copies, so both kinds of mistake are
reported. It sees Python calls (a ``TorchFunctionMode``) and every ATen call, backward included
(a ``TorchDispatchMode``).

What it cannot see: a ``torch.from_numpy`` array (not an overridable call), and synchronisation
inside a C++ extension that never reaches ATen. The GPU check (``tools/gpu_check.sh``) runs
CUDA's own mode; this watch lets the suite keep the step clean on any machine.
"""

import traceback
import weakref
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten

# ATen operations that wait for the device: a value read on the host, or an output whose size
# depends on the data.
SYNCING_OPS = {
    _aten._local_scalar_dense.default: "reads a device value on the host (.item(), bool(), "
                                       "float(), int())",
    _aten.nonzero.default: "has a data-dependent output size (nonzero, torch.where(mask))",
    _aten.masked_select.default: "has a data-dependent output size (masked_select)",
    _aten._unique2.default: "has a data-dependent output size (unique)",
    _aten.unique_dim.default: "has a data-dependent output size (unique)",
    _aten.unique_consecutive.default: "has a data-dependent output size (unique_consecutive)",
    _aten.bincount.default: "reads the largest value on the host (bincount)",
    _aten.equal.default: "returns a Python bool (torch.equal)",
    _aten.is_nonzero.default: "reads a device value on the host (bool of a tensor)",
}
# Indexing operations: where their index argument is.
_INDEX_OPS = {_aten.index.Tensor: 1, _aten.index_put.default: 1, _aten.index_put_.default: 1,
              _aten._index_put_impl_.default: 1, _aten.index_select.default: 2}
_HOST_READS = {torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu}
_FROM_DATA = {torch.tensor, torch.as_tensor, torch.Tensor.new_tensor}
_FACTORIES = {torch.arange, torch.zeros, torch.ones, torch.full, torch.empty, torch.linspace,
              torch.logspace, torch.eye, torch.rand, torch.randn, torch.randint, torch.randperm,
              torch.scalar_tensor}
_PACKAGE = Path(__file__).resolve().parent
_TORCH = Path(torch.__file__).resolve().parent


_active = 0  # watches entered and not left


def watching():
    """Whether a :class:`HostSyncWatch` is active: code with a CPU-only shortcut that would
    synchronise on a GPU should then take its GPU path, so that the path gets checked."""
    return _active > 0


def upload(t, device):
    """Copy a host tensor to ``device`` without making the host wait for the device.

    On CUDA the copy goes from pinned memory with ``non_blocking=True``, queued on the stream
    like a kernel; a plain ``.to(device)`` from pageable memory first waits for all the work
    queued before it. Meant for tables built once per device.
    """
    device = torch.device(device)
    if device.type == "cuda":
        out = t.pin_memory().to(device, non_blocking=True)
    else:
        out = t.to(device, non_blocking=True, copy=True)  # never the host tensor itself
    _UPLOADED.add(out)  # a device tensor to every watch
    return out


class _IdSet:
    """Tensors by identity, held weakly (a WeakSet would compare tensors with ``==``)."""

    def __init__(self, items=()):
        self._refs = {}
        for t in items:
            self.add(t)

    def add(self, t):
        key = id(t)
        self._refs[key] = weakref.ref(t, lambda _, key=key: self._refs.pop(key, None))

    def __contains__(self, t):
        ref = self._refs.get(id(t))
        return ref is not None and ref() is t


_UPLOADED = _IdSet()  # what upload() returned


class HostSyncError(RuntimeError):
    """An operation that would synchronise host and device ran inside a watched region."""


def _tensors(*trees):
    return [t for t in tree_flatten(list(trees))[0] if isinstance(t, torch.Tensor)]


def _is_host_device(device):
    """A device argument that names the host: absent, or written as the string "cpu"."""
    return device is None or (isinstance(device, str) and device.split(":")[0] == "cpu")


def _where():
    """The innermost calling line outside torch, and the innermost of this project's if other."""
    frames = [f for f in traceback.extract_stack()
              if not Path(f.filename).resolve().is_relative_to(_TORCH)
              and Path(f.filename).name != "hostsync.py"]
    if not frames:
        return "?"
    ours = [f for f in frames if Path(f.filename).resolve().is_relative_to(_PACKAGE)]
    text = f"{frames[-1].filename}:{frames[-1].lineno} ({frames[-1].line})"
    if ours and ours[-1] is not frames[-1]:
        text += f", called from {ours[-1].filename}:{ours[-1].lineno} ({ours[-1].line})"
    return text


class _Function(TorchFunctionMode):
    """Python-level calls: provenance of results, host reads, host-to-device copies."""

    def __init__(self, watch):
        super().__init__()
        self.watch = watch

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        w = self.watch
        inputs = _tensors(args, kwargs)
        if func in _HOST_READS and not w.on_host(args[0]):
            w.report(f"Tensor.{func.__name__}", "copies a device tensor to the host")
        elif func is torch.Tensor.to:
            self._check_to(args, kwargs)
        elif func is torch.Tensor.copy_:
            self._check_copy(*args[:2], kwargs.get("non_blocking"))
        elif func in _FROM_DATA and not _is_host_device(kwargs.get("device")) \
                and all(w.maybe_host(t) for t in inputs):
            w.report(f"torch.{func.__name__}", "copies Python data to the device (blocking)")
        out = func(*args, **kwargs)
        if (func in _FROM_DATA or func in _FACTORIES) and not inputs:
            host = _is_host_device(kwargs.get("device")) and not (
                func is torch.Tensor.new_tensor and not w.on_host(args[0]))
        else:
            host = bool(inputs) and all(w.on_host(t) for t in inputs)
        for t in _tensors(out):
            if func is torch.Tensor.to or not any(t is i for i in inputs):
                (w.host if host else w.device).add(t)
        return out

    def _check_to(self, args, kwargs):
        w = self.watch
        target = kwargs.get("device")
        for a in args[1:]:
            if isinstance(a, (str, torch.device)):
                target = a
            elif isinstance(a, torch.Tensor):
                target = "cpu" if w.on_host(a) else a.device
        if target is None:
            return  # a dtype change on the same device
        if isinstance(target, str) and _is_host_device(target):
            if not w.on_host(args[0]):
                w.report("Tensor.to", "copies a device tensor to the host")
        elif w.maybe_host(args[0]) and not kwargs.get("non_blocking"):
            w.report("Tensor.to", "copies a host tensor to the device (blocking)")

    def _check_copy(self, dst, src, non_blocking):
        w = self.watch
        if w.on_host(dst) and not w.on_host(src):
            w.report("Tensor.copy_", "copies a device tensor to the host")
        elif not w.on_host(dst) and w.maybe_host(src) and not non_blocking:
            w.report("Tensor.copy_", "copies host memory to the device (blocking)")


class _Dispatch(TorchDispatchMode):
    """ATen-level calls, autograd's included: host reads and data-dependent sizes."""

    def __init__(self, watch):
        super().__init__()
        self.watch = watch

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        why = SYNCING_OPS.get(func)
        if func in _INDEX_OPS:
            indices = _tensors(args[_INDEX_OPS[func]])
            if any(t.dtype == torch.bool for t in indices):
                why = "indexes with a boolean mask (a data-dependent size)"
            elif any(self.watch.maybe_host(t) for t in indices):
                why = ("indexes with a Python list or a host tensor (copied to the device with a "
                       "blocking copy; use slices, or an index made once per device)")
        elif func is _aten.repeat_interleave.Tensor and kwargs.get("output_size") is None:
            why = "has a data-dependent output size (repeat_interleave without output_size)"
        if why and not all(self.watch.on_host(t) for t in _tensors(args[:1])):
            self.watch.report(f"aten.{func.__name__}", why)
        out = func(*args, **kwargs)
        # Follow the intermediate results that Python never sees (the view that x[i, 0]
        # selects before it indexes, an index a decomposition builds): from host tensors alone
        # they are host tensors, from any device tensor device tensors.
        w, inputs = self.watch, _tensors(args, kwargs)
        if inputs and all(w.on_host(t) for t in inputs):
            side = w.host
        elif any(not w.maybe_host(t) for t in inputs):
            side = w.device
        else:
            return out
        for t in _tensors(out):
            if not any(t is i for i in inputs):
                side.add(t)
        return out


class HostSyncWatch:
    """Context manager: raise (or record) on every synchronising operation run inside it.

    Args:
        device: tensors that live on the device in a GPU run (the batch, the model's weights,
            the objective's tables); what is computed from them is followed.
        host: tensors that live on the host by design (Adam's step counts, unless
            ``capturable``), or a callable returning them, asked at each check.
        raise_: raise :class:`HostSyncError` at the first one (else record them in
            ``self.found`` as (operation, place) pairs).
    """

    def __init__(self, device=(), host=(), raise_=True):
        self.device = _IdSet(device)
        self.host = _IdSet()
        self._host_fixed = host if callable(host) else (lambda: host)
        self.raise_ = raise_
        self.found = []
        self._modes = None

    def on_host(self, t):
        """Whether ``t`` is known to live in host memory in a GPU run."""
        return t in self.host or any(t is h for h in self._host_fixed())

    def maybe_host(self, t):
        """Whether ``t`` may live in host memory (made on the host, or never seen made)."""
        return t not in self.device and t not in _UPLOADED

    def report(self, op, why):
        where = _where()
        self.found.append((op, where))
        if self.raise_:
            raise HostSyncError(
                f"{op} {why} inside the training step, at {where}: on a GPU the host waits "
                "for the device there every step. Keep the value on the device (torch.where, "
                "masks multiplied in, constants made once per device) or read it where the "
                "loop logs.")

    def __enter__(self):
        global _active
        _active += 1
        self._modes = (_Function(self), _Dispatch(self))
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc):
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
        self._modes = None
        global _active
        _active -= 1
        return False


def optimizer_host_tensors(optimizer):
    """Callable: the optimizer's state tensors that stay on the host in a GPU run.

    PyTorch's Adam keeps its step counts as CPU tensors unless ``capturable`` or ``fused``.
    """
    on_device = optimizer.defaults.get("capturable") or optimizer.defaults.get("fused")

    def tensors():
        if on_device:
            return []
        return [s["step"] for s in optimizer.state.values()
                if isinstance(s.get("step"), torch.Tensor) and s["step"].dim() == 0]
    return tensors


def device_tensors(*objects):
    """Every tensor held by ``objects`` (modules, plain objects' attributes, lists, dicts)."""
    found, seen = [], set()

    def visit(obj, depth):
        if id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            found.append(obj)
        elif isinstance(obj, torch.nn.Module):
            found.extend(obj.parameters())
            found.extend(obj.buffers())
            for v in vars(obj).values():
                if not isinstance(v, (dict, torch.nn.Module)):
                    visit(v, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                visit(v, depth + 1)
        elif isinstance(obj, dict):
            for v in obj.values():
                visit(v, depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            for v in vars(obj).values():
                visit(v, depth + 1)
    for o in objects:
        visit(o, 0)
    return found
