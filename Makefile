# `make demo` and `make test` work on a bare machine: they create .venv and install what is needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Hosts without an NVIDIA driver take the CPU build of torch (a loose `torch` pulls GBs of CUDA).
CONSTRAINTS := $(shell command -v nvidia-smi >/dev/null 2>&1 || echo "-c constraints/cpu.txt")
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml constraints/cpu.txt kernels/_sorted_merge.c | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(CONSTRAINTS) --config-settings editable_mode=compat -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/appliance demo

test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: install
	$(PY) bench/drift.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
