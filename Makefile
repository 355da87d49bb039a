# lyricnn: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
PIP    := $(VPY) -m pip --disable-pip-version-check
FUZZ_SECONDS ?= 30

.PHONY: all venv deps build test demo bench fuzz nvcc-check clean

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
	touch $@

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
