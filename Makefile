# dialguard: `make run` starts the gateway on the embedded PostgreSQL; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-now test-future lint typecheck unit bench faults prompts clean

# The virtualenv is rebuilt when pyproject.toml changes (dependencies live there and only there).
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

run: $(VENV)/.installed
	$(BIN)/dialguard serve

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

typecheck: $(VENV)/.installed
	$(BIN)/mypy

unit: $(VENV)/.installed
	$(BIN)/pytest -q tests/unit

test: lint typecheck test-now test-future

test-now: $(VENV)/.installed
	$(BIN)/pytest -q

# The whole suite again with the clock two years ahead (Debian's faketime moves this process, the CLI
# subprocesses and the embedded PostgreSQL alike): no test and no code path may lean on today's date.
# This run's tests run on uvloop, the loop `serve` ships with; test-now's on asyncio's own.
test-future: $(VENV)/.installed
	@command -v faketime >/dev/null || { echo "make test-future needs Debian's faketime: apt-get install faketime" >&2; exit 2; }
	DIALGUARD_TEST_LOOP=uvloop faketime -f +2y $(BIN)/pytest -q -p no:cacheprovider -m "not faketime_unsafe"

bench: $(VENV)/.installed
	$(BIN)/python bench/gate_latency.py

# Faults under load (database stopped, killed, paused, blackholed; a gateway stalled or killed), about
# three minutes: the table in docs/reliability.md, written again.
faults: $(VENV)/.installed
	$(BIN)/python bench/faults.py --write docs/reliability.md

# The prompt audio, from the texts beside it (needs Debian's espeak-ng and sox).
prompts:
	tools/make_prompts.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
