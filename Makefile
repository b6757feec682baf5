# Each target builds .venv itself; nothing relies on packages installed by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test test-fast lab bench catalog clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.test-installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(VENV)/.lab-installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[lab]'
	touch $@

test: $(VENV)/.test-installed
	$(PY) -m pytest -q -n 2 --dist worksteal

# for iterating: everything but the tests marked slow (experiments, whole-catalogue audit,
# real processes); `make test` runs them all
test-fast: $(VENV)/.test-installed
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not slow"

lab: $(VENV)/.lab-installed
	$(VENV)/bin/lossjax lab

catalog: $(VENV)/.lab-installed
	$(VENV)/bin/lossjax catalog

clean:
	rm -rf $(VENV) results .pytest_cache

# Timing tables; PyTorch is optional (pip install torch==2.13.0 for the side-by-side rows).
bench: $(VENV)/.lab-installed
	mkdir -p results
	$(PY) benchmarks/bench_audit.py --json results/bench_audit.json
	$(PY) benchmarks/bench_optim.py --json results/bench_optim.json
	$(PY) benchmarks/bench_losses.py --json results/bench_losses.json
	$(PY) benchmarks/bench_fused_ce.py --json results/bench_fused_ce.json
	$(PY) benchmarks/bench_precision.py --json results/bench_precision.json
	$(PY) benchmarks/bench_eager_checks.py --json results/bench_eager_checks.json
