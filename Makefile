# promptlab: `make demo` runs an experiment on the local model, `make test` runs every test.
# Both set everything up on a fresh machine: the venv in .venv and, for the browser tests, Debian's
# chromium; for the run-log tests on PostgreSQL, Debian's postgresql (the tests start a throwaway
# server from it in a temp dir and stop it). llama-cpp-python is built once per machine with portable
# CPU flags (about 10 minutes on 2 cores) into ~/.cache/promptlab/wheels/<key>/ and installed from
# there before anything else (see tools/llama_build.py); then a smoke test loads the bundled model in a subprocess and generates.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install install-llama smoke demo lint test test-fast lab chromium postgresql clean-results

# the stamp is written only after the smoke test passed: a venv that crashes is never "installed"
$(STAMP): pyproject.toml tools/llama_build.py
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python tools/llama_build.py --python $(BIN)/python
	@echo "installing promptlab and its dependencies into $(VENV)"
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[dev]'
	$(BIN)/python tools/smoke.py
	@touch $@

install: $(STAMP)

# (re)install the portable llama-cpp-python alone; REBUILD=1 builds the wheel again
install-llama:
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python tools/llama_build.py --python $(BIN)/python $(if $(REBUILD),--rebuild)

smoke:
	$(BIN)/python tools/smoke.py

# the persona-vs-honest batch notebook, executed with papermill into results/<experiment>/ with an
# offline HTML copy; prints the per-variant summary and where the log, notebook and HTML are
demo: $(STAMP)
	$(BIN)/python -m lab run-notebook notebooks/persona_vs_honest.ipynb -p model local:smollm2 -p repeats 3 -p seed 7

# ruff (rules in pyproject's [tool.ruff]) and mypy on lab/ and tools/ ([tool.mypy]) before any test runs
lint: $(STAMP)
	$(BIN)/ruff check lab tests bench notebooks tools
	$(BIN)/mypy

test: $(STAMP) chromium postgresql lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) postgresql lint
	$(BIN)/python -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

# Debian's chromium and its driver, for the JupyterLab browser tests (never a downloaded browser).
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "chromium not found and cannot apt-get it here: browser tests will be skipped"; fi

# Debian's PostgreSQL server programs (initdb, pg_ctl), for the run-log tests on PostgreSQL: the tests
# start a throwaway server on a Unix socket in a temp dir and stop it (tests/postgres.py). Nothing is
# started here; the package's own cluster is not used.
postgresql:
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's postgresql for the run-log tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "PostgreSQL not found and cannot apt-get it here: its run-log tests will be skipped (they fail under CI=true)"; fi

clean-results:
	rm -rf results/*.db results/*.db-wal results/*.db-shm
