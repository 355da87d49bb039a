"""Build of lyricnn._C, the C engine.

Environment switches (all optional):
  LYRICNN_OPENMP=0        build without OpenMP (default: on when the compiler passes a probe; on macOS with
                          Homebrew's libomp, or the one under LYRICNN_LIBOMP)
  LYRICNN_BLAS=auto|onednn|scipy-openblas32|system
                          the GEMM library (csrc/cpu/blas.h). auto (default): onednn where it is installed,
                          else scipy-openblas32. onednn: oneDNN's dnnl_sgemm (apt-get install libdnnl-dev),
                          kernels picked from CPUID; scipy-openblas32: the OpenBLAS wheel NumPy/SciPy use
                          (`pip install scipy-openblas32`); system: the system OpenBLAS (libopenblas-dev)
  LYRICNN_CUDA=auto|0|1   build the CUDA backend when nvcc and cuBLAS are found (auto), never (0), or
                          require it (1). cuBLAS: the toolkit's, else the pip package nvidia-cublas, else
                          LYRICNN_CUBLAS_INCLUDE / LYRICNN_CUBLAS_LIB (find_cublas below)
  LYRICNN_CUDA_ARCHS=...  the GPU targets: a list of sm_ numbers such as 80,90 (PTX of the last), or native
                          (this machine's GPUs: the shortest build); default CUDA_ARCHS below, sm_75 to sm_120
  `python setup.py nvcc_check` compiles and links the CUDA backend for every target without a GPU
  LYRICNN_NATIVE=1        compile everything with -march=native for this machine only (one CPU level).
                          Default: portable. csrc/cpu/ is compiled once per x86-64 ISA level (x86-64,
                          x86-64-v2, x86-64-v3 = AVX2+FMA, x86-64-v4 = AVX-512) and the level is chosen at
                          import from CPUID (core/cpu_level.h; LYRICNN_CPU_LEVEL caps it at run time);
                          the rest of csrc/ is compiled for the baseline. One level on other CPUs.
  LYRICNN_CPU_LEVELS=x86-64,x86-64-v4   only these levels (a faster development build; x86-64 is needed
                          to run on every x86-64 CPU)
  LYRICNN_PORTABLE=1      accepted for old scripts: the default now
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

from setuptools import Command, Extension, setup
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
    if sys.platform == "darwin":  # Apple clang: the front end's OpenMP with LLVM's libomp (brew install libomp)
        for prefix in [_env("LYRICNN_LIBOMP")] + ["/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"]:
            if prefix and os.path.isfile(os.path.join(prefix, "include", "omp.h")):
                c = ["-Xpreprocessor", "-fopenmp", "-I" + os.path.join(prefix, "include")]
                l = ["-L" + os.path.join(prefix, "lib"), "-lomp", "-Wl,-rpath," + os.path.join(prefix, "lib")]
                if _try_compile(code, c, l):
                    return c, l, "on (libomp in %s)" % prefix
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


# The x86-64 psABI levels csrc/cpu/ is compiled for (name, rank as in core/cpu_level.h, flags), and the
# flags that stand for -march=x86-64-vN where a compiler (gcc < 11, clang < 12) lacks the names.
_X86_LEVELS = (
    ("x86-64", 1, [], []),
    ("x86-64-v2", 2, ["-march=x86-64-v2"], ["-msse3", "-mssse3", "-msse4.1", "-msse4.2", "-mpopcnt", "-mcx16", "-msahf"]),
    ("x86-64-v3", 3, ["-march=x86-64-v3"], ["-msse3", "-mssse3", "-msse4.1", "-msse4.2", "-mpopcnt", "-mcx16", "-msahf",
                                             "-mavx", "-mavx2", "-mfma", "-mf16c", "-mbmi", "-mbmi2", "-mlzcnt",
                                             "-mmovbe"]),
    ("x86-64-v4", 4, ["-march=x86-64-v4"], ["-msse3", "-mssse3", "-msse4.1", "-msse4.2", "-mpopcnt", "-mcx16", "-msahf",
                                             "-mavx", "-mavx2", "-mfma", "-mf16c", "-mbmi", "-mbmi2", "-mlzcnt",
                                             "-mmovbe", "-mavx512f", "-mavx512bw", "-mavx512cd", "-mavx512dq",
                                             "-mavx512vl"]),
)


def _cpu_levels():
    """(levels, tools, info): the copies of csrc/cpu/ to compile, [(name, entry symbol, rank, flags)]; the
    (linker driver, objcopy) that make each copy's symbols local when there are several; a line for
    build_info()."""
    if _env("LYRICNN_NATIVE") == "1":
        return [("native", "lnn_cpu_entry_native", 0, [])], None, "native (LYRICNN_NATIVE=1: -march=native)"
    import platform
    objcopy = shutil.which("objcopy")
    x86 = platform.machine().lower() in ("x86_64", "amd64") and sys.platform.startswith("linux")
    if not x86 or not objcopy:
        why = "not x86-64 Linux" if not x86 else "objcopy not found"
        return [("generic", "lnn_cpu_entry_generic", 0, [])], None, "generic (one level: %s)" % why
    want = [v.strip() for v in _env("LYRICNN_CPU_LEVELS").split(",") if v.strip()]
    names = [lv[0] for lv in _X86_LEVELS]
    bad = [v for v in want if v not in names]
    if bad:
        raise BuildError("LYRICNN_CPU_LEVELS: unknown level(s) %s; use a comma-separated subset of %s"
                         % (", ".join(bad), ", ".join(names)))
    levels = []
    for name, rank, march, spelled in _X86_LEVELS:
        if want and name not in want:
            continue
        flags = march if not march or _try_compile("int main(void){return 0;}\n", march, []) else spelled
        levels.append((name, "lnn_cpu_entry_" + name.replace("-", "_"), rank, flags))
    return levels, (_cc(), objcopy), "dispatched at import: " + ", ".join(lv[0] for lv in levels)


# ------------------------------------------------------------------ the CUDA backend (csrc/cuda/)
# One discovery of nvcc, the toolkit and cuBLAS, shared by the build (build_ext), the compile check
# (`python setup.py nvcc_check`, which tools/nvcc_check.sh and `make nvcc-check` run) and users.

# The sm_ targets of a default build: the GPUs students and labs have -- T4 (75), A100 (80), RTX 30xx / A10
# (86), L4 / RTX 40xx (89), H100 (90), RTX 50xx (120) -- plus PTX of the last for newer ones, and V100 (70)
# where the toolkit still offers it (nvcc 12; nvcc 13 stops at sm_75). The bf16 tensor-core kernels are
# compiled for sm_80+ only (csrc/cuda/attention_tc.cu); bf16 activations are refused below sm_80.
CUDA_ARCHS = ("70", "75", "80", "86", "89", "90", "120")


def _nvcc():
    """nvcc's path (CUDA_HOME / CUDA_PATH, else PATH), or None."""
    home = _env("CUDA_HOME") or _env("CUDA_PATH")
    nvcc = os.path.join(home, "bin", "nvcc") if home else shutil.which("nvcc")
    return nvcc if nvcc and os.path.exists(nvcc) else None


