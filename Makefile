# The README's commands. `make install` is implied by the others.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test test-fast lint format materials catalogue analyze-demo clean

install: $(STAMP)

# torch first, from the local CPU wheel: letting pip resolve it as a dependency
# would pull the newest CUDA build (gigabytes).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev]"
	touch $@

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -n 2 $(PYTEST_ARGS)

test-fast: install
	$(VENV)/bin/pytest -n 2 -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

materials: install
	$(VENV)/bin/accelmd materials

# Rebuild the bundled CIFs from crystallographic data (deterministic).
catalogue: install
	$(PY) scripts/build_catalogue.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
