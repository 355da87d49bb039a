"""Hostile and corrupt checkpoint files are rejected with CheckpointError, never a crash."""
import io
import json
import pickle
import struct
import zipfile

import numpy as np
import pytest

import lyricnn
from lyricnn import _C
from lyricnn import checkpoint as ck


def st_file(header, data=b"", pad=True, length=None):
    """A safetensors file from a header (dict or raw str/bytes) and a data section."""
    h = header if isinstance(header, bytes) else (
        header if isinstance(header, str) else json.dumps(header)).encode("utf-8")
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def T(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


GOOD = st_file({"a": T()}, b"\0" * 8)

HOSTILE = {
    "empty file": (b"", "too short"),
    "seven bytes": (b"\x08\0\0\0\0\0\0", "too short"),
    "header length beyond the file": (st_file({"a": T()}, b"\0" * 8, length=1000), "runs past the end"),
    "header length over the limit": (st_file({}, length=100_000_001), "exceeds"),
    "header length 2**64-1": (b"\xff" * 8 + b"{}", "exceeds"),
    "zero header length": (b"\0" * 8, "must be a JSON object"),
    "bad JSON: truncated": (st_file('{"a": {"dtype": "F32", "sha'), "unterminated string"),
    "bad JSON: not an object": (st_file("[1, 2]"), "must be a JSON object"),
    "bad JSON: trailing comma": (st_file('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},}',
                                         b"\0" * 8), "expected a string"),
    "bad JSON: single quotes": (st_file("{'a': 1}"), "expected a string"),
    "bad JSON: trailing bytes": (st_file('{} {}'), "unexpected bytes"),
    "bad JSON: control char in name": (st_file('{"a\x01": {}}'), "control character"),
    "bad JSON: bad escape": (st_file('{"a\\x": {}}'), "unknown escape"),
    "lone surrogate": (st_file('{"a\\ud800": {}}'), "surrogate"),
    "NUL in name": (st_file('{"a\\u0000b": {}}'), "U\\+0000"),
    "non-UTF-8 name": (st_file(b'{"\xff\xfe": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}', b"\0" * 4),
                       "UTF-8"),
    "overlong UTF-8": (st_file(b'{"\xc0\xaf": {}}'), "UTF-8"),
    "unknown dtype": (st_file({"a": T(dtype="F128")}, b"\0" * 8), "unknown dtype 'F128'"),
    "dtype not a string": (st_file('{"a": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 8),
                           "expected a string"),
    "negative shape": (st_file('{"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}', b"\0" * 8),
                       "non-negative integer"),
    "float shape": (st_file('{"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}', b"\0" * 8),
                    "fraction or exponent"),
    "shape overflows 64 bits": (st_file({"a": T(shape=(2**32, 2**32, 16), offsets=(0, 8))}, b"\0" * 8),
                                "overflows 64 bits"),
    "dimension over 2**63": (st_file({"a": T(shape=(2**63,), offsets=(0, 8))}, b"\0" * 8), "too large"),
    "integer over 2**64": (st_file('{"a": {"dtype": "F32", "shape": [99999999999999999999], '
                                   '"data_offsets": [0, 8]}}', b"\0" * 8), "overflows 64 bits"),
    "huge shape, small span": (st_file({"a": T(shape=(2**40,), offsets=(0, 8))}, b"\0" * 8), "needs"),
    "span inconsistent with shape": (st_file({"a": T(shape=(3,), offsets=(0, 8))}, b"\0" * 8), "needs 12 bytes"),
    "offsets beyond the data": (st_file({"a": T(offsets=(8, 16))}, b"\0" * 8), "outside"),
    "offsets reversed": (st_file({"a": T(offsets=(8, 0))}, b"\0" * 8), "outside"),
    "offsets near 2**64": (st_file({"a": T(offsets=(2**64 - 16, 2**64 - 8))}, b"\0" * 8), "outside"),
    "overlapping tensors": (st_file({"a": T(offsets=(0, 8)), "b": T(shape=(1,), offsets=(4, 8))}, b"\0" * 8),
                            "overlaps"),
    "hole between tensors": (st_file({"a": T(shape=(1,), offsets=(0, 4)), "b": T(shape=(1,), offsets=(8, 12))},
                                     b"\0" * 12), "hole"),
    "trailing garbage": (st_file({"a": T()}, b"\0" * 12), "cover 8 bytes but the data section holds 12"),
    "truncated data": (st_file({"a": T(shape=(4,), offsets=(0, 16))}, b"\0" * 8), "outside"),
    "duplicate tensor names": (st_file('{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                                       '"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', b"\0" * 8),
                               "duplicate tensor name 'a'"),
    "duplicate field": (st_file('{"a": {"dtype": "F32", "dtype": "F16", "shape": [2], "data_offsets": [0, 8]}}',
                                b"\0" * 8), "duplicate \"dtype\""),
    "unknown field": (st_file('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}}', b"\0" * 8),
                      "unknown field 'x'"),
    "missing field": (st_file('{"a": {"dtype": "F32", "shape": [2]}}', b"\0" * 8), "lacks \"data_offsets\""),
    "three offsets": (st_file('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4, 8]}}', b"\0" * 8),
                      "too many"),
    "too many dims": (st_file({"a": T(shape=(1,) * 17, offsets=(0, 4))}, b"\0" * 4), "too many"),
    "nested shape": (st_file('{"a": {"dtype": "F32", "shape": [[2]], "data_offsets": [0, 8]}}', b"\0" * 8),
                     "non-negative integer"),
    "metadata value not a string": (st_file('{"__metadata__": {"a": 1}}'), "must be strings"),
    "duplicate metadata": (st_file('{"__metadata__": {}, "__metadata__": {}}'), "duplicate __metadata__"),
    "duplicate metadata key": (st_file('{"__metadata__": {"k": "1", "k": "2"}}'), "duplicate __metadata__ key"),
    "deeply nested": (st_file("{" + '"a":[' * 5000), "must be an object"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_safetensors_rejected(tmp_path, case):
    blob, msg = HOSTILE[case]
    p = tmp_path / "model.safetensors"
    p.write_bytes(blob)
    for fn in (ck.read_safetensors, ck.load_state_dict, ck.safetensors_header):
        with pytest.raises(lyricnn.CheckpointError, match=msg):
            fn(p)
    with pytest.raises(lyricnn.CheckpointError, match=msg):
        _C.st_validate_bytes(blob)


def test_reference_reader_agrees_on_hostile_files():
    """The safetensors package rejects these files too, except where we are stricter on purpose."""
    st = pytest.importorskip("safetensors.numpy")
    stricter = {"unknown field", "too many dims", "duplicate metadata key"}
    for case, (blob, _) in HOSTILE.items():
        if case in stricter:
            st.load(blob)  # accepted by the reference; we refuse them
            continue
        with pytest.raises(Exception):
            st.load(blob)
    assert _C.st_validate_bytes(GOOD) == (1, 0)


def test_unusual_but_valid_headers():
    ok = [
        st_file({}),
        st_file('{"__metadata__": null}'),
        st_file('\t{ "a" :{"data_offsets":[0,8] ,"shape":[ 2 ],"dtype":"F32"}}\n', b"\0" * 8, pad=False),
        st_file('{"\\u00e9\\ud83d\\ude00\\/\\"": {"dtype": "BF16", "shape": [0, 3], "data_offsets": [0, 0]}}'),
        st_file({"z": T(shape=(0,), offsets=(8, 8)), "a": T()}, b"\0" * 8),
    ]
    for blob in ok:
        _C.st_validate_bytes(blob)


def test_truncated_real_file_every_cut(tmp_path, shared):
    src = shared("models", "tiny-random-bert-seqcls-encoderfile", "model.safetensors").read_bytes()
    p = tmp_path / "m.safetensors"
    n = int.from_bytes(src[:8], "little")
    cuts = sorted(set([0, 1, 7, 8, 9, n // 2, n + 7, n + 8, n + 9, len(src) - 1]
                      + list(range(0, len(src), max(1, len(src) // 40)))))
    for cut in cuts:
        if cut >= len(src):
            continue
        p.write_bytes(src[:cut])
        with pytest.raises(lyricnn.CheckpointError):
            ck.load_state_dict(p)


def test_bit_flips_in_header(tmp_path):
    """Random byte changes in a real header give a clean error or a still-valid file."""
    rng = np.random.default_rng(7)
    good = st_file({"a.weight": T(shape=(2, 3), offsets=(0, 24)), "b": T(dtype="F16", shape=(4,), offsets=(24, 32))},
                   bytes(range(32)))
    n = int.from_bytes(good[:8], "little")
    for _ in range(3000):
        b = bytearray(good)
        for _ in range(rng.integers(1, 4)):
            b[rng.integers(0, 8 + n)] = rng.integers(0, 256)
        try:
            _C.st_validate_bytes(bytes(b))
        except lyricnn.CheckpointError:
            pass


# ------------------------------------------------------------------ pytorch_model.bin

def torch_zip(pkl_bytes, storages=None, prefix="archive/", byteorder="little"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(prefix + "data.pkl", pkl_bytes)
        z.writestr(prefix + "byteorder", byteorder)
        for key, data in (storages or {}).items():
            z.writestr(prefix + "data/" + key, data)
    return buf.getvalue()


class _Call:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def raw_pickle(ops):
    return b"\x80\x02" + ops + b"."


def global_op(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def test_forbidden_global_os_system_has_no_side_effect(tmp_path):
    marker = tmp_path / "pwned"
    # os.system("touch <marker>") via GLOBAL + REDUCE
    ops = (global_op("os", "system") + b"X" + struct.pack("<I", len("touch " + str(marker)))
           + ("touch " + str(marker)).encode() + b"\x85R")
    p = tmp_path / "pytorch_model.bin"
    for mod in ("os", "posix", "builtins", "subprocess"):
        name = {"os": "system", "posix": "system", "builtins": "eval", "subprocess": "getoutput"}[mod]
        arg = ("touch " + str(marker)) if mod != "builtins" else "open(%r, 'w')" % str(marker)
        ops = global_op(mod, name) + b"X" + struct.pack("<I", len(arg)) + arg.encode() + b"\x85R"
        p.write_bytes(torch_zip(raw_pickle(ops)))
        with pytest.raises(lyricnn.CheckpointError, match="%s.%s, which is not allowed" % (mod, name)):
            ck.load_state_dict(tmp_path)
        assert not marker.exists()
    # the same payload through pickle.dumps of a real reduce
    p.write_bytes(torch_zip(pickle.dumps(_Call(eval, ("open(%r, 'w')" % str(marker),)), protocol=2)))
    with pytest.raises(lyricnn.CheckpointError, match="not allowed"):
        ck.load_state_dict(p)
    assert not marker.exists()


def test_forbidden_reduce_on_allowed_names(tmp_path):
    p = tmp_path / "w.bin"
    cases = {
        # calling a storage type
        "storage type": global_op("torch", "FloatStorage") + b")R",
        # NEWOBJ on a rebuild function
        "newobj": global_op("torch._utils", "_rebuild_tensor_v2") + b")\x81",
        # BUILD that tries to modify an allowed function
        "build": global_op("torch._utils", "_rebuild_parameter") + b"}X\x0c\x00\x00\x00__defaults__)sb",
        # BUILD on an OrderedDict with a dunder attribute
        "build dunder": global_op("collections", "OrderedDict") + b")R}X\x09\x00\x00\x00__class__K\x01sb",
        # memo bomb: the C unpickler would allocate a 2**31-entry memo
        "memo bomb": b"K\x01r\xff\xff\xff\x7f",
        # rebuild with a non-storage argument
        "bad storage": global_op("torch._utils", "_rebuild_tensor_v2") + b"(K\x00K\x00)))\x89tR",
        # persistent id of the wrong shape
        "bad pid": b"X\x03\x00\x00\x00abcQ",
        # torch.load's other entry points
        "torch.load": global_op("torch", "load") + b")R",
        "_load_from_bytes": global_op("torch.storage", "_load_from_bytes") + b")R",
        "numpy reconstruct": global_op("numpy.core.multiarray", "_reconstruct") + b")R",
    }
    for what, ops in cases.items():
        p.write_bytes(torch_zip(raw_pickle(ops)))
        with pytest.raises(lyricnn.CheckpointError):
            ck.load_state_dict(p)
    # the functions were not modified by the BUILD attempt
    assert ck._rebuild_parameter.__defaults__ == (False, None)


def _state_pickle(offset, size, stride, numel, stype="FloatStorage", key="0"):
    """A torch-style state-dict pickle with one tensor, written by hand."""
    def tup(xs):
        return b"(" + b"".join(b"J" + struct.pack("<i", x) for x in xs) + b"t"
    pid = (b"(X\x07\x00\x00\x00storage" + global_op("torch", stype) + b"X" + struct.pack("<I", len(key))
           + key.encode() + b"X\x03\x00\x00\x00cpuJ" + struct.pack("<i", numel) + b"tQ")
    tensor = (global_op("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + b"J" + struct.pack("<i", offset)
              + tup(size) + tup(stride) + b"\x89" + global_op("collections", "OrderedDict") + b")RtR")
    return raw_pickle(global_op("collections", "OrderedDict") + b")R" + b"X\x01\x00\x00\x00w" + tensor + b"s")


def test_handwritten_state_pickle_loads(tmp_path):
    p = tmp_path / "w.bin"
    data = np.arange(12, dtype=np.float32)
    p.write_bytes(torch_zip(_state_pickle(2, (2, 3), (1, 2), 12), {"0": data.tobytes()}))
    got = ck.load_state_dict(p)["w"]
    np.testing.assert_array_equal(got, np.lib.stride_tricks.as_strided(data[2:], (2, 3), (4, 8)))


@pytest.mark.parametrize("args,storage,msg", [
    ((0, (2, 3), (10, 1), 12), 48, "reaches element 12"),           # view beyond the storage
    ((11, (2,), (1,), 12), 48, "reaches element 12"),
    ((0, (3,), (1,), 12), 40, "holds 40 bytes, expected 48"),       # storage bytes != numel * size
    ((0, (100000, 100000), (0, 0), 12), 48, "more elements"),       # stride-0 memory bomb
    ((-1, (2,), (1,), 12), 48, "bad storage offset"),
    ((0, (2,), (-1,), 12), 48, "bad size"),
    ((0, (2, 2), (1,), 12), 48, "bad size"),
])
def test_bad_tensor_views_rejected(tmp_path, args, storage, msg):
    p = tmp_path / "w.bin"
    p.write_bytes(torch_zip(_state_pickle(*args), {"0": b"\0" * storage}))
    with pytest.raises(lyricnn.CheckpointError, match=msg):
        ck.load_state_dict(p)


def test_corrupt_bin_archives(tmp_path):
    p = tmp_path / "pytorch_model.bin"
    good = _state_pickle(0, (3,), (1,), 3)
    cases = {
        "not a zip archive": b"hello world",
        "legacy": pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + b"rest",
        "expected one data.pkl": torch_zip(good).replace(b"data.pkl", b"data.pkz"),
        "storage archive/data/0 is missing": torch_zip(good),
        "corrupt data.pkl": torch_zip(good[:-5]),
        "big-endian": torch_zip(good, {"0": b"\0" * 12}, byteorder="big"),
        "is corrupt": torch_zip(good, {"0": b"\1" * 12}).replace(b"\1" * 12, b"\2" * 12),  # CRC mismatch
        "expected a state dict": torch_zip(raw_pickle(b"K\x05")),
        "not a named tensor": torch_zip(raw_pickle(b"}X\x01\x00\x00\x00aK\x01s")),
    }
    for msg, blob in cases.items():
        p.write_bytes(blob)
        with pytest.raises(lyricnn.CheckpointError, match=msg):
            ck.load_state_dict(tmp_path)


def test_unsupported_dtype_is_a_clear_error(tmp_path):
    p = tmp_path / "m.safetensors"
    p.write_bytes(st_file({"a": T(dtype="F8_E4M3", shape=(4,), offsets=(0, 4))}, b"\0" * 4))
    assert ck.safetensors_header(p)[0]["dtype"] == "F8_E4M3"   # a valid file ...
    with pytest.raises(lyricnn.CheckpointError, match="dtype F8_E4M3, which lyricnn cannot read"):
        ck.read_safetensors(p)                                 # ... that we cannot convert
    with pytest.raises(lyricnn.CheckpointError, match="F8_E4M3"):
        ck.load_state_dict(p)                                  # not silently skipped


def test_differential_against_reference_reader():
    """Random header mutations: we accept exactly what the safetensors package accepts, except
    for the few rules where we are stricter on purpose."""
    st_torch = pytest.importorskip("safetensors.torch")
    import pathlib
    corpus = pathlib.Path(__file__).resolve().parents[1] / "csrc" / "fuzz" / "corpus_safetensors"
    seeds = [p.read_bytes() for p in sorted(corpus.iterdir()) if p.suffix == ".safetensors"]
    assert seeds
    rng = np.random.default_rng(11)
    stricter = ("unknown field", "too many array elements", "duplicate __metadata__ key")
    agreed = 0
    for _ in range(3000):
        b = bytearray(seeds[rng.integers(0, len(seeds))])
        n = int.from_bytes(b[:8], "little")
        for _ in range(rng.integers(1, 3)):
            i = int(rng.integers(8, 8 + n)) if n else 0
            b[i] = int(rng.choice(list(b'{}[],:"0123456789 \\uFIBU_')))
        b = bytes(b)
        try:
            _C.st_validate_bytes(b)
            ours, why = True, ""
        except lyricnn.CheckpointError as e:
            ours, why = False, str(e)
        try:
            st_torch.load(b)
            ref = True
        except Exception:
            ref = False
        if ours != ref:
            assert ref and any(s in why for s in stricter), (b, why)
        else:
            agreed += 1
    assert agreed > 2500


def test_zip_bomb_storage_rejected(tmp_path):
    p = tmp_path / "w.bin"
    n = 12 << 20  # 48 MB of zeros deflate to ~50 kB
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", _state_pickle(0, (3,), (1,), n))
        z.writestr("archive/data/0", bytes(4 * n))
    p.write_bytes(buf.getvalue())
    with pytest.raises(lyricnn.CheckpointError, match="zip bomb"):
        ck.load_state_dict(p)


# ------------------------------------------------------------------ tampered training-checkpoint metadata (issue 20)

@pytest.fixture(scope="module")
def train_ckpt(tmp_path_factory):
    from test_hostile_inputs import X, Y, make
    d = tmp_path_factory.mktemp("ckpt")
    n = lyricnn.get_num_threads()
    lyricnn.set_num_threads(1)
    try:
        make(epochs=1, checkpoint_dir=str(d)).fit(X, Y)
    finally:
        lyricnn.set_num_threads(n)
    return d


@pytest.mark.parametrize("edit, msg", [
    (lambda m: m.update(step="7"), r"the checkpoint's step is '7': it must be an int >= 0"),
    (lambda m: m.update(step=-1), r"step is -1: it must be an int >= 0"),
    (lambda m: m.update(step=5), r"step is 5: epoch 1 and batch_in_epoch 0 of 2 make step 2"),
    (lambda m: m.update(batch_in_epoch=99, step=101), r"batch_in_epoch is 99: an epoch has 2 batches"),
    (lambda m: m.update(epoch=None), r"epoch is None: it must be an int >= 0"),
    (lambda m: m.update(history="abc"), r"history is 'str': it must be a list of rows"),
    (lambda m: m.update(history=[1, 2]), r"history\[0\] is 1: a row maps metric names to numbers"),
    (lambda m: m.update(history=[{"loss": "x"}]), r"history\[0\] is \{'loss': 'x'\}"),
    (lambda m: m["schedule"].update(last_step="abc"), r"schedule\.last_step is 'abc': it must be an int >= 0"),
    (lambda m: m["schedule"].update(bogus=1), r"schedule is .*fields \['bogus'\] are not this schedule's"),
    (lambda m: m.update(schedule=[1]), r"schedule is \[1\]: it must be an object or null"),
    (lambda m: m.update(best_score="high"), r"best_score is 'high'"),
])
def test_tampered_checkpoint_metadata_names_the_field(train_ckpt, tmp_path, edit, msg):
    from test_hostile_inputs import X, Y, make
    d = tmp_path / "c"
    d.mkdir()
    path = train_ckpt / "last.safetensors"
    meta = json.loads(ck.safetensors_metadata(path)["lyricnn"])
    edit(meta)
    ck.save_safetensors(d / "last.safetensors", ck.read_safetensors(path), {"lyricnn": json.dumps(meta)})
    with pytest.raises(lyricnn.CheckpointError, match=r"last\.safetensors: .*" + msg + r".*edited or damaged: fit "
                                                      r"without resume=True"):
        make(epochs=2, checkpoint_dir=str(d)).fit(X, Y, resume=True)


def test_checkpoint_metadata_that_is_not_json(train_ckpt, tmp_path):
    from test_hostile_inputs import X, Y, make
    d = tmp_path / "c"
    d.mkdir()
    path = train_ckpt / "last.safetensors"
    ck.save_safetensors(d / "last.safetensors", ck.read_safetensors(path), {"lyricnn": '{"step": '})
    with pytest.raises(lyricnn.CheckpointError, match=r"'lyricnn' metadata is not valid JSON"):
        make(epochs=2, checkpoint_dir=str(d)).fit(X, Y, resume=True)
    ck.save_safetensors(d / "last.safetensors", ck.read_safetensors(path), {"lyricnn": "[1]"})
    with pytest.raises(lyricnn.CheckpointError, match=r"has format 'list'"):
        make(epochs=2, checkpoint_dir=str(d)).fit(X, Y, resume=True)