def _run(cmd, timeout=60):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return r.stdout + r.stderr
    except Exception:
        return ""


def _nvcc_version(nvcc):
    """(major, 'Cuda compilation tools, release X.Y, VX.Y.Z')"""
    lines = [l.strip() for l in _run([nvcc, "--version"]).splitlines() if "release" in l]
    if not lines:
        return 0, "nvcc"
    try:
        return int(lines[-1].split("release")[1].split(".")[0]), lines[-1]
    except (IndexError, ValueError):
        return 0, lines[-1]


def _cuda_root(nvcc):
    """The toolkit's root: nvcc's own TOP (through wrapper scripts such as /usr/local/bin/nvcc), else the
    folder above nvcc's."""
    for line in _run([nvcc, "--dryrun", "-x", "cu", "-E", os.devnull]).splitlines():
        if line.startswith("#$ TOP="):
            return os.path.realpath(line[len("#$ TOP="):].strip())
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))


def _site_dirs():
    import site
    dirs = list(sys.path)
    try:
        dirs += site.getsitepackages() + [site.getusersitepackages()]
    except Exception:
        pass
    seen, out = set(), []
    for d in dirs:
        d = os.path.abspath(d or os.curdir)
        if d not in seen and os.path.isdir(d):
            seen.add(d)
            out.append(d)
    return out


