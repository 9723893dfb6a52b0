# Two commands for a fresh machine with only Python 3.11+ and make:
#   make demo   - set up .venv and run the demo
#   make test   - set up .venv, then lint, type check and the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODULES := $(VENV)/.modules

.PHONY: demo test lint typecheck pytest bench clean FORCE

# The package's file names (not their contents), rewritten only when they change;
# the web dashboard's templates and static files are package data, linked the same way.
$(MODULES): FORCE
	@mkdir -p $(VENV)
	@find jobrunner \( -name '*.py' -o -name py.typed -o -path 'jobrunner/web/templates/*' -o -path 'jobrunner/web/static/*' \) \
		! -path '*/__pycache__/*' | LC_ALL=C sort > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

# editable_mode=strict: the venv gets a tree of links to the package's files
# (build/__editable__.*) on a plain .pth path, which mypy follows, so a user's
# app type-checks against jobrunner and its py.typed from any directory. The
# default mode's import-hook finder is invisible to mypy; compat mode would put
# the repo root on sys.path and make tests, benchmarks and examples importable
# as top-level packages in every program using this venv. The links see edits
# at once; a module added or removed changes $(MODULES), which reinstalls.
$(STAMP): pyproject.toml Makefile $(MODULES)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "jobrunner needs Python 3.11+; set PYTHON=python3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=strict
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check jobrunner tests benchmarks examples
	$(BIN)/ruff format --check jobrunner tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy jobrunner

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
