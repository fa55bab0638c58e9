# Accord. `make demo` and `make test` work on a fresh machine: they create .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install browser demo test lint typecheck unit proto bench clean

$(STAMP): pyproject.toml examples/custom-engine/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,postgres,nats]'
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

unit: $(STAMP) browser
	$(VENV)/bin/pytest -q

test: lint typecheck unit

proto: $(STAMP)
	$(PY) scripts/gen_protos.py

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
