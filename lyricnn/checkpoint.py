"""Hugging Face checkpoints without torch: config.json, safetensors (read and write) and
pytorch_model.bin (zip + a restricted unpickler), plus name/shape matching for the encoder.

    config = read_config("path/to/model")                  # dict from config.json
    state = load_state_dict("path/to/model")               # {raw name: float32 array}
    matched, heads = match_state_dict(expected, state, config["model_type"])
    save_safetensors("out/model.safetensors", tensors, metadata={"format": "pt"})
    tensors = read_safetensors("out/model.safetensors")

Every problem with a file (missing, truncated, corrupt, hostile, not matching) raises
lyricnn.CheckpointError with a message that names the file and what is wrong.
"""
import io
import json
import os
import pickle
import secrets
import zipfile

import numpy as np

from ._loader import _C
from ._C import CheckpointError

__all__ = ["read_config", "load_state_dict", "match_state_dict", "save_safetensors",
           "read_safetensors", "safetensors_metadata", "safetensors_header", "CheckpointError"]

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PT_WEIGHTS = "pytorch_model.bin"
PT_INDEX = "pytorch_model.bin.index.json"

# Tensors HF itself drops when loading a base encoder: pretraining heads and buffers.
IGNORED_PREFIXES = ("cls.", "vocab_transform.", "vocab_layer_norm.", "vocab_projector.",
                    "qa_outputs.", "lm_head.")
IGNORED_SUFFIXES = ("position_ids", "embeddings.token_type_ids")
# Task-head tensors kept for the classifier.
HEAD_PREFIXES = ("pre_classifier.", "classifier.")


# ---------------------------------------------------------------------------------- config

def read_config(path):
    """config.json of an HF model directory (or the path of the json itself) as a dict."""
    path = os.fspath(path)
    cfg_path = os.path.join(path, "config.json") if os.path.isdir(path) else path
    if not os.path.isfile(cfg_path):
        raise CheckpointError("%s: not found; an HF model directory needs config.json (write it with "
                              "model.save_pretrained(dir) or copy it from the model's hub page)" % cfg_path)
    try:
        with open(cfg_path, "rb") as f:
            cfg = json.loads(f.read().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise CheckpointError("%s: not UTF-8 text (%s)" % (cfg_path, e)) from None
    except json.JSONDecodeError as e:
        raise CheckpointError("%s: invalid JSON at line %d column %d: %s"
                              % (cfg_path, e.lineno, e.colno, e.msg)) from None
    except (OSError, RecursionError, ValueError) as e:
        raise CheckpointError("%s: cannot be read: %s" % (cfg_path, e)) from None
    if not isinstance(cfg, dict):
        raise CheckpointError("%s: must hold a JSON object, got %s" % (cfg_path, type(cfg).__name__))
    return cfg


# ---------------------------------------------------------------------------------- safetensors

def read_safetensors(path, to_float32=False):
    """Tensors of a .safetensors file as {name: C-contiguous numpy array}.

    Dtypes numpy holds are kept (F16 -> float16, I64 -> int64, ...); BF16 becomes float32.
    to_float32=True turns every float tensor (F16, BF16, F64) into float32.
    """
    tensors, _ = _C.st_read(os.fspath(path), to_float32=bool(to_float32))
    return tensors


def safetensors_metadata(path):
    """The __metadata__ dict (str -> str) of a .safetensors file ({} when absent)."""
    return _C.st_header(os.fspath(path))[1]


def safetensors_header(path):
    """Validated header: a list of {name, dtype, shape, data_offsets} in file order."""
    return _C.st_header(os.fspath(path))[0]


def save_safetensors(path, tensors, metadata=None, *, _fail_after=-1):
    """Write {name: array} as a safetensors file, atomically.

    The data goes to a temporary file beside path, which is fsync'ed and then renamed over
    path, so an interrupted save leaves any previous file intact. metadata: dict str -> str
    (HF writes {"format": "pt"}; transformers wants it to load the file).
    """
    path = os.fspath(path)
    if not hasattr(tensors, "items"):
        raise TypeError("tensors must be a dict of name -> numpy array, got %s" % type(tensors).__name__)
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("metadata must be a dict of str -> str or None")
    names, arrays = [], []
    for name, arr in tensors.items():
        if not isinstance(name, str):
            raise TypeError("tensor names must be str, got %r" % (name,))
        a = np.asarray(arr)
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        names.append(name)
        arrays.append(a if a.flags.c_contiguous else a.copy(order="C"))  # keeps 0-d shapes
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.%s.tmp" % (os.path.basename(path), secrets.token_hex(6)))
    try:
        _C.st_write(tmp, names, arrays, metadata, _fail_after)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename durable
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


# ---------------------------------------------------------------------------------- pytorch_model.bin

class _StorageType:
    """Stand-in for torch.<X>Storage: just a numpy dtype (not callable)."""
    __slots__ = ("name", "dtype")

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype

    def __setstate__(self, state):
        raise CheckpointError("pickle tried to modify a storage type: not allowed")


_STORAGE_TYPES = {
    "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "<u2", "DoubleStorage": "<f8",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}
_FLOAT_STORAGES = ("FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage")


class _Storage:
    __slots__ = ("stype", "key", "numel")

    def __init__(self, stype, key, numel):
        self.stype, self.key, self.numel = stype, key, numel

    def __setstate__(self, state):
        raise CheckpointError("pickle tried to modify a storage: not allowed")


class _TensorRef:
    """What _rebuild_tensor_v2 returns: a view description, materialised after unpickling."""
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __setstate__(self, state):
        raise CheckpointError("pickle tried to modify a tensor: not allowed")


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise CheckpointError("_rebuild_tensor_v2: the storage argument is not a storage")
    if not (_is_int(storage_offset) and storage_offset >= 0):
        raise CheckpointError("_rebuild_tensor_v2: bad storage offset %r" % (storage_offset,))
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and len(size) <= 32 and all(_is_int(s) and s >= 0 for s in size + stride)):
        raise CheckpointError("_rebuild_tensor_v2: bad size %r / stride %r" % (size, stride))
    if int(np.prod(size, dtype=object)) > max(storage.numel, 1):
        raise CheckpointError("tensor view of size %r has more elements than its %d-element storage"
                              % (size, storage.numel))
    if min(size, default=1) > 0:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel:
            raise CheckpointError("tensor view (offset %d, size %r, stride %r) reaches element %d of a "
                                  "%d-element storage" % (storage_offset, size, stride, last, storage.numel))
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, _TensorRef):
        raise CheckpointError("_rebuild_parameter: the data argument is not a tensor")
    return data


