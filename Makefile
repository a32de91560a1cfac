# One task runner for people and CI. A fresh machine needs python3, make and a C compiler;
# `make test` also needs a few Debian packages (scripts/test-deps says which, or installs
# them as root).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast test-deps lint typecheck pytest bench bench-hosting bench-scale clean

$(STAMP): pyproject.toml plugins/aegir-example/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e plugins/aegir-example
	touch $(STAMP)

install: $(STAMP)

# The example plugin is installed for the tests (make install); a real install leaves it out.
run: $(STAMP)
	AEGIR_PLUGINS_SKIP='["example"]' $(BIN)/aegir up

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

# Any selection, e.g. `make pytest ARGS="-m e2e -x"`; a tier that cannot run is skipped,
# and the summary says why.
pytest: $(STAMP)
	$(BIN)/pytest $(ARGS)

test-deps:
	scripts/test-deps

# Every tier on both databases; a tier whose programs are missing fails instead of skipping.
test: test-deps lint typecheck
	AEGIR_TEST_REQUIRE_ALL=1 $(BIN)/pytest

# The inner loop: all but the tiers that start the whole system or servers of their own.
test-fast: lint typecheck
	$(BIN)/pytest -m "not (e2e or hosting or browser or fuzz or slow)"

bench: $(STAMP)
	$(BIN)/python -m bench.run

# The real back-end (issue 12): server verify and site install through Ansible on the
# test servers, and the login action, locally and over SSH, each against its baseline.
# Needs the test servers' programs (scripts/test-deps); writes its own sections.
bench-hosting: $(STAMP)
	$(BIN)/python -m bench.hosting
	$(BIN)/python -m bench.actions

# Faults and scale (issue 14): 1,000 run requests from 50 clients, pages over 10,000
# sites and 1,000,000 log lines, 1,000 websocket subscribers and 10,000 runs through one
# worker. Each writes its own section of bench/RESULTS.md; together about 20 minutes.
bench-scale: $(STAMP)
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.pages
	$(BIN)/python -m bench.fanout

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
