PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install -q -c constraints.txt -e .[dev,sweep]

.PHONY: install test test-slow demo bench lint

install:
	$(PIP_INSTALL)

lint: install
	$(PYTHON) -m ruff check gradflow sims figures tests benchmarks

test: install
	$(PYTHON) -m ruff check gradflow sims figures tests benchmarks
	$(PYTHON) -m pytest -q

test-slow: install
	$(PYTHON) -m pytest -q -m slow

demo: install
	$(PYTHON) -m gradflow.cli demo

bench: install
	$(PYTHON) benchmarks/bench_gradient.py
