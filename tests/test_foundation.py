import pytest

import lyricnn


def test_build_info_fields():
    info = lyricnn.build_info()
    for key in ("version", "compiler", "openmp", "num_threads", "blas", "cuda"):
        assert key in info, key
    assert "blas_core" in info
    assert info["version"] == lyricnn.__version__
    assert "openblas" in info["blas"].lower() or "blas" in info["blas"].lower()


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
