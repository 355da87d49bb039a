"""Import the C engine, after making sure its BLAS library can be found."""
import ctypes
import os


def _preload_scipy_openblas():
    # A build against the scipy-openblas32 wheel links libscipy_openblas.so; its rpath points at
    # site-packages for installed wheels, but an in-place (editable) build lives elsewhere, so the
    # library is loaded by path first. Builds with oneDNN (the system libdnnl) do not need it.
    try:
        import scipy_openblas32
    except ImportError:
        return False
    path = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True))
    if not os.path.exists(path):
        return False
    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    return True


try:
    try:
        from . import _C  # noqa: E402
    except ImportError as e:
        if "scipy_openblas" not in str(e) or not _preload_scipy_openblas():
            raise
        from . import _C  # noqa: E402
except ImportError as e:  # pragma: no cover - message for broken installs
    raise ImportError(
        "lyricnn's C engine (lyricnn._C) could not be imported: %s\n"
        "Fix: build it with `pip install -e .` (or `make build`) from the source tree; if a library is "
        "missing, `pip install scipy-openblas32` (OpenBLAS builds) or `apt-get install libdnnl-dev` "
        "(oneDNN builds)." % e) from e
