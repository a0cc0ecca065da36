# The two commands of README.md: `make demo` and `make test`. Both set everything up on a fresh
# machine that has Python 3.11 and make: .venv, pinned packages, airflow.cfg, metadata DB, pools.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export AIRFLOW_HOME ?= $(CURDIR)/airflow_home
export AIRFLOW_API_PORT ?= 8080
export NO_PROXY := 127.0.0.1,localhost
export no_proxy := 127.0.0.1,localhost

.PHONY: demo test setup airflow sandbox lint bench bench-workers lock lock-distributed clean

# requirements-distributed.txt (PostgreSQL driver, Celery provider) serves only the distributed
# profile and its tests; it is small, so `make test` installs it everywhere.
$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml \
		requirements-distributed.txt constraints-distributed.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet -r requirements-distributed.txt -c constraints.txt \
		-c constraints-distributed.txt
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
	$(VENV)/bin/mypy include plugins dags

sandbox: $(VENV)/.installed
	$(PY) -m sandbox --espocrm-port 8081 --advoware-port 8082 --scenario sandbox/scenarios/demo.json

airflow: setup
	$(PY) -m include.tools.run_airflow

bench: setup
	$(PY) -m include.tools.bench

# One Celery worker versus two (needs PostgreSQL and Redis on 127.0.0.1; README "Scaling out").
bench-workers: setup
	$(PY) -m include.tools.bench_workers

# Lines of a pip freeze on stdin whose package is not pinned in the file named first.
WITHOUT := awk -F'==' 'NR == FNR { if (/==/) pinned[tolower($$1)]; next } !(tolower($$1) in pinned)'

# Refresh the full lock after changing requirements.txt.
lock: $(VENV)/.installed
	$(PY) -m pip freeze --exclude-editable | $(WITHOUT) constraints-distributed.txt - > constraints.txt

# Refresh constraints-distributed.txt (the packages requirements-distributed.txt adds).
lock-distributed: $(VENV)/.installed
	{ echo "# Lock of requirements-distributed.txt on top of constraints.txt (only what it adds)."; \
	  echo "# Refresh: make lock-distributed."; \
	  $(PY) -m pip freeze --exclude-editable | $(WITHOUT) constraints.txt -; \
	} > constraints-distributed.txt

clean:
	rm -rf $(VENV) $(AIRFLOW_HOME)