def _has_lib(d, name, major):
    return os.path.exists(os.path.join(d, "lib%s.so" % name)) or bool(
        glob.glob(os.path.join(d, "lib%s.so.%s*" % (name, major or ""))))


def find_cublas(root=None, major=None, search=None):
    """Where the cuBLAS / cuBLASLt headers and libraries are: dict(include, lib, where), or None. Looked for,
    in order: LYRICNN_CUBLAS_INCLUDE / LYRICNN_CUBLAS_LIB; the toolkit of nvcc (root); the pip package
    nvidia-cublas (nvidia/cu<major>/{include,lib}; CUDA 12: nvidia/cublas/...) in the Python path (search, by
    default sys.path and the site folders); the copy tools/nvcc_check.sh fetches into .nvcc-deps/."""
    cands = []
    inc = _env("LYRICNN_CUBLAS_INCLUDE")
    if inc:
        cands.append((inc, _env("LYRICNN_CUBLAS_LIB") or os.path.join(os.path.dirname(inc), "lib"),
                      "LYRICNN_CUBLAS_INCLUDE"))
    if root:
        for d in (os.path.join(root, "targets", "x86_64-linux"), os.path.join(root, "targets", "sbsa-linux"), root):
            for lib in ("lib64", "lib"):
                cands.append((os.path.join(d, "include"), os.path.join(d, lib), "the CUDA toolkit (%s)" % d))
    pip = ["nvidia/cu%s" % major] + (["nvidia/cublas"] if major == 12 else [])
    for s in list(search if search is not None else _site_dirs()) + [os.path.join(HERE, ".nvcc-deps")]:
        for sub in pip:
            d = os.path.join(s, *sub.split("/"))
            cands.append((os.path.join(d, "include"), os.path.join(d, "lib"), "the pip package nvidia-cublas (%s)" % d))
    for inc, lib, where in cands:
        if (os.path.isfile(os.path.join(inc, "cublasLt.h")) and os.path.isfile(os.path.join(inc, "cublas_v2.h"))
                and _has_lib(lib, "cublas", major) and _has_lib(lib, "cublasLt", major)):
            return dict(include=os.path.abspath(inc), lib=os.path.abspath(lib), where=where)
    return None


def cublas_link_args(cub, link_dir, major):
    """Linker arguments for cuBLAS / cuBLASLt from cub (find_cublas): -L, -l and the rpath. The pip package ships
    only the versioned libcublas.so.<major> and libcublasLt.so.<major>, which -lcublas does not find: then
    link_dir gets unversioned links to them (the library's SONAME, the versioned name, is what the loader
    looks for at run time). The rpath: the libraries' folder, and $ORIGIN/../nvidia/cu<major>/lib for an
    install beside the pip package in the same site-packages."""
    lib, libdirs = cub["lib"], [cub["lib"]]
    for name in ("cublasLt", "cublas"):
        if os.path.exists(os.path.join(lib, "lib%s.so" % name)):
            continue
        versioned = sorted(glob.glob(os.path.join(lib, "lib%s.so.%s*" % (name, major or ""))), key=len)
        os.makedirs(link_dir, exist_ok=True)
        link = os.path.join(link_dir, "lib%s.so" % name)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.abspath(versioned[0]), link)
        if link_dir not in libdirs:
            libdirs.insert(0, link_dir)
    rpath = [lib, "$ORIGIN/../nvidia/cu%s/lib" % major]
    return ["-L" + d for d in libdirs] + ["-lcublasLt", "-lcublas", "-Xlinker", "-rpath=" + ":".join(rpath)]


def _nvcc_codes(nvcc):
    """The sm_ codes this nvcc can compile for ('75', '80', ...); empty when it cannot say (old nvcc)."""
    return {c[3:] for c in _run([nvcc, "--list-gpu-code"]).split() if c.startswith("sm_")}


