# The two newcomer commands (README): `make demo` and `make test`. Everything else is a detail.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint lock setup system-packages ui bench layering

# Every fresh machine gets the same resolved versions: requirements.lock (made by `make lock`)
# pins the whole dependency set; the project itself is then installed without resolving again.
$(BIN)/beop-exports: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

setup: $(BIN)/beop-exports

# Re-resolve the lock after a change to pyproject.toml's dependencies (needs network to PyPI).
lock: setup
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11 \
	  --python-platform x86_64-unknown-linux-gnu -o requirements.lock -q

# OpenSSH's sshd serves the SFTP side of the demo and of the tests; PostgreSQL and Redis serve the
# topology tests (root installs them when missing).
system-packages:
	@if ! command -v /usr/sbin/sshd >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      openssh-server openssh-sftp-server >/dev/null; \
	  else echo "openssh-server is missing: sudo apt-get install openssh-server openssh-sftp-server"; exit 1; fi; \
	fi
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v redis-server >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      postgresql redis-server >/dev/null; \
	  else echo "the topology tests need: sudo apt-get install postgresql redis-server"; exit 1; fi; \
	fi

demo: setup system-packages
	DAGSTER_HOME=$${DAGSTER_HOME:-$(CURDIR)/.dagster_home} $(BIN)/beop-exports demo

test: setup system-packages
	$(BIN)/python -m pytest

# Everything but the end-to-end tests that start dagster dev.
test-fast: setup system-packages
	$(BIN)/python -m pytest -m "not e2e"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m beop_assets_tests.layering

ui: setup
	DAGSTER_HOME=$${DAGSTER_HOME:-$(CURDIR)/.dagster_home} $(BIN)/dagster dev

bench: setup system-packages
	$(BIN)/python bench/run.py
