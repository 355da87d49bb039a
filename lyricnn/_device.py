"""Devices and the named tensors of the engine's buffers.

`device` picks the compute backend (csrc/core/backend.h) a model runs on:
  "cpu"        the CPU backend (OpenMP + the GEMM library), float32;
  "cuda"       the CUDA backend on GPU 0 ("cuda:N": GPU N), when this build has it and a GPU is there;
  "auto"       "cuda" when it is usable and verified (CUDA_VERIFIED below), else "cpu";
  "cpu-copy"   the CPU backend with its memory treated as device memory: parameters, gradients and
               optimizer state come back to numpy as copies, never as views, exactly as they do from a
               GPU. It exists so that the code paths of device backends run (and are tested) on any
               machine; use "cpu" for real work.
`precision` (GPU only; the CPU runs float32):
  "bf16"  bfloat16 activations and GEMMs, float32 master weights, optimizer state and reductions
          (the default on GPUs with compute capability 8.0+);
  "fp16"  IEEE half activations and GEMMs (float32 accumulation), float32 master weights and optimizer
          state, and dynamic loss scaling with torch.amp.GradScaler's rule (SequenceClassifier.
          configure_optimizer's loss_scaling): the default on GPUs without bf16 (T4, V100; torch users run
          AMP fp16 there);
  "fp32"  float32 throughout, no TF32 (the exact mode, for parity);
  "tf32"  float32 with TF32 tensor-core GEMMs.

CUDA_VERIFIED: whether this version's CUDA backend has passed tools/gpu_check.sh on a real GPU. Until it has,
"auto" (the default of the CLI and of the estimators' device="auto") means the CPU, and an explicit
device="cuda" runs but warns once (a RuntimeWarning) that the backend is unverified. Whoever verifies it on a
GPU flips this one constant (tools/gpu_check.sh's summary says whether its tests allow it).

TensorStore maps tensor names to one of the engine's buffers (parameters or gradients): numpy views on
host-memory backends, copies on the others, and one write() that works on both.
"""
import warnings

import numpy as np

from ._loader import _C

__all__ = ["resolve_device", "cuda_available", "TensorStore", "PRECISIONS", "CUDA_VERIFIED"]

PRECISIONS = ("bf16", "fp16", "fp32", "tf32")
_DTYPE = {"bf16": "bf16", "fp16": "f16", "fp32": "f32", "tf32": "f32"}

# False until tools/gpu_check.sh has passed on a GPU with this version of csrc/cuda (see the module docstring).
CUDA_VERIFIED = False
_warned_unverified = False


def cuda_available():
    """Whether the CUDA backend is usable here (built, with a driver and a GPU)."""
    return "cuda" in _C.backends()


def _cuda_reason():
    try:
        _C.cuda_info()
    except _C.LyricnnError as e:
        return str(e)
    return ""


def _cuda_devices():
    return _C.cuda_info()["devices"]


def auto_device():
    """What device="auto" means here: "cuda" when the CUDA backend is usable and verified, else "cpu"."""
    return "cuda" if CUDA_VERIFIED and cuda_available() else "cpu"


def _warn_unverified(device):
    global _warned_unverified
    if CUDA_VERIFIED or _warned_unverified:
        return
    _warned_unverified = True
    warnings.warn("device=%r: lyricnn's CUDA backend has not yet been verified on a GPU (tools/gpu_check.sh); "
                  "results may be wrong. device='auto' uses the CPU until it is." % (device,), RuntimeWarning,
                  stacklevel=4)


