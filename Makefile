# `make demo` and `make test` work on a bare machine: they create .venv and install what is needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Hosts without an NVIDIA driver take the CPU build of torch (a loose `torch` pulls GBs of CUDA).
CONSTRAINTS := $(shell command -v nvidia-smi >/dev/null 2>&1 || echo "-c constraints/cpu.txt")
PYTEST_ARGS ?=
# COVERAGE=1 make test: line coverage of the three packages (pytest-cov), as a table and in
# coverage.json. Off by default: tracing costs the suite time that CI's budget does not have.
COVERAGE ?=
COV_ARGS := $(if $(COVERAGE),--cov=appliance --cov=cluster --cov=kernels --cov-report=term:skip-covered --cov-report=json:coverage.json)

.PHONY: install triton demo test lint bench gpu-check clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml constraints/cpu.txt kernels/_sorted_merge.c | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(CONSTRAINTS) --config-settings editable_mode=compat -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Triton's own venv (cluster/serve/_triton.py runs the server with its Python): nvidia-pytriton
# needs numpy<2, which the appliance's venv cannot share.
TRITON_VENV ?= .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.installed-stamp

$(TRITON_VENV)/bin/python:
	python3 -m venv $(TRITON_VENV)

$(TRITON_STAMP): constraints/triton.txt | $(TRITON_VENV)/bin/python
	$(TRITON_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TRITON_VENV)/bin/python -m pip install --quiet -r constraints/triton.txt
	touch $(TRITON_STAMP)

triton: $(TRITON_STAMP)

demo: install
	$(VENV)/bin/appliance demo

test: install triton
	$(VENV)/bin/pytest $(PYTEST_ARGS) $(COV_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: install
	$(PY) bench/drift.py
	$(PY) bench/serve.py
	$(PY) bench/train.py

# Every GPU path, run and timed (bench/gpu_check.py); CPU mode at small sizes without a GPU.
# No install step: on a lent GPU machine there is no .venv and nothing may be installed, and its
# own python3 holds torch, CuPy and NVML. E.g. make gpu-check GPU_CHECK_ARGS="--out $OUT".
GPU_CHECK_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_CHECK_ARGS ?=

gpu-check:
	$(GPU_CHECK_PY) bench/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) $(TRITON_VENV) .pytest_cache .ruff_cache
