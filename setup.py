"""Build of lyricnn._C, the C engine.

Environment switches (all optional):
  LYRICNN_OPENMP=0        build without OpenMP (default: on when the compiler passes a probe)
  LYRICNN_BLAS=auto|onednn|scipy-openblas32|system
                          the GEMM library (csrc/cpu/blas.h). auto (default): onednn where it is installed,
                          else scipy-openblas32. onednn: oneDNN's dnnl_sgemm (apt-get install libdnnl-dev),
                          kernels picked from CPUID; scipy-openblas32: the OpenBLAS wheel NumPy/SciPy use
                          (`pip install scipy-openblas32`); system: the system OpenBLAS (libopenblas-dev)
  LYRICNN_CUDA=auto|0|1   build the CUDA backend when nvcc and cuBLAS are found (auto), never (0), or
                          require it (1); LYRICNN_CUDA_ARCHS=80,90 (sm_ targets, PTX of the last);
                          LYRICNN_CUBLAS_INCLUDE / LYRICNN_CUBLAS_LIB where cuBLAS is not in the toolkit
  LYRICNN_PORTABLE=1      no -march=native (for wheels that move between machines)
  LYRICNN_DEBUG=1         -O0 -g
  LYRICNN_CFLAGS="..."    extra compiler flags
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildError(SystemExit):
    pass


def _version():
    ns = {}
    with open(os.path.join(HERE, "lyricnn", "_version.py")) as f:
        exec(f.read(), ns)
    return ns["__version__"]


def _env(name, default=""):
    return os.environ.get(name, default).strip()


def _cc():
    return sysconfig.get_config_var("CC").split()[0] if sysconfig.get_config_var("CC") else "cc"


def _compiler_version():
    try:
        out = subprocess.run([_cc(), "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0].strip()
    except Exception:
        return _cc()


def _try_compile(code, cflags, ldflags):
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        cmd = [_cc(), src, "-o", os.path.join(d, "probe")] + cflags + ldflags
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except Exception:
            return False
        return r.returncode == 0


def _openmp():
    if _env("LYRICNN_OPENMP", "1") in ("0", "off", "no", "false"):
        return [], [], "disabled by LYRICNN_OPENMP=0"
    code = "#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel\n{n=omp_get_num_threads();}\nreturn n>0?0:1;}\n"
    if _try_compile(code, ["-fopenmp"], ["-fopenmp"]):
        return ["-fopenmp"], ["-fopenmp"], "on"
    print("lyricnn: the compiler has no OpenMP (probe failed); building single-threaded. "
          "Install libgomp (gcc) or libomp (clang) for multi-threading.", file=sys.stderr)
    return [], [], "off (probe failed)"


_ONEDNN_PROBE = ("#include <oneapi/dnnl/dnnl.h>\nint main(void){float a=1,b=1,c=0;"
                 "return dnnl_sgemm('N','N',1,1,1,1.f,&a,1,&b,1,0.f,&c,1)==dnnl_success&&c==1.f?0:1;}\n")


def _onednn():
    for inc in ([], ["-I/usr/local/include"]):
        for ld in ([], ["-L/usr/local/lib"]):
            if _try_compile(_ONEDNN_PROBE, inc, ld + ["-ldnnl"]):
                return dict(include_dirs=[i[2:] for i in inc], library_dirs=[l[2:] for l in ld],
                            libraries=["dnnl"], define_macros=[("LNN_BLAS_ONEDNN", "1")],
                            extra_link_args=[], name="oneDNN (libdnnl)")
    return None


def _blas():
    choice = _env("LYRICNN_BLAS", "auto")
    if choice in ("auto", "onednn"):
        found = _onednn()
        if found:
            return found
        if choice == "onednn":
            raise BuildError("LYRICNN_BLAS=onednn but oneDNN (dnnl.h and libdnnl) was not found. Fix: "
                             "`apt-get install libdnnl-dev`, or unset LYRICNN_BLAS to fall back to OpenBLAS.")
        print("lyricnn: oneDNN not found (apt-get install libdnnl-dev for its faster GEMM kernels); "
              "using the scipy-openblas32 wheel.", file=sys.stderr)
        choice = "scipy-openblas32"
    if choice == "scipy-openblas32":
        try:
            import scipy_openblas32 as sob
        except ImportError:
            raise BuildError(
                "lyricnn needs a CPU BLAS for its GEMMs and could not import scipy_openblas32.\n"
                "Fix: `pip install scipy-openblas32` (the OpenBLAS wheel NumPy/SciPy use), then build again,\n"
                "or use the system OpenBLAS: `apt-get install libopenblas-dev` and LYRICNN_BLAS=system.")
        inc, lib, name = sob.get_include_dir(), sob.get_lib_dir(), sob.get_library()
        return dict(include_dirs=[inc], library_dirs=[lib], libraries=[name],
                    define_macros=[("LNN_BLAS_SCIPY_OPENBLAS", "1")],
                    # relative rpath for installed wheels; lyricnn/__init__ also preloads the library
                    extra_link_args=["-Wl,-rpath,$ORIGIN/../scipy_openblas32/lib"],
                    name="scipy-openblas32 %s" % getattr(sob, "__version__", "?"))
    if choice == "system":
        code = "#include <cblas.h>\nint main(void){float a=1,b=1,c=0;cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.f,&a,1,&b,1,0.f,&c,1);return c==1.f?0:1;}\n"
        for libs in (["-lopenblas"], ["-lcblas", "-lblas"], ["-lblas"]):
            for inc in ([], ["-I/usr/include/openblas"], ["-I/usr/include/x86_64-linux-gnu/openblas-pthread"]):
                if _try_compile(code, inc, libs):
                    return dict(include_dirs=[i[2:] for i in inc], library_dirs=[],
                                libraries=[l[2:] for l in libs], define_macros=[],
                                extra_link_args=[], name="system " + " ".join(libs))
        raise BuildError("LYRICNN_BLAS=system but no CBLAS was found. Fix: `apt-get install libopenblas-dev` "
                         "or unset LYRICNN_BLAS to use the scipy-openblas32 wheel.")
    raise BuildError("LYRICNN_BLAS must be 'auto', 'onednn', 'scipy-openblas32' or 'system', got %r" % choice)


def _cuda():
    """(plan, info): how to build the CUDA backend (None when it is not built) and a line for build_info()."""
    mode = _env("LYRICNN_CUDA", "auto")
    required = mode in ("1", "on", "yes", "true")
    if mode in ("0", "off", "no", "false"):
        return None, "disabled by LYRICNN_CUDA=0"
    home = _env("CUDA_HOME") or _env("CUDA_PATH")
    nvcc = os.path.join(home, "bin", "nvcc") if home else shutil.which("nvcc")
    if not nvcc or not os.path.exists(nvcc):
        if required:
            raise BuildError("LYRICNN_CUDA=1 but nvcc was not found. Fix: install the CUDA toolkit and "
                             "put nvcc on PATH, or set CUDA_HOME.")
        return None, "not built (nvcc not found)"
    try:
        ver = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
        ver = [l for l in ver.splitlines() if "release" in l][-1].strip()
    except Exception:
        ver = "nvcc"
    cu = sorted(glob.glob(os.path.join(HERE, "csrc", "cuda", "*.cu")))
    if not cu:
        return None, "not built (%s found; the CUDA backend is not part of this version)" % ver
    root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    inc, lib = [], []
    for d in (os.path.join(root, "targets", "x86_64-linux"), os.path.join(root, "targets", "sbsa-linux"), root):
        if os.path.isfile(os.path.join(d, "include", "cublasLt.h")):
            inc, lib = [os.path.join(d, "include")], [os.path.join(d, "lib"), os.path.join(d, "lib64")]
            break
    extra_inc, extra_lib = _env("LYRICNN_CUBLAS_INCLUDE"), _env("LYRICNN_CUBLAS_LIB")
    if extra_inc:
        inc, lib = [extra_inc], [extra_lib or os.path.join(os.path.dirname(extra_inc), "lib")]
    if not inc:
        msg = ("not built (%s found, but not the cuBLAS headers; install the CUDA toolkit's cuBLAS, or point "
               "LYRICNN_CUBLAS_INCLUDE / LYRICNN_CUBLAS_LIB at them)" % ver)
        if required:
            raise BuildError("LYRICNN_CUDA=1: " + msg)
        return None, msg
    archs = _env("LYRICNN_CUDA_ARCHS", "80,90").split(",")
    gencode = []
    for a in archs:
        gencode += ["-gencode", "arch=compute_%s,code=sm_%s" % (a, a)]
    gencode += ["-gencode", "arch=compute_%s,code=compute_%s" % (archs[-1], archs[-1])]  # PTX for newer GPUs
    plan = dict(nvcc=nvcc, sources=cu, version=ver, include=inc, lib=[d for d in lib if os.path.isdir(d)],
                gencode=gencode)
    return plan, "%s, sm_%s + PTX" % (ver, "/sm_".join(archs))


def _build_cuda(plan, out_dir, build_temp, debug):
    """Compile csrc/cuda/*.cu with nvcc into out_dir/liblyricnn_cuda.so (the core loads it on first use)."""
    os.makedirs(build_temp, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    objs = []
    flags = ["-std=c++17", "-O0" if debug else "-O3", "-Xcompiler", "-fPIC", "-I" + os.path.join(HERE, "csrc")]
    flags += ["-I" + d for d in plan["include"]] + plan["gencode"] + (["-g", "-lineinfo"] if debug else ["-lineinfo"])
    for src in plan["sources"]:
        obj = os.path.join(build_temp, os.path.basename(src)[:-3] + ".o")
        deps = [src] + glob.glob(os.path.join(HERE, "csrc", "cuda", "*.cuh")) + glob.glob(os.path.join(HERE, "csrc", "core", "*.h"))
        if not os.path.exists(obj) or max(os.path.getmtime(d) for d in deps) > os.path.getmtime(obj):
            print("nvcc %s" % os.path.relpath(src, HERE))
            subprocess.check_call([plan["nvcc"]] + flags + ["-c", src, "-o", obj])
        objs.append(obj)
    out = os.path.join(out_dir, "liblyricnn_cuda.so")
    link = [plan["nvcc"], "-shared"] + plan["gencode"] + ["-o", out] + objs
    link += ["-L" + d for d in plan["lib"]] + ["-lcublasLt", "-lcublas", "-lcudart"]
    link += ["-Xlinker", "-rpath=" + ":".join(plan["lib"])] if plan["lib"] else []
    subprocess.check_call(link)
    return out


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        import numpy

        omp_c, omp_l, omp_info = _openmp()
        blas = _blas()
        cuda_plan, cuda_info = _cuda()
        debug = _env("LYRICNN_DEBUG") == "1"
        cflags = ["-std=gnu11", "-fno-math-errno", "-Wall", "-Wextra", "-Wno-unused-parameter",
                  "-Wno-missing-field-initializers", "-fvisibility=hidden"]
        cflags += ["-O0", "-g"] if debug else ["-O3"]
        if _env("LYRICNN_PORTABLE") != "1":
            cflags.append("-march=native")
        cflags += omp_c + _env("LYRICNN_CFLAGS").split()

        def q(s):
            return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')

        for ext in self.extensions:
            ext.include_dirs += [numpy.get_include(), os.path.join(HERE, "csrc")] + blas["include_dirs"]
            ext.library_dirs += blas["library_dirs"]
            ext.libraries += blas["libraries"] + ["m", "dl"]
            ext.define_macros += blas["define_macros"] + [
                ("LNN_VERSION", q(_version())), ("LNN_COMPILER", q(_compiler_version())),
                ("LNN_BLAS_NAME", q(blas["name"])), ("LNN_CUDA_INFO", q(cuda_info)),
                ("LNN_CFLAGS", q(" ".join(cflags))), ("LNN_OPENMP_INFO", q(omp_info)),
            ]
            ext.extra_compile_args += cflags
            ext.extra_link_args += omp_l + blas["extra_link_args"]
        super().build_extensions()
        if cuda_plan:  # the CUDA backend: a shared object beside lyricnn._C, loaded when a model asks for it
            ext_dir = os.path.dirname(self.get_ext_fullpath("lyricnn._C"))
            _build_cuda(cuda_plan, ext_dir, os.path.join(self.build_temp, "cuda"), debug)


# csrc/ by role: core/ (status, dtypes, the backend interface), cpu/ (the CPU backend), models/ (the
# graphs), io/ (tokenizer, safetensors), py/ (the CPython binding). cuda/ is compiled by nvcc, apart.
ROLES = ("core", "cpu", "models", "io", "py")
sources = sorted(f for r in ROLES for f in glob.glob(os.path.join("csrc", r, "*.c")))
headers = sorted(f for r in ROLES for f in glob.glob(os.path.join("csrc", r, "*.h")))

setup(
    version=_version(),
    ext_modules=[Extension("lyricnn._C", sources=sources, depends=headers)],
    cmdclass={"build_ext": BuildExt},
)
