# The two commands of README.md:  `make demo`  and  the test line (`make test` with the
# PostgreSQL URL). Both create .venv and install the pinned package on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint bench system-deps clean

# uv (from PyPI) installs the pinned stack several times faster than pip, which keeps a fresh
# `make demo` under three minutes; pip remains the fallback.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.8 \
	  && $(BIN)/uv pip install -q --python $(BIN)/python -e '.[test]' \
	  || $(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/phase4 demo

system-deps:
	bash .ci/system-deps

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest

# frouros (a peer in the detection benchmark) declares numpy<2.2 and scipy<1.15 but runs on
# ours (its p-values are checked against a replica): installed without its dependencies.
bench: $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps frouros==0.9.0
	$(BIN)/python bench/ingest_http.py
	$(BIN)/python bench/ingest_during_detection.py
	$(BIN)/python bench/probe_overhead.py
	$(BIN)/python bench/detector_cost.py
	$(BIN)/python bench/detection_delay.py
	$(BIN)/python bench/estimated_rate_limits.py

clean:
	rm -rf $(VENV) phase4-data .pytest_cache
