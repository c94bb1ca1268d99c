# The two commands of README.md:  `make demo`  and  `make test` (whose session starts its own
# throwaway PostgreSQL unless PHASE4_TEST_POSTGRES_URL names a server). Both create .venv and
# install the package with every extra, at the versions of constraints.txt, on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := .[server,dicom,test]
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench system-deps constraints clean

# uv (from PyPI) installs the stack several times faster than pip, which keeps a fresh
# `make demo` under three minutes; pip remains the fallback. pyproject.toml holds ranges,
# constraints.txt the tested versions.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.8 \
	  && $(BIN)/uv pip install -q --python $(BIN)/python -c constraints.txt -e '$(EXTRAS)' \
	  || $(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt \
	       -e '$(EXTRAS)'
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
	$(BIN)/python -m pytest --durations=10

# frouros (a peer in the detection benchmark) declares numpy<2.2 and scipy<1.15 but runs on
# ours (its p-values are checked against a replica): installed without its dependencies.
bench: $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps frouros==0.9.0
	$(BIN)/python bench/ingest_http.py
	$(BIN)/python bench/ingest_during_detection.py
	$(BIN)/python bench/probe_overhead.py
	$(BIN)/python bench/detector_cost.py
	$(BIN)/python bench/replay_speed.py
	$(BIN)/python bench/detection_delay.py
	$(BIN)/python bench/estimated_rate_limits.py

# Rewrites constraints.txt from what .venv holds now (its header kept), after a version was
# changed there on purpose and the tests passed; not a dependency of the stamp, which would
# first reinstall the old versions.
constraints:
	sed -n '1,/^$$/p' constraints.txt > constraints.txt.new
	$(BIN)/uv pip freeze --python $(BIN)/python | grep -v -e '^-e ' -e '^phase4==' \
	  >> constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) phase4-data .pytest_cache
