# syncd: `make demo` runs the main job against the bundled emulator, `make test` runs the suite,
# `make test-fast` the tests that start no process (no syncd, daemon, emulator or browser).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest-xdist workers for `make test` and `make test-fast` (0: one process, no workers)
PYTEST_WORKERS ?= 2

.PHONY: install browser demo test test-fast check lint fmt bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP) browser

# The browser test drives Debian's chromium (Playwright's own download is not used). Without
# root or apt-get it is left missing, and the browser test skips (it fails under CI=true).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && apt-get install -y chromium; \
	  else \
	    echo "chromium is missing; install it (apt-get install chromium) to run the browser test"; \
	  fi; }

demo: install
	$(BIN)/python -m syncd.demo

check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: check
	$(BIN)/pytest -n $(PYTEST_WORKERS)

# Everything but the end-to-end tests (marker e2e, see tests/support/tiers.py): no ruff, no
# lint-imports, no browser check.
test-fast: $(STAMP)
	SYNCD_FAST_TESTS=1 $(BIN)/pytest -m "not e2e" -n $(PYTEST_WORKERS)

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info demo .pytest_cache .ruff_cache .hypothesis
