"""Import the C engine, after making sure its BLAS library can be found."""
import ctypes
import os


def _preload_blas():
    # The extension links libscipy_openblas.so; its rpath points at site-packages for installed
    # wheels, but an in-place (editable) build lives elsewhere, so load the library by path first.
    try:
        import scipy_openblas32
    except ImportError:
        return
    libdir = scipy_openblas32.get_lib_dir()
    name = scipy_openblas32.get_library(fullname=True)
    path = os.path.join(libdir, name)
    if os.path.exists(path):
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


_preload_blas()

try:
    from . import _C  # noqa: E402
except ImportError as e:  # pragma: no cover - message for broken installs
    raise ImportError(
        "lyricnn's C engine (lyricnn._C) could not be imported: %s\n"
        "Fix: build it with `pip install -e .` (or `make build`) from the source tree; if the BLAS "
        "library is missing, `pip install scipy-openblas32`." % e) from e
