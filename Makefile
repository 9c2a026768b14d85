# The two commands of the README: `make demo` and `make test`.
# Each builds its own virtual environment first (re-used while pyproject.toml is unchanged).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint typecheck unit venv system-deps bench clean test-floors version

# The demo works in ./batchml-demo/ whatever BATCHML_ROOT says, and refuses any folder it did not
# make (a demo folder carries a .batchml-demo file): --fresh never deletes data of yours.
demo: $(STAMP)
	$(BIN)/batchml --root batchml-demo demo --fresh

test: $(STAMP) system-deps lint typecheck unit

# In CI (CI=true, as .ci/run sets it) `make test` also checks the dependency floors: about 2
# minutes (a second venv, then the queue tests), too slow for every local run.
ifeq ($(CI),true)
test: test-floors
endif

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# The test session starts its own redis-server on a free port; Debian's package is installed if
# missing (and Chromium for the dashboard test, in CI). Nothing happens when all are present.
system-deps:
	@bash .ci/install-system-deps

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# The floors of pyproject.toml are true: the project installed with exactly the lowest release
# of each runtime dependency (.ci/constraints-floor.txt; the rest newest) passes the queue,
# Redis, CLI and safe-unpickling tests. Its own venv, re-used while both files are unchanged.
FLOORS       = .venv-floors
FLOORS_STAMP = $(FLOORS)/.installed-$(shell cat pyproject.toml .ci/constraints-floor.txt | cksum | cut -d' ' -f1)
FLOOR_TESTS  = tests/queue/test_queue_sqlite.py tests/queue/test_queue_redis.py tests/queue/test_faults_redis.py \
               tests/cli/test_cli.py tests/cli/test_inspect.py tests/fraud/test_safe_pickle.py

test-floors: $(FLOORS_STAMP) system-deps
	$(FLOORS)/bin/pytest -p no:cacheprovider $(FLOOR_TESTS) -k "not chaos"

$(FLOORS_STAMP): pyproject.toml .ci/constraints-floor.txt
	test -x $(FLOORS)/bin/python || $(PYTHON) -m venv $(FLOORS)
	$(FLOORS)/bin/python -m pip install --quiet --upgrade pip
	$(FLOORS)/bin/python -m pip install --quiet -e '.[dev]' -c .ci/constraints-floor.txt
	rm -f $(FLOORS)/.installed-*
	touch $@

# The version, as pyproject.toml reads it (batchml.__version__): the image tag, e.g.
#   docker build -f deploy/Dockerfile -t batchml:$$(make -s version) .
version:
	@sed -n 's/^__version__ = "\(.*\)"$$/\1/p' src/batchml/__init__.py


# bench/features.py needs the bench extra (Polars, its reference); each script prints its targets
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/queue_throughput.py
	$(BIN)/python bench/queue_script_profile.py
	$(BIN)/python bench/features.py
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/end_to_end.py --workers 2

# ./batchml-data/ holds what you generated and imported: never removed here.
clean:
	rm -rf $(VENV) $(FLOORS) .pytest_cache .mypy_cache .ruff_cache .hypothesis
	if [ -f batchml-demo/.batchml-demo ]; then rm -rf batchml-demo; fi