def _ordered_dict(*args):
    from collections import OrderedDict
    if args and not (len(args) == 1 and isinstance(args[0], (list, tuple))):
        raise CheckpointError("OrderedDict called with unexpected arguments")
    return OrderedDict(*args)


class _Allowed:
    """A callable the pickle may use; pickle BUILD cannot modify it."""
    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)

    def __setstate__(self, state):
        raise CheckpointError("pickle tried to modify %s: not allowed" % self.fn.__name__)


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle._Unpickler):
    """Accepts only what a torch state_dict pickle needs: OrderedDict, tensor rebuilds, storages.

    The pure-Python unpickler is used on purpose: its memo is a dict (the C one sizes an array by
    the largest memo index, so LONG_BINPUT 2**31 asks for gigabytes) and it reads what is there
    rather than preallocating a length taken from the file. data.pkl is small, so speed is moot.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, f, where):
        super().__init__(f)
        self.where = where
        self.storages = {}

    def load_build(self):
        # torch state dicts carry an OrderedDict attribute (_metadata); nothing else may be BUILT
        state = self.stack.pop()
        inst = self.stack[-1]
        from collections import OrderedDict
        if type(inst) is not OrderedDict or not isinstance(state, dict) or \
                not all(isinstance(k, str) and not k.startswith("__") for k in state):
            raise CheckpointError("%s: the pickle modifies a %s object, which is not allowed"
                                  % (self.where, type(inst).__name__))
        inst.__dict__.update(state)

    dispatch[pickle.BUILD[0]] = load_build

    def find_class(self, module, name):
        fn = _ALLOWED_GLOBALS.get((module, name))
        if fn is not None:
            return _Allowed(fn)
        if module == "torch" and name in _STORAGE_TYPES:
            return _StorageType(name, np.dtype(_STORAGE_TYPES[name]))
        raise CheckpointError("%s: the pickle refers to %s.%s, which is not allowed (only tensor "
                              "rebuilds are; this file may be malicious)" % (self.where, module, name))

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError("%s: unexpected persistent id %r" % (self.where, pid))
        _, stype, key, _location, numel = pid
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not _is_int(numel) or numel < 0:
            raise CheckpointError("%s: malformed storage reference %r" % (self.where, pid))
        st = self.storages.get(key)
        if st is None:
            st = self.storages[key] = _Storage(stype, key, numel)
        elif st.stype.name != stype.name or st.numel != numel:
            raise CheckpointError("%s: storage %r is referenced with two types or sizes" % (self.where, key))
        return st


def _load_torch_zip(path, skip_non_float=True):
    """{name: float32 array} from a torch.save zip archive, without torch."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":
            raise CheckpointError("%s: a legacy (pre-zip) torch checkpoint, which lyricnn does not read; "
                                  "re-save it with model.save_pretrained(dir, safe_serialization=True) "
                                  "or torch.save(state_dict, path) with a recent torch" % path) from None
        raise CheckpointError("%s: not a torch checkpoint (not a zip archive)" % path) from None
    except OSError as e:
        raise CheckpointError("%s: cannot be read: %s" % (path, e)) from None
    try:
        with zf:
            return _read_torch_zip(zf, path, skip_non_float)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, MemoryError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError("%s: corrupt archive (%s: %s)" % (path, type(e).__name__, e)) from None


