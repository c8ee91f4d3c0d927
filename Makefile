# The two newcomer commands (README): `make demo` and `make test`. Everything else is a detail.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup system-packages ui bench

$(BIN)/beop-exports: pyproject.toml
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/beop-exports

# OpenSSH's sshd serves the SFTP side of the demo and of the tests (root installs it when missing).
system-packages:
	@if ! command -v /usr/sbin/sshd >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      openssh-server openssh-sftp-server >/dev/null; \
	  else echo "openssh-server is missing: sudo apt-get install openssh-server openssh-sftp-server"; exit 1; fi; \
	fi

demo: setup system-packages
	DAGSTER_HOME=$${DAGSTER_HOME:-$(CURDIR)/.dagster_home} $(BIN)/beop-exports demo

test: setup system-packages
	$(BIN)/python -m pytest

# The UI on the demo's instance and registry, with the demo's SFTP server and GCS emulator running, so
# that runs and backfills launched from the UI deliver. Ctrl-C stops everything it started.
ui: setup system-packages
	DAGSTER_HOME=$${DAGSTER_HOME:-$(CURDIR)/.dagster_home} $(BIN)/beop-exports demo --ui --skip-run

bench: setup system-packages
	$(BIN)/python bench/run.py
