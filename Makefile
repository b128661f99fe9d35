# Two commands on a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

IPT := $(BIN)/ipt
DEMO_COURSE := --protocol ipt-16 --start 2026-03-02 --time 10:00 --tz Europe/London

demo: $(STAMP)
	$(IPT) protocols list
	$(IPT) rules check
	$(IPT) diagram --protocol ipt-16
	$(IPT) simulate $(DEMO_COURSE) --events tests/data/demo_course.yaml

test: $(STAMP)
	$(BIN)/ruff check ipt_workflow cli.py tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check ipt_workflow cli.py tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/plan_throughput.py
	$(BIN)/python bench/simulate_wall.py
	$(BIN)/python bench/cli_help.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
