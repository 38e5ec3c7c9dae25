# Two commands for a new machine: `make run` and `make test` (both install first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)

.PHONY: install run test lint format security prod-check clean

install: $(STAMP)

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required" if sys.version_info < (3, 11) else 0)'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

run: install
	$(BIN)/python bin/run.py

test: install security
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEMO=1 $(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest

# Static security gates (SEC-14), offline: bandit (no high-severity finding; no request without a
# timeout, B113, and no disabled TLS verification, B501, at any severity) and no new committed
# secret (detect-secrets against .secrets.baseline). ruff's security rules (S) run in `test`.
security: install
	$(BIN)/bandit -q -r . -x ./.venv,./var -lll
	$(BIN)/bandit -q -r . -x ./.venv,./var -t B113,B501
	BIN=$(BIN) bin/secrets-scan.sh

# Django's deployment check with production settings (SEC-01); on a server:
# deploy/prod-check.sh /etc/msp-dashboard/env
prod-check: install
	PYTHON=$(BIN)/python deploy/prod-check.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var