def cuda_gencode(nvcc, spec=None):
    """(gencode flags, description) for LYRICNN_CUDA_ARCHS: 'native' (the GPUs of this machine, nvcc -arch=native),
    a comma list of sm_ numbers (PTX of the last), or unset: CUDA_ARCHS where nvcc offers them."""
    spec = (spec if spec is not None else _env("LYRICNN_CUDA_ARCHS")).replace(" ", "")
    if spec == "native":
        return ["-arch=native"], "the GPUs of the build machine (-arch=native)"
    codes = _nvcc_codes(nvcc)
    if spec:
        archs = [a[3:] if a.startswith("sm_") else a for a in spec.split(",") if a]
        bad = [a for a in archs if codes and a not in codes]
        if bad or not archs:
            raise BuildError("LYRICNN_CUDA_ARCHS=%s: %s cannot compile for %s (it offers %s); use numbers such as "
                             "80,90 or native" % (spec, nvcc, ", ".join("sm_" + a for a in bad) or "nothing",
                                                  ", ".join(sorted(codes, key=int))))
    else:
        archs = [a for a in CUDA_ARCHS if not codes or a in codes]
    gencode = []
    for a in archs:
        gencode += ["-gencode", "arch=compute_%s,code=sm_%s" % (a, a)]
    gencode += ["-gencode", "arch=compute_%s,code=compute_%s" % (archs[-1], archs[-1])]  # PTX for newer GPUs
    return gencode, "sm_%s + PTX" % "/sm_".join(archs)


def _cuda():
    """(plan, info): how to build the CUDA backend (None when it is not built) and a line for build_info()."""
    mode = _env("LYRICNN_CUDA", "auto")
    required = mode in ("1", "on", "yes", "true")
    if mode in ("0", "off", "no", "false"):
        return None, "disabled by LYRICNN_CUDA=0"
    nvcc = _nvcc()
    if not nvcc:
        if required:
            raise BuildError("LYRICNN_CUDA=1 but nvcc was not found. Fix: install the CUDA toolkit and "
                             "put nvcc on PATH, or set CUDA_HOME.")
        return None, "not built (nvcc not found)"
    major, ver = _nvcc_version(nvcc)
    cu = sorted(glob.glob(os.path.join(HERE, "csrc", "cuda", "*.cu")))
    if not cu:
        return None, "not built (%s found; the CUDA backend is not part of this version)" % ver
    root = _cuda_root(nvcc)
    cub = find_cublas(root, major)
    if not cub:
        msg = ("not built (%s found, but not cuBLAS: install the toolkit's cuBLAS or `pip install nvidia-cublas`, or "
               "point LYRICNN_CUBLAS_INCLUDE / LYRICNN_CUBLAS_LIB at them)" % ver)
        if required:
            raise BuildError("LYRICNN_CUDA=1: " + msg)
        return None, msg
    gencode, archs = cuda_gencode(nvcc)
    plan = dict(nvcc=nvcc, major=major, sources=cu, version=ver, root=root, cublas=cub, gencode=gencode)
    return plan, "%s, %s, cuBLAS from %s" % (ver, archs, cub["where"])


