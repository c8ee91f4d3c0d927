# The two newcomer commands (README): `make demo` and `make test`. Everything else is a detail.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo demo-packages test test-fast lint lock setup system-packages ui bench layering

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

# The servers the tests and the demo start on loopback (OpenSSH, ProFTPD, gesftpserver, PostgreSQL, Redis): installed
# when missing, as root (otherwise it says what to install).
system-packages:
	@bash .ci/system-packages

demo-packages:
	@bash .ci/system-packages --demo

demo: setup demo-packages
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

# The UI on the demo's instance and registry, with the demo's SFTP server and GCS emulator running, so
# that runs and backfills launched from the UI deliver. Ctrl-C stops everything it started.
ui: setup demo-packages
	DAGSTER_HOME=$${DAGSTER_HOME:-$(CURDIR)/.dagster_home} $(BIN)/beop-exports demo --ui --skip-run

bench: setup system-packages
	$(BIN)/python bench/run.py
