# Liên thông — the two commands: `make demo` and `make test`. Both build the virtual environment first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_CITIZENS ?= 50000
PYTEST_ARGS ?=

.PHONY: demo test lint format bench bench-packages requirements clean venv

venv: $(INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' \
		|| { echo "Set PYTHON=/path/to/python3.11"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null \
		|| { echo "installing python3-venv with apt-get"; apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

demo: venv
	@rm -f var/lienthong.db var/lienthong.db-wal var/lienthong.db-shm
	env -u LIENTHONG_DB_URL $(BIN)/lienthong db upgrade
	env -u LIENTHONG_DB_URL $(BIN)/lienthong population generate --citizens $(DEMO_CITIZENS) --seed 2026 --defect-rate 0.02
	env -u LIENTHONG_DB_URL $(BIN)/lienthong population events --count 2000 --seed 2026
	env -u LIENTHONG_DB_URL $(BIN)/lienthong population export --out var/extract/citizens.csv
	env -u LIENTHONG_DB_URL $(BIN)/lienthong population stats

test: venv
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv
	$(BIN)/python bench/bench_population_load.py

bench-packages: venv
	$(BIN)/python bench/bench_package.py

requirements: venv
	(echo "# The whole resolved set, pinned. Regenerate with: make requirements"; \
	 $(BIN)/python -m pip freeze --exclude-editable | grep -iv '^lienthong') > requirements.txt

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
