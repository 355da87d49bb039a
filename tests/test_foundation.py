import os

import pytest

import lyricnn


def test_build_info_fields():
    info = lyricnn.build_info()
    for key in ("version", "compiler", "openmp", "num_threads", "blas", "cuda"):
        assert key in info, key
    assert "blas_core" in info
    assert info["version"] == lyricnn.__version__
    # the GEMM library the build picked (csrc/lnn_blas.h) and the kernel family it runs
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
