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

# How long OpenMP threads spin at a barrier before they sleep. GNU OpenMP's default (no OMP_WAIT_POLICY,
# no GOMP_SPINCOUNT) is 300,000 spins, a few milliseconds: when another process shares the cores, a
# thread spinning for its team takes the core from the very thread it waits for, and a 2-thread step ran
# slower than 1 thread beside one busy process (README, "Threads on a shared CPU"). lyricnn lowers it to
# 10,000 (~0.1-0.3 ms: as fast when the cores are free) for the libgomp it loads, unless the environment
# sets either variable; libgomp reads them once, when it loads, so they are put back after the import.
WAIT_DEFAULT = "10000"


def _libgomp_loaded():
    """Whether the libgomp that lyricnn._C uses is loaded already (then it has read its settings): a wheel's
    own copy (lyricnn.libs/libgomp-*.so, renamed by auditwheel), else any libgomp.so.1 (the system's, or
    torch's, which has the same name and so serves every library that asks for libgomp.so.1)."""
    libs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lyricnn.libs")
    names = [n for n in (os.listdir(libs) if os.path.isdir(libs) else []) if n.startswith("libgomp")]
    names = ["/" + n for n in names] or ["/libgomp.so"]
    try:
        with open("/proc/self/maps") as f:
            return any(n in line for line in f for n in names)
    except OSError:
        return False


_user_wait = [k for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ]
if _user_wait:
    omp_wait = ", ".join("%s=%s" % (k, os.environ[k]) for k in _user_wait) + " (from the environment)"
elif _libgomp_loaded():
    omp_wait = "libgomp's own (it was loaded before lyricnn; set GOMP_SPINCOUNT before starting Python)"
else:
    omp_wait = "GOMP_SPINCOUNT=%s (lyricnn's default)" % WAIT_DEFAULT
    os.environ["GOMP_SPINCOUNT"] = WAIT_DEFAULT

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
finally:
    if not _user_wait and os.environ.get("GOMP_SPINCOUNT") == WAIT_DEFAULT:
        del os.environ["GOMP_SPINCOUNT"]  # read by libgomp when it loaded; not for child processes
