# mlrecipes: one entry point for set-up, the main job, tests, the UI, benchmarks and the stacks.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The embedded default store: one SQLite file in the repository, nothing to start.
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db

.PHONY: help setup setup-dev lock lock-check run leaderboard promote rollback history test test-dask test-fast ui bench airflow-start airflow-stop airflow-trigger up down lint docs docs-build screenshots

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# .venv from its locks (every package pinned, with hashes): requirements/run.lock holds what running
# needs (mlflow, hydra, airflow, uv), requirements/dev.lock adds what testing needs (the dev extra).
# Both are compiled from pyproject.toml by `make lock`: Airflow's own constraints file is not
# reachable from every machine, so the lock stands in for it (one resolution, kept).
setup: $(VENV)/.installed  ## create .venv with what running needs (requirements/run.lock)

$(VENV)/.installed: requirements/run.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/run.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup-dev: $(VENV)/.installed-dev  ## .venv plus what the tests need (requirements/dev.lock)

$(VENV)/.installed-dev: $(VENV)/.installed requirements/dev.lock
	$(PY) -m pip install --quiet -r requirements/dev.lock
	touch $@

# One command for every lock: projects/*/requirements*.in -> requirements*.lock (python_env.yaml installs
# them) and pyproject.toml -> requirements/{run,dev}.lock, with uv for Python 3.11 on linux x86_64.
lock: setup  ## compile every lock again from its top-level list (UPGRADE=1: newest versions allowed)
	$(PY) -m mlrecipes.locks compile $${UPGRADE:+--upgrade}

lock-check: setup  ## every lock matches its top-level list (no network)
	$(PY) -m mlrecipes.locks check

run: setup  ## main job: train, evaluate and register every project, then print the leaderboard
	$(VENV)/bin/mlrecipes run --all

leaderboard: setup  ## champion and latest run of every registered model
	$(VENV)/bin/mlrecipes leaderboard

# The alias moves, recorded on the model version (who, when, from which version, why, which command).
# Values travel as environment variables, never spliced into the shell line.
promote: setup  ## make promote MODEL=mnist-xgboost VERSION=3 [FORCE=1 REASON="why"]: through the gate unless forced
	@test -n "$$MODEL" -a -n "$$VERSION" || { echo "error: usage: make promote MODEL=<model> VERSION=<version> [FORCE=1 REASON=...]" >&2; exit 2; }
	$(VENV)/bin/mlrecipes promote "$$MODEL" "$$VERSION" $${FORCE:+--force} $${REASON:+--reason "$$REASON"}

rollback: setup  ## make rollback MODEL=mnist-xgboost [TO=2] [FORCE=1 REASON="why"]: the previous champion back
	@test -n "$$MODEL" || { echo "error: usage: make rollback MODEL=<model> [TO=<version>] [FORCE=1 REASON=...]" >&2; exit 2; }
	$(VENV)/bin/mlrecipes rollback "$$MODEL" $${TO:+--to "$$TO"} $${FORCE:+--force} $${REASON:+--reason "$$REASON"}

history: setup  ## make history MODEL=mnist-xgboost: every move of the champion alias, newest first
	@test -n "$$MODEL" || { echo "error: usage: make history MODEL=<model>" >&2; exit 2; }
	$(VENV)/bin/mlrecipes history "$$MODEL"

# The smoke runs spend much of their time single-threaded (imports, logging), so two workers
# share the 2 cores well; the airflow, stack and browser tests start servers and run alone.
test: setup-dev  ## every test: smoke (real MLflow Project runs, two workers), then unit, airflow, stack, browser, dask
	$(PY) -m pytest -n 2 --dist loadfile tests/smoke; smoke=$$?; \
	$(PY) -m pytest --ignore=tests/smoke && exit $$smoke

test-dask: setup-dev  ## only the Dask tests: LocalClusters of 2 workers (tables, training, memory, a killed worker)
	$(PY) -m pytest tests/dask

test-fast: setup-dev  ## unit tests only (no project environments needed)
	$(PY) -m pytest tests/unit

ui: setup  ## MLflow UI on http://127.0.0.1:5000 over the embedded store
	$(VENV)/bin/mlflow ui --backend-store-uri "$(MLFLOW_TRACKING_URI)" --host 127.0.0.1 --port 5000

lint: setup-dev
	$(VENV)/bin/ruff check src tests projects airflow bench

airflow-start: setup  ## local Airflow on http://127.0.0.1:8080 (one DAG per job of conf/schedule.yaml)
	airflow/local.sh start

airflow-stop:  ## stop local Airflow; running tasks end their MLflow runs KILLED
	airflow/local.sh stop

airflow-trigger: setup  ## make airflow-trigger DAG=mlrecipes_xgboost CONF='{"limit": 1000}'
	@test -n "$$DAG" || { echo "error: usage: make airflow-trigger DAG=<dag id, e.g. mlrecipes_xgboost> [CONF='{\"limit\": 1000}']" >&2; exit 2; }
	airflow/local.sh trigger "$$DAG" "$$CONF"

bench: setup  ## full-MNIST benchmark of every variant and the peers, then the fixed cost of a tiny run -> bench/results*, README tables
	$(PY) bench/run.py
	$(PY) bench/fixed_cost.py

# The documentation site (mkdocs.yml): docs/gen_reference.py writes the reference pages at every build.
$(VENV)/.docs-installed: requirements/docs.lock | $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements/docs.lock
	touch $@

docs: $(VENV)/.docs-installed  ## the documentation site on http://127.0.0.1:8000, rebuilt on every edit
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

# Built into a temporary directory and dropped: CI wants the verdict; SITE=dir keeps the HTML.
docs-build: $(VENV)/.docs-installed  ## build the site with every warning an error (as CI does) [SITE=dir]
	@site="$${SITE:-$$(mktemp -d)}"; NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir "$$site" \
	  && { test -n "$$SITE" || rm -rf "$$site"; }

screenshots: setup  ## the MLflow and Airflow UI pictures of the docs (docs/images/*.png), from the browser tests' real runs
	$(PY) -m pytest tests/browser/test_mlflow_ui.py tests/browser/test_airflow_ui.py
	cp tests/artifacts/mlflow_experiment.png tests/artifacts/mlflow_compare.png tests/artifacts/mlflow_model_version.png docs/images/
	cp tests/artifacts/airflow_grid.png tests/artifacts/airflow_trigger_form.png docs/images/

up:  ## full stack (PostgreSQL, MLflow server, Airflow 3) with Docker Compose; needs .env (docs/stack.md)
	test -f .env || python3 compose/make_env.py
	docker compose up -d --build

down:  ## stop the compose stack (volumes are kept; `docker compose down -v` drops them)
	docker compose down
