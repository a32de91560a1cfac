# One task runner for people and CI. A fresh machine needs python3, make and a C compiler;
# `make test` also needs a few Debian packages (scripts/test-deps says which, or installs
# them as root).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The example plugin (plugins/aegir-example): the tests need it, a real install does not.
PLUGIN := $(VENV)/.example-plugin

.PHONY: install run test test-fast test-deps lint typecheck pytest bench bench-hosting bench-scale clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(PLUGIN): $(STAMP) plugins/aegir-example/pyproject.toml
	$(BIN)/python -m pip install --quiet -e plugins/aegir-example
	touch $(PLUGIN)

# What the tests and benches need: the app with its dev tools, and the example plugin.
install: $(PLUGIN)

# Without the example plugin (a checkout where the tests ran has it installed: left out).
run: $(STAMP)
	AEGIR_PLUGINS_SKIP='["example"]' $(BIN)/aegir up

lint: $(PLUGIN)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo --no-cache

typecheck: $(PLUGIN)
	$(BIN)/mypy

# Any selection, e.g. `make pytest ARGS="-m e2e -x"`; a tier that cannot run is skipped,
# and the summary says why.
pytest: $(PLUGIN)
	$(BIN)/pytest $(ARGS)

test-deps:
	scripts/test-deps

# Every tier on both databases; a tier whose programs are missing fails instead of skipping.
test: $(PLUGIN) test-deps lint typecheck
	AEGIR_TEST_REQUIRE_ALL=1 $(BIN)/pytest

# The inner loop: all but the tiers that start the whole system or servers of their own.
test-fast: $(PLUGIN) lint typecheck
	$(BIN)/pytest -m "not (e2e or hosting or browser or fuzz or slow)"

bench: $(PLUGIN)
	$(BIN)/python -m bench.run

# The real back-end (issue 12): server verify and site install through Ansible on the
# test servers, and the login action, locally and over SSH, each against its baseline.
# Needs the test servers' programs (scripts/test-deps); writes its own sections.
bench-hosting: $(PLUGIN)
	$(BIN)/python -m bench.hosting
	$(BIN)/python -m bench.actions

# Faults and scale (issue 14): 1,000 run requests from 50 clients, pages over 10,000
# sites and 1,000,000 log lines, 1,000 websocket subscribers and 10,000 runs through one
# worker. Each writes its own section of bench/RESULTS.md; together about 20 minutes.
bench-scale: $(PLUGIN)
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.pages
	$(BIN)/python -m bench.fanout

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
