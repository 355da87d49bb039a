"""setup.py's CUDA discovery, which the build, `python setup.py nvcc_check` (tools/nvcc_check.sh, make nvcc-check)
and users share: where cuBLAS comes from (the toolkit, else the pip package nvidia-cublas, which ships only
the versioned libcublas.so.N), how it is linked (unversioned links in the build folder and an rpath), and the
GPU targets (LYRICNN_CUDA_ARCHS). No GPU needed; the real link runs where nvcc and a cuBLAS are found."""
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup_py():
    spec = importlib.util.spec_from_file_location("lyricnn_setup_py", ROOT / "setup.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # setup() runs only as __main__
    return mod


def _pip_layout(base, major=13):
    """A site-packages folder holding what `pip install nvidia-cublas` puts there."""
    d = base / "site" / "nvidia" / ("cu%d" % major)
    (d / "include").mkdir(parents=True)
    (d / "lib").mkdir()
    for h in ("cublasLt.h", "cublas_v2.h", "cublas_api.h"):
        (d / "include" / h).write_text("/* */\n")
    for lib in ("libcublas.so.%d" % major, "libcublasLt.so.%d" % major):
        (d / "lib" / lib).write_bytes(b"")
    return base / "site", d


def test_cublas_from_the_pip_package_links_through_unversioned_links(setup_py, tmp_path, monkeypatch):
    monkeypatch.delenv("LYRICNN_CUBLAS_INCLUDE", raising=False)
    site, d = _pip_layout(tmp_path)
    cub = setup_py.find_cublas(root=str(tmp_path / "no-toolkit"), major=13, search=[str(site)])
    assert cub and cub["include"] == str(d / "include") and cub["lib"] == str(d / "lib")
    assert "nvidia-cublas" in cub["where"]
    link_dir = tmp_path / "build" / "cublas-link"
    args = setup_py.cublas_link_args(cub, str(link_dir), 13)
    for name in ("cublas", "cublasLt"):  # -lcublas finds the unversioned name; it points at the .so.13
        link = link_dir / ("lib%s.so" % name)
        assert link.is_symlink() and os.readlink(link) == str(d / "lib" / ("lib%s.so.13" % name))
    assert args[:2] == ["-L" + str(link_dir), "-L" + str(d / "lib")]
    assert "-lcublasLt" in args and "-lcublas" in args
    rpath = args[-1]
    assert rpath.startswith("-rpath=") and str(d / "lib") in rpath and "$ORIGIN/../nvidia/cu13/lib" in rpath
    # a second build reuses the folder
    assert setup_py.cublas_link_args(cub, str(link_dir), 13) == args


def test_the_toolkit_comes_first_and_the_environment_before_both(setup_py, tmp_path, monkeypatch):
    monkeypatch.delenv("LYRICNN_CUBLAS_INCLUDE", raising=False)
    site, _ = _pip_layout(tmp_path)
    tk = tmp_path / "cuda" / "targets" / "x86_64-linux"
    (tk / "include").mkdir(parents=True)
    (tk / "lib").mkdir()
    (tk / "include" / "cublasLt.h").write_text("")
    (tk / "include" / "cublas_v2.h").write_text("")
    (tk / "lib" / "libcublas.so").write_bytes(b"")
    # a toolkit without libcublasLt is passed over for the pip package
    assert "nvidia-cublas" in setup_py.find_cublas(root=str(tmp_path / "cuda"), major=13, search=[str(site)])["where"]
    (tk / "lib" / "libcublasLt.so").write_bytes(b"")
    cub = setup_py.find_cublas(root=str(tmp_path / "cuda"), major=13, search=[str(site)])
    assert cub["lib"] == str(tk / "lib") and "toolkit" in cub["where"]
    assert setup_py.cublas_link_args(cub, str(tmp_path / "links"), 13)[0] == "-L" + str(tk / "lib")
    assert not (tmp_path / "links").exists()  # unversioned names there: no links needed
    monkeypatch.setenv("LYRICNN_CUBLAS_INCLUDE", str(site / "nvidia" / "cu13" / "include"))
    assert "LYRICNN_CUBLAS" in setup_py.find_cublas(root=str(tmp_path / "cuda"), major=13, search=[])["where"]
    # a CUDA 12 pip layout is nvidia/cublas/, looked for with nvcc 12 only
    monkeypatch.delenv("LYRICNN_CUBLAS_INCLUDE")
    site12, d12 = _pip_layout(tmp_path / "v12", major=12)
    d12.rename(d12.parent / "cublas")
    assert setup_py.find_cublas(root=None, major=12, search=[str(site12)])["lib"] == str(d12.parent / "cublas" / "lib")
    other = setup_py.find_cublas(root=None, major=13, search=[str(site12)])  # none, or this checkout's .nvcc-deps
    assert other is None or str(site12) not in other["where"]


def test_gpu_targets(setup_py, monkeypatch):
    monkeypatch.setattr(setup_py, "_nvcc_codes", lambda nvcc: {"75", "80", "86", "87", "89", "90", "100", "120"})
    gen, desc = setup_py.cuda_gencode("nvcc", "")
    assert desc == "sm_75/sm_80/sm_86/sm_89/sm_90/sm_120 + PTX"  # nvcc 13: no sm_70
    assert gen[-2:] == ["-gencode", "arch=compute_120,code=compute_120"]
    monkeypatch.setattr(setup_py, "_nvcc_codes", lambda nvcc: {"70", "75", "80", "86", "89", "90"})
    gen, desc = setup_py.cuda_gencode("nvcc", "")
    assert desc.startswith("sm_70/sm_75/") and "120" not in desc  # nvcc 12: V100 in, sm_120 out
    assert setup_py.cuda_gencode("nvcc", "90")[0] == ["-gencode", "arch=compute_90,code=sm_90",
                                                       "-gencode", "arch=compute_90,code=compute_90"]
    assert setup_py.cuda_gencode("nvcc", "sm_80, 90")[1] == "sm_80/sm_90 + PTX"
    assert setup_py.cuda_gencode("nvcc", "native")[0] == ["-arch=native"]
    with pytest.raises(SystemExit, match="cannot compile for sm_61"):
        setup_py.cuda_gencode("nvcc", "61,80")


NVCC = shutil.which("nvcc") or os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")


@pytest.mark.skipif(not os.path.exists(NVCC), reason="needs nvcc (a compile and link check; no GPU)")
def test_a_program_links_against_the_discovered_cublas(setup_py, tmp_path):
    """The discovery's include folder and link arguments build a program that calls cuBLAS and cuBLASLt, with
    the library's folder in its rpath (here: the toolkit's cuBLAS, or the pip package's that
    tools/nvcc_check.sh fetches into .nvcc-deps/)."""
    major = setup_py._nvcc_version(NVCC)[0]
    cub = setup_py.find_cublas(setup_py._cuda_root(NVCC), major)
    if not cub:
        pytest.skip("no cuBLAS for nvcc here (tools/nvcc_check.sh fetches the pip package into .nvcc-deps/)")
    src = tmp_path / "probe.cu"
    src.write_text("#include <cublasLt.h>\n#include <cublas_v2.h>\n"
                   "int main(){cublasHandle_t h; cublasLtHandle_t l; return (int)cublasCreate(&h) + "
                   "(int)cublasLtCreate(&l) == -1;}\n")
    exe = tmp_path / "probe"
    cmd = [NVCC, "-I" + cub["include"], str(src), "-o", str(exe), "-cudart=static"]
    cmd += setup_py.cublas_link_args(cub, str(tmp_path / "links"), major)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    dyn = subprocess.run(["readelf", "-d", str(exe)], capture_output=True, text=True).stdout
    assert "libcublas.so.%d" % major in dyn and "libcublasLt.so.%d" % major in dyn
    assert cub["lib"] in dyn  # RUNPATH / RPATH
