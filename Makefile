# The two commands of the README: `make demo` and `make test`.
# Each builds its own virtual environment first (re-used while pyproject.toml is unchanged).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint typecheck unit venv system-deps bench clean

# The demo works in ./batchml-demo/ whatever BATCHML_ROOT says, and refuses any folder it did not
# make (a demo folder carries a .batchml-demo file): --fresh never deletes data of yours.
demo: $(STAMP)
	$(BIN)/batchml --root batchml-demo demo --fresh

test: $(STAMP) system-deps lint typecheck unit

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

# bench/features.py needs the bench extra (Polars, its reference); each script prints its targets
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/queue_throughput.py
	$(BIN)/python bench/features.py
	$(BIN)/python bench/end_to_end.py --workers 2

# ./batchml-data/ holds what you generated and imported: never removed here.
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
	if [ -f batchml-demo/.batchml-demo ]; then rm -rf batchml-demo; fi