def _check_ratio(info, path):
    # torch stores members uncompressed; a compressed member that inflates enormously is a zip bomb
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > 100 * info.compress_size + (1 << 20):
        raise CheckpointError("%s: member %s inflates %d -> %d bytes, which is not a torch checkpoint "
                              "(zip bomb?)" % (path, info.filename, info.compress_size, info.file_size))


def _read_torch_zip(zf, path, skip_non_float):
    names = zf.namelist()
    pkls = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pkls) != 1:
        raise CheckpointError("%s: expected one data.pkl in the archive, found %d" % (path, len(pkls)))
    prefix = pkls[0][:-len("data.pkl")]
    bo = prefix + "byteorder"
    if bo in names and zf.read(bo).strip() not in (b"little", b""):
        raise CheckpointError("%s: big-endian torch checkpoints are not supported" % path)
    info = zf.getinfo(pkls[0])
    _check_ratio(info, path)
    if info.file_size > 256 << 20:
        raise CheckpointError("%s: data.pkl is implausibly large (%d bytes)" % (path, info.file_size))
    up = _RestrictedUnpickler(io.BytesIO(zf.read(pkls[0])), path)
    try:
        obj = up.load()
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError("%s: corrupt data.pkl (asks for too much memory)" % path) from None
    except Exception as e:  # any malformed pickle (also MemoryError from huge opcodes)
        raise CheckpointError("%s: corrupt data.pkl (%s: %s)" % (path, type(e).__name__, e)) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError("%s: expected a state dict (a dict of tensors), got %s"
                              % (path, type(obj).__name__))
    cache, out = {}, {}
    for name, ref in obj.items():
        if not isinstance(name, str) or not isinstance(ref, _TensorRef):
            raise CheckpointError("%s: entry %r is not a named tensor" % (path, name))
        st = ref.storage
        if st.stype.name not in _FLOAT_STORAGES:
            if skip_non_float:
                continue
        if st.key not in cache:
            member = prefix + "data/" + st.key
            try:
                minfo = zf.getinfo(member)
            except KeyError:
                raise CheckpointError("%s: storage %s is missing from the archive" % (path, member)) from None
            want = st.numel * st.stype.dtype.itemsize
            _check_ratio(minfo, path)
            if minfo.file_size != want:
                raise CheckpointError("%s: storage %s holds %d bytes, expected %d (%d x %s)"
                                      % (path, member, minfo.file_size, want, st.numel, st.stype.name))
            try:
                raw = zf.read(member)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
                raise CheckpointError("%s: storage %s is corrupt: %s" % (path, member, e)) from None
            cache[st.key] = np.frombuffer(raw, dtype=st.stype.dtype, count=st.numel)
        base = cache[st.key]
        itemsize = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[ref.offset:] if min(ref.size, default=1) > 0 else base[:0],
            shape=ref.size, strides=tuple(s * itemsize for s in ref.stride), writeable=False)
        if st.stype.name == "BFloat16Storage":
            arr = (view.astype(np.uint32) << 16).view(np.float32)
        elif st.stype.name in _FLOAT_STORAGES:
            arr = view.astype(np.float32)
        else:
            arr = np.array(view)
        out[name] = arr if arr.flags.c_contiguous and arr.flags.writeable else arr.copy(order="C")
    return out