def resolve_device(device, precision=None):
    """(backend name, activation dtype, device index, tf32) for a device and precision argument;
    TypeError / ValueError otherwise."""
    if precision is not None and precision not in PRECISIONS:
        raise ValueError("precision must be one of %s (or None for the device's default), got %r"
                         % (", ".join(PRECISIONS), precision))
    if device is None or device == "auto":
        device = auto_device()
    if not isinstance(device, str):
        raise TypeError("device must be a string such as 'cpu' or 'cuda', got %s" % type(device).__name__)
    if device in ("cpu", "cpu-copy"):
        if precision not in (None, "fp32"):
            raise ValueError("precision=%r needs a GPU; the CPU backend runs float32 (precision='fp32')" % (precision,))
        return device, "f32", 0, False
    if device == "cuda" or device.startswith("cuda:"):
        index = 0
        if device != "cuda":
            try:
                index = int(device[5:])
            except ValueError:
                raise ValueError("device must look like 'cuda' or 'cuda:N', got %r" % (device,)) from None
        if not cuda_available():
            raise ValueError("device=%r needs the CUDA backend, which is not usable here: %s; use device='cpu' or "
                             "'auto'" % (device, _cuda_reason()))
        devs = _cuda_devices()
        if not 0 <= index < len(devs):
            raise ValueError("device=%r: this machine has %d CUDA device(s)" % (device, len(devs)))
        _warn_unverified(device)
        if precision is None:
            precision = "bf16" if devs[index]["bf16"] else "fp16"
        if precision == "bf16" and not devs[index]["bf16"]:
            raise ValueError("precision='bf16' needs compute capability 8.0+; %s is %d.%d: use precision='fp16' "
                             "(with loss scaling, the default there) or 'fp32'"
                             % (devs[index]["name"], *devs[index]["compute_capability"]))
        return "cuda", _DTYPE[precision], index, precision == "tf32"
    raise ValueError("device must be 'cpu', 'auto' or 'cuda[:N]', got %r" % (device,))


class TensorStore:
    """Named tensors of one engine buffer ('params' or 'grads').

    layout: {name: (offset, shape)} in buffer order. On a host-memory backend `view()` returns a dict of
    zero-copy numpy views; otherwise reads are copies and writes go through write()."""

    def __init__(self, engine, which, layout):
        self._engine = engine
        self._which = which
        self.layout = dict(layout)
        self.host = bool(engine.host_memory)
        self._views = None
        if self.host:
            buf = engine.params_buffer() if which == "params" else engine.grads_buffer()
            self._views = {name: buf[off:off + _numel(shape)].reshape(shape)
                           for name, (off, shape) in self.layout.items()}

    def view(self):
        """The mapping users see as `.params` / `.grads`: views (host memory) or a copy-on-read mapping."""
        return self._views if self.host else _DeviceTensors(self)

    def read(self, name):
        """A copy of the tensor."""
        if self.host:
            return self._views[name].copy()
        off, shape = self.layout[name]
        return self._engine.read(self._which, off, _numel(shape)).reshape(shape)

    def read_all(self):
        """The whole buffer (a copy), in layout order."""
        if self.host:
            buf = self._engine.params_buffer() if self._which == "params" else self._engine.grads_buffer()
            return buf.copy()
        return self._engine.read(self._which)

    def write(self, name, value):
        """Copy value (same shape) into the tensor."""
        off, shape = self.layout[name]
        a = np.asarray(value)
        if a.shape != tuple(shape):
            raise ValueError("%s has shape %s, the tensor needs %s" % (name, a.shape, tuple(shape)))
        if self.host:
            np.copyto(self._views[name], a, casting="same_kind")
        else:
            self._engine.write(self._which, off, np.ascontiguousarray(a, dtype=np.float32).reshape(-1))

    def done(self):
        """After writes: refresh the forward's weight copy (a no-op for float32 activations)."""
        if self._which == "params":
            self._engine.sync_weights()


def _numel(shape):
    return int(np.prod(shape)) if len(shape) else 1


class _DeviceTensors:
    """Read-only mapping name -> a numpy copy of a tensor in device memory. Assigning to the arrays it
    returns changes nothing on the device: use the model's load methods (load_state_dict, ...)."""

    def __init__(self, store):
        self._store = store

    def __getitem__(self, name):
        return self._store.read(name)

    def __contains__(self, name):
        return name in self._store.layout

    def __iter__(self):
        return iter(self._store.layout)

    def __len__(self):
        return len(self._store.layout)

    def keys(self):
        return self._store.layout.keys()

    def items(self):
        return ((n, self[n]) for n in self._store.layout)

    def values(self):
        return (self[n] for n in self._store.layout)

    def get(self, name, default=None):
        return self[name] if name in self._store.layout else default

    def __repr__(self):
        return "<%d tensors in %s memory (copies on read)>" % (len(self), self._store._engine.backend)
