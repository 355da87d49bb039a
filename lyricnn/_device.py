"""Devices and the named tensors of the engine's buffers.

`device` picks the compute backend (csrc/core/backend.h) a model runs on:
  "cpu"       the CPU backend (OpenMP + the GEMM library), float32;
  "auto"      the best backend this build has ("cpu" in a build without CUDA);
  "cpu-copy"  the CPU backend with its memory treated as device memory: parameters, gradients and
              optimizer state come back to numpy as copies, never as views, exactly as they do from a
              GPU. It exists so that the code paths of device backends run (and are tested) on any
              machine; use "cpu" for real work.
CUDA ("cuda", "cuda:N") needs the CUDA backend, which this build does not have.

TensorStore maps tensor names to one of the engine's buffers (parameters or gradients): numpy views on
host-memory backends, copies on the others, and one write() that works on both.
"""
import numpy as np

from ._loader import _C

__all__ = ["resolve_device", "TensorStore"]


def resolve_device(device):
    """(backend name, activation dtype) for a device argument; ValueError / RuntimeError otherwise."""
    if device is None or device == "auto":
        return "cpu", "f32"
    if not isinstance(device, str):
        raise TypeError("device must be a string such as 'cpu', got %s" % type(device).__name__)
    if device in ("cpu", "cpu-copy"):
        return device, "f32"
    if device == "cuda" or device.startswith("cuda:"):
        raise ValueError("device=%r needs the CUDA backend, which this build of lyricnn does not have (backends: "
                         "%s); use device='cpu'" % (device, ", ".join(_C.backends())))
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