# ---------------------------------------------------------------------------------- state dicts

def _safe_shard_name(index_path, fname):
    if (not isinstance(fname, str) or not fname or os.path.basename(fname) != fname
            or fname in (".", "..") or "\x00" in fname):
        raise CheckpointError("%s: shard file name %r must be a plain file name in the same folder"
                              % (index_path, fname))
    return os.path.join(os.path.dirname(index_path), fname)


def _load_index(index_path, load_one):
    try:
        with open(index_path, "rb") as f:
            idx = json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError("%s: invalid index JSON: %s" % (index_path, e)) from None
    except OSError as e:
        raise CheckpointError("%s: cannot be read: %s" % (index_path, e)) from None
    wm = idx.get("weight_map") if isinstance(idx, dict) else None
    if not isinstance(wm, dict) or not all(isinstance(k, str) for k in wm):
        raise CheckpointError("%s: an index needs a \"weight_map\" object of tensor name -> shard file"
                              % index_path)
    shards = sorted({_safe_shard_name(index_path, v) for v in wm.values()})
    out = {}
    for shard in shards:
        if not os.path.isfile(shard):
            raise CheckpointError("%s: shard %s is missing" % (index_path, shard))
        for k, v in load_one(shard).items():
            if k in out:
                raise CheckpointError("%s: tensor %r is in two shards" % (index_path, k))
            out[k] = v
    lost = [k for k, fname in wm.items() if k not in out and not k.endswith(IGNORED_SUFFIXES)]
    if lost:
        raise CheckpointError("%s: %d tensor(s) listed in the index are in no shard: %s"
                              % (index_path, len(lost), ", ".join(sorted(lost)[:20])))
    return out


def _load_safetensors_f32(path):
    return _C.st_read(path, to_float32=True, skip_non_float=True)[0]


def weights_file(directory):
    """The weights file of an HF model directory (model.safetensors, model.safetensors.index.json,
    pytorch_model.bin, pytorch_model.bin.index.json, in that order); CheckpointError when it has none."""
    for fname in (SAFE_WEIGHTS, SAFE_INDEX, PT_WEIGHTS, PT_INDEX):
        cand = os.path.join(directory, fname)
        if os.path.isfile(cand):
            return cand
    raise CheckpointError("%s: no weights found (looked for %s, %s, %s, %s)"
                          % (directory, SAFE_WEIGHTS, SAFE_INDEX, PT_WEIGHTS, PT_INDEX))