def _build_cuda(plan, out_dir, build_temp, debug, jobs=1):
    """Compile csrc/cuda/*.cu with nvcc (jobs at a time) into out_dir/liblyricnn_cuda.so, which the core loads on
    first use. Objects are reused while they are newer than their sources and headers and built for the same
    targets."""
    from concurrent.futures import ThreadPoolExecutor

    os.makedirs(build_temp, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    flags = ["-std=c++17", "-O0" if debug else "-O3", "-Xcompiler", "-fPIC", "-Xcompiler", "-Wall",
             "-I" + os.path.join(HERE, "csrc"), "-I" + plan["cublas"]["include"]]
    flags += plan["gencode"] + (["-g", "-lineinfo"] if debug else ["-lineinfo"])
    stamp = os.path.join(build_temp, "flags.txt")
    same = os.path.exists(stamp) and open(stamp).read() == " ".join(flags)
    headers = glob.glob(os.path.join(HERE, "csrc", "cuda", "*.cuh")) + glob.glob(os.path.join(HERE, "csrc", "core", "*.h"))
    todo, objs = [], []
    for src in plan["sources"]:
        obj = os.path.join(build_temp, os.path.basename(src)[:-3] + ".o")
        if not same or not os.path.exists(obj) or max(os.path.getmtime(d) for d in [src] + headers) > os.path.getmtime(obj):
            todo.append((src, obj))
        objs.append(obj)

    def compile_one(job):
        src, obj = job
        r = subprocess.run([plan["nvcc"]] + flags + ["-c", src, "-o", obj], capture_output=True, text=True)
        return src, r

    failed = []
    with ThreadPoolExecutor(max(1, jobs)) as ex:
        for src, r in ex.map(compile_one, todo):
            print("nvcc %s" % os.path.relpath(src, HERE))
            if r.stdout or r.stderr:
                print((r.stdout + r.stderr).rstrip(), file=sys.stderr)
            if r.returncode:
                failed.append(os.path.relpath(src, HERE))
    if failed:
        raise BuildError("nvcc failed on %s (see the messages above)" % ", ".join(failed))
    with open(stamp, "w") as f:
        f.write(" ".join(flags))
    out = os.path.join(out_dir, "liblyricnn_cuda.so")
    # the CUDA runtime linked statically (nvcc's default, said explicitly): the library needs the driver and
    # cuBLAS at run time, not a matching libcudart
    link = [plan["nvcc"], "-shared", "-cudart=static"] + plan["gencode"] + ["-o", out] + objs
    link += cublas_link_args(plan["cublas"], os.path.join(build_temp, "cublas-link"), plan["major"])
    subprocess.check_call(link)
    return out


class NvccCheck(Command):
    """`python setup.py nvcc_check`: compile and link the CUDA backend for every architecture of a default build
    (CUDA_ARCHS, or LYRICNN_CUDA_ARCHS) into a temporary folder, without a GPU: what CI runs (make nvcc-check)."""
    description = "compile and link csrc/cuda for every target architecture (no GPU needed)"
    user_options = [("jobs=", "j", "nvcc processes at a time (default: the CPU count)")]

    def initialize_options(self):
        self.jobs = None

    def finalize_options(self):
        self.jobs = int(self.jobs) if self.jobs else (os.cpu_count() or 1)

    def run(self):
        import time
        os.environ["LYRICNN_CUDA"] = "1"
        plan, info = _cuda()
        print("nvcc-check: %s" % info)
        t0 = time.time()
        with tempfile.TemporaryDirectory() as d:
            out = _build_cuda(plan, d, os.path.join(d, "obj"), False, self.jobs)
            print("nvcc-check: ok, linked %s (%d sources, %d jobs) in %.0f s" % (
                os.path.basename(out), len(plan["sources"]), self.jobs, time.time() - t0))


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
        levels, tools, level_info = _cpu_levels()
        if _env("LYRICNN_NATIVE") == "1":
            cflags.append("-march=native")
        cflags += omp_c + _env("LYRICNN_CFLAGS").split()

        def q(s):
            return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')

        for ext in self.extensions:
            ext.include_dirs += [numpy.get_include(), os.path.join(HERE, "csrc")] + blas["include_dirs"]
            ext.library_dirs += blas["library_dirs"]
            ext.libraries += blas["libraries"] + ["m", "dl", "pthread"]
            ext.define_macros += blas["define_macros"] + [
                ("LNN_VERSION", q(_version())), ("LNN_COMPILER", q(_compiler_version())),
                ("LNN_BLAS_NAME", q(blas["name"])), ("LNN_CUDA_INFO", q(cuda_info)),
                ("LNN_CFLAGS", q(" ".join(cflags))), ("LNN_OPENMP_INFO", q(omp_info)),
                ("LNN_CPU_LEVEL_INFO", q(level_info)),
                ("LNN_CPU_LEVELS", " ".join('X(%s,"%s",%d)' % (sym, name, rank) for name, sym, rank, _ in levels)),
            ]
            ext.extra_compile_args += cflags
            ext.extra_link_args += omp_l + blas["extra_link_args"]
        # setuptools compares file times only, and pip wheel builds in the source tree: when the flags, the
        # CPU levels or the BLAS differ from the last build in this build directory, everything is rebuilt
        import json
        stamp = os.path.join(self.build_temp, "lyricnn-build-config.json")
        config = json.dumps(dict(cc=_compiler_version(), cflags=cflags, levels=levels, blas=blas["name"],
                                 macros=[list(m) for m in blas["define_macros"]]), sort_keys=True)
        try:
            with open(stamp) as f:
                self.force = self.force or f.read() != config
        except OSError:
            self.force = True
        for ext in self.extensions:
            self._cpu_copies(ext, levels, tools, cflags)
        super().build_extensions()
        with open(stamp, "w") as f:
            f.write(config)
        if cuda_plan:  # the CUDA backend: a shared object beside lyricnn._C, loaded when a model asks for it
            ext_dir = os.path.dirname(self.get_ext_fullpath("lyricnn._C"))
            _build_cuda(cuda_plan, ext_dir, os.path.join(self.build_temp, "cuda"), debug, self.parallel or 1)

    def _cpu_copies(self, ext, levels, tools, cflags):
        """csrc/cpu/ once per CPU level: each copy compiled with its level's flags and its entry point's name
        (LNN_CPU_ENTRY), linked into one relocatable object whose other symbols objcopy makes local, so the
        copies never clash; any file in csrc/cpu/ is part of it. One level: compiled in the extension."""
        cpu = [f for f in ext.sources if os.path.dirname(f) == os.path.join("csrc", "cpu")]
        if len(levels) == 1:
            ext.define_macros.append(("LNN_CPU_ENTRY", levels[0][1]))
            ext.extra_compile_args += levels[0][3]
            return
        ext.sources = [f for f in ext.sources if f not in cpu]
        ext.depends = list(ext.depends) + cpu
        cc, objcopy = tools
        newest = max(os.path.getmtime(f) for f in list(ext.depends) + [os.path.abspath(__file__)])
        jobs, copies = [], []
        for name, sym, rank, flags in levels:
            out_dir = os.path.join(self.build_temp, "cpu-" + name)
            objs = [os.path.join(out_dir, os.path.basename(f)[:-2] + ".o") for f in cpu]
            os.makedirs(out_dir, exist_ok=True)
            for src, obj in zip(cpu, objs):
                if self.force or not os.path.exists(obj) or os.path.getmtime(obj) < newest:
                    jobs.append((src, obj, out_dir, ext.define_macros + [("LNN_CPU_ENTRY", sym)], cflags + flags))
            copies.append((sym, objs, os.path.join(self.build_temp, "cpu-%s.o" % name)))
            ext.extra_objects.append(copies[-1][2])

        def compile_one(job):
            src, obj, out_dir, macros, args = job
            got = self.compiler.compile([src], output_dir=out_dir, macros=macros, include_dirs=ext.include_dirs,
                                        extra_postargs=args, depends=ext.depends)
            os.replace(got[0], obj)

        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=max(1, int(self.parallel or 1))) as pool:
            list(pool.map(compile_one, jobs))
        for sym, objs, out in copies:
            if jobs or not os.path.exists(out):
                subprocess.check_call([cc, "-r", "-nostdlib", "-o", out] + objs)
                subprocess.check_call([objcopy, "--keep-global-symbol=" + sym, out])


# csrc/ by role: core/ (status, dtypes, the backend interface), cpu/ (the CPU backend), models/ (the
# graphs), io/ (tokenizer, safetensors), py/ (the CPython binding). cuda/ is compiled by nvcc, apart.
ROLES = ("core", "cpu", "models", "io", "py")
sources = sorted(f for r in ROLES for f in glob.glob(os.path.join("csrc", r, "*.c")))
headers = sorted(f for r in ROLES for f in glob.glob(os.path.join("csrc", r, "*.h")))

if __name__ == "__main__":  # also under pip's build backend (setuptools runs this file as __main__)
    setup(
        version=_version(),
        ext_modules=[Extension("lyricnn._C", sources=sources, depends=headers)],
        cmdclass={"build_ext": BuildExt, "nvcc_check": NvccCheck},
    )
