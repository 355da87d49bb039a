"""Bounded random-mutation fuzzing of the restricted pytorch_model.bin unpickler.

Seeded mutations of a real torch.save() state-dict pickle (byte flips, inserts, deletes,
duplicated runs, truncation, spliced-in hostile opcodes, wrong storage sizes). Every input must
either load as a dict of float32 arrays or raise lyricnn.CheckpointError: any other exception,
a crash or a side effect fails the test. Bounded by LYRICNN_FUZZ_SECONDS (default 15 s) and
an iteration cap; a failing input is written next to the test's tmp dir for reproduction.
"""
import io
import os
import pickle
import struct
import time
import zipfile

import numpy as np
import pytest

import lyricnn
from lyricnn import checkpoint as ck

SECONDS = float(os.environ.get("LYRICNN_FUZZ_SECONDS", "15"))
MAX_ITERS = 200000


def _seed_pickles():
    """(data.pkl bytes, {storage key: bytes}) pairs: from torch when installed, else by hand."""
    seeds = []
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.manual_seed(0)
        base = torch.randn(4, 3)
        sd = {"a.weight": base, "a.t": base.t(), "b.bias": torch.randn(3).half(),
              "c": torch.randn(2, 2).bfloat16(), "ids": torch.arange(4), "p": torch.nn.Parameter(torch.ones(2))}
        buf = io.BytesIO()
        torch.save(sd, buf)
        with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
            pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
            prefix = pkl[:-len("data.pkl")]
            stor = {n[len(prefix) + 5:]: z.read(n) for n in z.namelist() if n.startswith(prefix + "data/")}
            seeds.append((z.read(pkl), stor))
    # a hand-written one (protocol 2 opcodes, as torch writes them)
    g = lambda m, n: b"c" + m + b"\n" + n + b"\n"  # noqa: E731
    pid = b"(X\x07\x00\x00\x00storage" + g(b"torch", b"FloatStorage") + b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ"
    t = (g(b"torch._utils", b"_rebuild_tensor_v2") + b"(" + pid + b"K\x00(K\x02K\x03t(K\x03K\x01t\x89"
         + g(b"collections", b"OrderedDict") + b")RtR")
    seeds.append((b"\x80\x02" + g(b"collections", b"OrderedDict") + b")RX\x01\x00\x00\x00w" + t + b"s.",
                  {"0": np.arange(6, dtype=np.float32).tobytes()}))
    return seeds


def _splices(marker):
    cmd = ("touch " + marker).encode()
    return [
        b"cos\nsystem\n" + b"X" + struct.pack("<I", len(cmd)) + cmd + b"\x85R",
        b"cbuiltins\neval\n", b"cposix\nsystem\n", b"ctorch\nload\n", b"ctorch\nFloatStorage\n",
        b"ctorch._utils\n_rebuild_tensor_v2\n", b"ccollections\nOrderedDict\n", b")R", b"\x81", b"b", b"}",
        b"]", b"(", b"t", b"Q", b"R", b"s", b"u", b"e", b"a", b"0", b"2", b".", b"\x94", b"h\x00", b"q\x00",
        b"J\xff\xff\xff\x7f", b"J\x00\x00\x00\x80", b"\x8a\x08" + b"\xff" * 8, b"\x8e" + b"\xff" * 8,
        b"B\xff\xff\xff\x7f", b"X\xff\xff\xff\x7f", b"\x95" + b"\xff" * 8, b"\x82\x01", b"\x83\x01\x00",
        b"i" + b"os\nsystem\n", b"\x93", b"\x8c\x02os\x8c\x06system\x93",
    ]


def _mutate(rng, data, splices):
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        op = int(rng.integers(0, 7))
        n = len(b)
        i = int(rng.integers(0, n + 1)) if n else 0
        if op == 0 and n:                       # flip / set a byte
            b[min(i, n - 1)] = int(rng.integers(0, 256))
        elif op == 1:                           # insert random bytes
            b[i:i] = bytes(rng.integers(0, 256, int(rng.integers(1, 5)), dtype=np.uint8))
        elif op == 2 and n:                     # delete a run
            del b[i:i + int(rng.integers(1, 9))]
        elif op == 3 and n:                     # duplicate a run
            j = int(rng.integers(0, n))
            b[i:i] = b[j:j + int(rng.integers(1, 17))]
        elif op == 4:                           # splice in an opcode sequence
            b[i:i] = splices[int(rng.integers(0, len(splices)))]
        elif op == 5:                           # truncate
            del b[i:]
        elif op == 6 and n:                     # small integer tweak
            b[min(i, n - 1)] = (b[min(i, n - 1)] + int(rng.integers(-2, 3))) % 256
    return bytes(b)


def _zip(pkl, storages):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        for k, v in storages.items():
            z.writestr("archive/data/" + k, v)
    return buf.getvalue()


def test_unpickler_fuzz(tmp_path):
    marker = str(tmp_path / "side_effect")
    seeds = _seed_pickles()
    splices = _splices(marker)
    rng = np.random.default_rng(20261122)
    path = tmp_path / "pytorch_model.bin"
    deadline = time.monotonic() + SECONDS
    counts = {"loaded": 0, "rejected": 0}
    it = 0
    while it < MAX_ITERS and time.monotonic() < deadline:
        it += 1
        pkl, stor = seeds[int(rng.integers(0, len(seeds)))]
        pkl = _mutate(rng, pkl, splices)
        if rng.random() < 0.1:  # wrong storage sizes / missing storages
            stor = {k: v[: int(rng.integers(0, len(v) + 1))] for k, v in stor.items() if rng.random() < 0.9}
        path.write_bytes(_zip(pkl, stor))
        try:
            out = ck.load_state_dict(path)
        except lyricnn.CheckpointError:
            counts["rejected"] += 1
            continue
        except BaseException as e:  # pragma: no cover - a finding
            repro = tmp_path / ("crash_%d.pkl" % it)
            repro.write_bytes(pkl)
            pytest.fail("iteration %d: %s: %s (input saved to %s)" % (it, type(e).__name__, e, repro))
        counts["loaded"] += 1
        assert isinstance(out, dict)
        for k, v in out.items():
            assert isinstance(k, str) and isinstance(v, np.ndarray) and v.dtype == np.float32
    assert not os.path.exists(marker), "a pickle payload ran"
    assert it >= 200, "the fuzz loop ran only %d iterations" % it
    assert counts["loaded"] > 0 and counts["rejected"] > 0, counts


def test_unmutated_seeds_load():
    for pkl, stor in _seed_pickles():
        ref = pickle.loads  # noqa: F841 - the seeds are ordinary pickles for torch, not for us
        buf = _zip(pkl, stor)
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "w.bin")
            with open(p, "wb") as f:
                f.write(buf)
            out = ck.load_state_dict(p)
        assert out and all(v.dtype == np.float32 for v in out.values())
