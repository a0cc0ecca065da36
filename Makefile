# The two commands of README.md: `make demo` and `make test`. Both set everything up on a fresh
# machine that has Python 3.11 and make: .venv, pinned packages, airflow.cfg, metadata DB, pools.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export AIRFLOW_HOME ?= $(CURDIR)/airflow_home
export AIRFLOW_API_PORT ?= 8080
export NO_PROXY := 127.0.0.1,localhost
export no_proxy := 127.0.0.1,localhost

.PHONY: demo test setup airflow sandbox lint bench lock clean

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed
	$(PY) -m include.tools.setup_airflow --api-port $(AIRFLOW_API_PORT)

demo: setup
	$(PY) -m include.tools.demo

test: setup lint
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy include plugins

sandbox: $(VENV)/.installed
	$(PY) -m sandbox --espocrm-port 8081 --advoware-port 8082 --scenario sandbox/scenarios/demo.json

airflow: setup
	$(PY) -m include.tools.run_airflow

bench: setup
	$(PY) -m include.tools.bench

# Refresh the full lock after changing requirements.txt.
lock: $(VENV)/.installed
	$(PY) -m pip freeze --exclude-editable > constraints.txt

clean:
	rm -rf $(VENV) $(AIRFLOW_HOME)
