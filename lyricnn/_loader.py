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


# LYRICNN_CPU_LEVEL caps the engine's CPU code (csrc/core/cpu_level.h) and, in oneDNN builds, oneDNN's
# kernels (set in C); OpenBLAS reads its kernel choice when it loads, so that cap is set here, before.
_OPENBLAS_CORE = {"x86-64": "Prescott", "x86-64-v1": "Prescott", "v1": "Prescott", "baseline": "Prescott",
                  "x86-64-v2": "Nehalem", "v2": "Nehalem", "sse4.2": "Nehalem",
                  "x86-64-v3": "Haswell", "v3": "Haswell", "avx2": "Haswell",
                  "x86-64-v4": "SkylakeX", "v4": "SkylakeX", "avx512": "SkylakeX"}
_level = os.environ.get("LYRICNN_CPU_LEVEL", "").strip().lower()
if _level in _OPENBLAS_CORE and "OPENBLAS_CORETYPE" not in os.environ:
    os.environ["OPENBLAS_CORETYPE"] = _OPENBLAS_CORE[_level]

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
