import os

import pytest

import lyricnn


def test_build_info_fields():
    info = lyricnn.build_info()
    for key in ("version", "compiler", "openmp", "num_threads", "blas", "cuda"):
        assert key in info, key
    assert "blas_core" in info
    assert info["version"] == lyricnn.__version__
    # the GEMM library the build picked (csrc/cpu/blas.h) and the kernel family it runs
    assert any(name in info["blas"].lower() for name in ("onednn", "openblas", "blas")), info["blas"]
    assert info["blas_core"], info
    # tools/check_blas_fallback.sh runs the tests against a second build with the fallback library
    expect = os.environ.get("LYRICNN_EXPECT_BLAS")
    if expect:
        assert expect in info["blas"].lower(), (expect, info["blas"])


def test_threads_roundtrip():
    old = lyricnn.get_num_threads()
    try:
        lyricnn.set_num_threads(1)
        assert lyricnn.get_num_threads() == 1
        assert lyricnn.build_info()["blas_num_threads"] == 1
        lyricnn.set_num_threads(2)
        assert lyricnn.get_num_threads() == 2
    finally:
        lyricnn.set_num_threads(old)


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-3, ValueError), ("4", TypeError), (2.5, TypeError)])
def test_threads_bad(bad, exc):
    with pytest.raises(exc, match="set_num_threads"):
        lyricnn.set_num_threads(bad)


def _stub_names(cls=None):
    """Public names the type stub lyricnn/_C.pyi declares (at module level, or in class cls)."""
    import ast
    with open(os.path.join(lyricnn.__path__[0], "_C.pyi")) as f:
        tree = ast.parse(f.read())
    body = tree.body
    if cls:
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    names = set()
    for n in body:
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            names.add(n.target.id)
    return {n for n in names if not n.startswith("_")}


def test_type_stub_matches_the_extension():
    """lyricnn/_C.pyi declares exactly what lyricnn._C has (module names, and each class's methods)."""
    from lyricnn import _C
    aliases = {"F32", "I32", "I64"}
    have = {n for n in dir(_C) if not n.startswith("_")}
    assert _stub_names() - aliases == have
    for cls in ("Engine", "Classifier", "Backend", "Buffer"):
        members = {n for n in dir(getattr(_C, cls)) if not n.startswith("_")}
        assert _stub_names(cls) == members, cls


def test_shared_constants_come_from_c():
    """The Python side reads enums and names from the extension instead of copying them."""
    from lyricnn import _C, classifier, encoder, _train_ops
    assert classifier.PROBLEM_TYPES == _C.PROBLEM_TYPES
    assert set(_C.HEAD_OPS) == {"linear", "relu", "tanh", "dropout", "batchnorm", "concat"}
    assert encoder._ACTIVATIONS["gelu"] == _C.ACT_GELU and encoder._ACTIVATIONS["gelu_new"] == _C.ACT_GELU_TANH
    assert (_train_ops.SEG_DECAY, _train_ops.SEG_FROZEN) == (_C.SEG_DECAY, _C.SEG_FROZEN)


def test_sdist_carries_every_engine_source(tmp_path):
    """`setup.py sdist` packs every file under csrc/ (the C core, its headers and the CUDA backend), so a
    source distribution builds as a checkout does."""
    import subprocess
    import sys
    import tarfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    egg = tmp_path / "egg"  # a fresh egg-info: an old SOURCES.txt would hide a missing MANIFEST.in rule
    egg.mkdir()
    r = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "-e", str(egg), "sdist", "-d", str(tmp_path)],
                       cwd=root,
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, LYRICNN_CUDA="0"))
    assert r.returncode == 0, r.stderr[-2000:]
    (tgz,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(tgz) as t:
        packed = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    want = {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(os.path.join(root, "csrc"))
            for f in fs if f.endswith((".c", ".h", ".cu", ".cuh"))}
    assert want and not want - packed, sorted(want - packed)
