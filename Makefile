# Every target bootstraps what it needs: a fresh clone needs only python3 (3.11+) and, for `make test`, npm.
# The `deploy` extra (dagster-postgres, -k8s, -celery) is installed too, so the tests can load deploy/dagster.yaml,
# and the `demo` extra (PyAV), which `make demo` needs to write the demo bucket.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
AZURITE := .tools/node_modules/.bin/azurite-blob
export DAGSTER_HOME ?= $(CURDIR)/.dagster

.PHONY: setup demo test lint ui bench clean postgres chromium

$(VENV)/.ready: pyproject.toml uv.lock
	@command -v python3 >/dev/null || { echo "error: python3 (3.11 or newer) is required" >&2; exit 1; }
	@test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	# --compile-bytecode: CI and many shells set PYTHONDONTWRITEBYTECODE, so without .pyc files written at install
	# every process recompiles Dagster from source (import dagster: 3.7 s of CPU instead of 1.8 s here).
	$(VENV)/bin/uv sync --frozen --inexact --extra deploy --extra demo --quiet --compile-bytecode
	@touch $@

setup: $(VENV)/.ready

$(AZURITE): .tools/package.json .tools/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm (Node 20) is required to install the Azurite emulator" >&2; exit 1; }
	npm ci --prefix .tools --no-audit --no-fund --loglevel=error
	@test -x $@ || { echo "error: Azurite did not install to $@" >&2; exit 1; }
	@touch $@

# The DuckLake index tests start a throwaway PostgreSQL server of their own (tests/servers.py) from Debian's packages,
# which keep it off PATH under /usr/lib/postgresql/<version>/bin. Installed here when missing, as root (CI is);
# elsewhere the tests skip with the reason, and under CI=true they fail.
postgres:
	@if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing PostgreSQL (Debian's postgresql) for the DuckLake index tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			postgresql >/dev/null || { echo "error: apt-get could not install postgresql" >&2; exit 1; }; \
	elif [ "$$CI" = true ]; then \
		echo "error: no PostgreSQL server (initdb) and no way to install it: run as root with apt-get" >&2; exit 1; \
	else \
		echo "warning: no PostgreSQL server found: the DuckLake index tests will skip (apt-get install postgresql)" >&2; \
	fi

# The report test renders the HTML report in headless Chromium from Debian's packages (`chromium`). Installed here when
# missing, as root (CI is); under CI=true a machine that cannot install it fails here, elsewhere the test skips.
chromium:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Chromium (Debian's chromium) for the report's headless-browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium >/dev/null || { echo "error: apt-get could not install chromium" >&2; exit 1; }; \
	elif [ "$$CI" = true ]; then \
		echo "error: no chromium and no way to install it: run as root with apt-get" >&2; exit 1; \
	else \
		echo "warning: no chromium found: the report's browser test will skip (apt-get install chromium)" >&2; \
	fi

demo: setup
	$(VENV)/bin/bucket-sync demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup $(AZURITE) postgres chromium lint
	$(PY) -m pytest

# The webserver and the daemon, started and stopped together (pipelines/ui.py): `dagster dev` without its
# "use dg dev instead" warning. `make ui PORT=3001` (or HOST=0.0.0.0) to serve elsewhere.
PORT ?= 3000
HOST ?= 127.0.0.1
ui: setup
	@$(PY) -m pipelines.instance >/dev/null
	@$(PY) -m pipelines.ui --host $(HOST) --port $(PORT)

bench: setup
	$(PY) benchmarks/probe_throughput.py
	$(PY) benchmarks/probe_requests.py
	$(PY) benchmarks/resync.py
	$(PY) benchmarks/ui_vs_cli.py --rounds 3
	$(PY) benchmarks/cli_cost.py

clean:
	rm -rf .bucket-sync .dagster .pytest_cache .ruff_cache
