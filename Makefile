# The README's commands. `make serve` and `make test` each set up the venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_CONSTRAINTS ?= constraints/cpu.txt

.PHONY: venv serve test lint bench clean

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

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