def load_state_dict(path):
    """{raw name: float32 C-contiguous array} from an HF model directory or a weights file.

    Looks for model.safetensors, model.safetensors.index.json (sharded), pytorch_model.bin and
    pytorch_model.bin.index.json, in that order. F32/F16/BF16/F64 load as float32; integer
    buffers (position_ids) are skipped. pytorch_model.bin is read with a restricted unpickler
    (no torch import, no code execution).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return load_state_dict(weights_file(path))
    if not os.path.isfile(path):
        raise CheckpointError("%s: not found" % path)
    if path.endswith(".index.json"):
        is_pt = path.endswith(".bin.index.json")
        return _load_index(path, _load_torch_zip if is_pt else _load_safetensors_f32)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"PK" or path.endswith((".bin", ".pt", ".pth")):
        return _load_torch_zip(path)
    return _load_safetensors_f32(path)


def _shape_str(shape):
    shape = tuple(int(s) for s in shape)
    return "(%d,)" % shape[0] if len(shape) == 1 else "(%s)" % ", ".join(map(str, shape))


def match_state_dict(expected, state, model_type, ignored=None, allow_missing=()):
    """Match a loaded state dict to the encoder's tensors.

    expected: {encoder name: shape tuple}, names without the model prefix
              ("embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight").
    state:    {raw checkpoint name: array}, e.g. from load_state_dict().
    model_type: "distilbert" or "bert" (the prefix "<model_type>." is stripped when present).
    ignored:  optional list; the raw names of tensors HF also drops (pretraining heads such as
              cls.* / vocab_projector.*, position_ids buffers) are appended to it.
    allow_missing: name prefixes that may be absent (e.g. ("pooler.",): a BertLMHeadModel
              checkpoint has no pooler, and HF initialises it randomly); absent ones are simply
              not in matched.

    Returns (matched, heads): matched maps every expected name to its array; heads holds the
    task-head tensors (pre_classifier.*, classifier.*, and pooler.* when the encoder does not
    expect it) under prefix-free names. Unknown, missing or misshapen tensors raise one
    CheckpointError listing them all (also on the exception: .unknown, .missing, .misshapen).
    """
    if not isinstance(model_type, str) or not model_type:
        raise ValueError("model_type must be a non-empty str such as 'bert' or 'distilbert'")
    prefix = model_type + "."
    matched, heads, source = {}, {}, {}
    unknown, misshapen, duplicates = [], [], []
    for raw, arr in state.items():
        name = raw[len(prefix):] if raw.startswith(prefix) else raw
        # TF-era checkpoints name LayerNorm parameters gamma/beta (HF renames them too)
        if "LayerNorm." in name or "layer_norm." in name:
            if name.endswith(".gamma"):
                name = name[:-len("gamma")] + "weight"
            elif name.endswith(".beta"):
                name = name[:-len("beta")] + "bias"
        shape = tuple(np.shape(arr))
        if name in expected:
            if name in matched or name in source:
                duplicates.append((name, source[name], raw))
                continue
            source[name] = raw
            want = tuple(int(s) for s in expected[name])
            if shape != want:
                misshapen.append((name, want, shape, raw))
            else:
                matched[name] = arr
        elif name.startswith(HEAD_PREFIXES) or name.startswith("pooler."):
            if name in heads:
                duplicates.append((name, source.get(name, name), raw))
                continue
            source[name] = raw
            heads[name] = arr
        elif name.startswith(IGNORED_PREFIXES) or name.endswith(IGNORED_SUFFIXES):
            if ignored is not None:
                ignored.append(raw)
        else:
            unknown.append((raw, shape))
    allow_missing = tuple(allow_missing)
    missing = [(n, tuple(int(s) for s in expected[n])) for n in expected
               if n not in source and not (allow_missing and n.startswith(allow_missing))]
    if unknown or missing or misshapen or duplicates:
        lines = []
        for n, want in missing:
            lines.append("  missing:   %s, expected shape %s" % (n, _shape_str(want)))
        for n, want, got, raw in misshapen:
            lines.append("  misshapen: %s: expected %s, found %s%s" % (
                n, _shape_str(want), _shape_str(got), "" if raw == n else " (as %s)" % raw))
        for raw, shape in unknown:
            lines.append("  unknown:   %s, shape %s" % (raw, _shape_str(shape)))
        for n, a, b in duplicates:
            lines.append("  duplicate: %s appears as both %s and %s" % (n, a, b))
        hint = ""
        others = {r.split(".", 1)[0] for r, _ in unknown if "." in r}
        if missing and len(unknown) >= len(missing) // 2 and others and prefix[:-1] not in others:
            hint = ("\n  (the unknown names start with %s: is config.json's model_type %r right?)"
                    % ("/".join(sorted(others)[:3]), model_type))
        err = CheckpointError("the checkpoint does not match the %s encoder (%d missing, %d misshapen, "
                              "%d unknown, %d duplicate):\n%s%s" % (
                                  model_type, len(missing), len(misshapen), len(unknown), len(duplicates),
                                  "\n".join(lines), hint))
        err.missing, err.misshapen, err.unknown, err.duplicates = missing, misshapen, unknown, duplicates
        raise err
    return matched, heads
