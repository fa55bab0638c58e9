# Accord. `make demo` and `make test` work on a fresh machine: they create .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pytest-xdist workers. More than the 2 cores of the reference machine pays: most tests wait on
# subprocesses and timers rather than compute (README, "Tests").
PYTEST_WORKERS ?= 3
PYTEST_XDIST := -n $(PYTEST_WORKERS) --dist loadgroup
# The tests start ~1,500 Python processes (coordinators, agents, CLI commands, check workers).
# With PYTHONDONTWRITEBYTECODE set (some machines and CI images set it) each of them compiled
# every module of the project again, and each xdist worker rewrote every test module: ~0.07 s
# per process and ~8 s per worker. Here bytecode is written (into __pycache__, ignored by git).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install browser demo test lint typecheck unit soak airflow-venv-early proto bench clean

$(STAMP): pyproject.toml examples/custom-engine/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,postgres,nats,temporal,stepfunctions,ansible]'
	# the example of a team's own engine adapter, used by the tests of engine discovery
	$(PY) -m pip install -q --no-build-isolation --no-deps -e examples/custom-engine
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the browser tests (never a browser download of Playwright's own).
browser:
	bash .ci/install-browser.sh

# At a terminal the demo stays up so you can explore the runs in the UI (Ctrl-C stops it);
# run non-interactively (CI, a pipe) it stops by itself once it has told its story.
DEMO_ARGS ?= $(shell [ -t 0 ] && echo --keep-running)

demo: $(STAMP)
	$(VENV)/bin/accord demo $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy contracts coordinator team_agent

# The real Airflow of the @pytest.mark.airflow tests (and the real Prefect server of the
# @pytest.mark.prefect ones, tests/engines/prefect_venv.py) lives in a venv of its own, built once into
# ~/.cache/accord-test (or $$ACCORD_TEST_CACHE): over a minute on a fresh machine. `make test`
# starts building it first thing, in the background, with the system's python3, while .venv is
# installed, linted and type-checked; the tests wait for it (a file lock) only if it is still
# building, and build it themselves if this was skipped or failed.
airflow-venv-early:
	@mkdir -p test-artifacts
	@$(PYTHON) tests/engines/airflow_venv.py >test-artifacts/airflow-venv.log 2>&1 </dev/null &
	@$(PYTHON) tests/engines/prefect_venv.py >test-artifacts/prefect-venv.log 2>&1 </dev/null &

# Every feature's tests, chaos/load/fuzz tests at their short size; pytest's exit code is make's
# (5, no test collected, fails too).
unit: $(STAMP) browser
	$(VENV)/bin/pytest -q $(PYTEST_XDIST) --durations=10

test: airflow-venv-early lint typecheck unit

# The chaos, load and fuzz tests at full size (tests/support/soak.py); CI runs it after `make test`.
soak: $(STAMP)
	$(VENV)/bin/pytest -q -m soak $(PYTEST_XDIST) --durations=10

proto: $(STAMP)
	$(PY) scripts/gen_protos.py

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
