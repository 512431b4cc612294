# Each target is self-sufficient on a fresh machine: it creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CKSUM := $(shell cksum pyproject.toml | cut -d' ' -f1)
# segjet alone (the demo, `segjet up`), then its test extras, then the benchmarks' reference servers.
BASE_STAMP := $(VENV)/.installed-base-$(CKSUM)
STAMP := $(VENV)/.installed-test-$(CKSUM)
BENCH_STAMP := $(VENV)/.installed-bench-$(CKSUM)

.PHONY: demo test up bench clean chromium bytecode

$(BASE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	rm -f $(VENV)/.installed-*
	touch $(BASE_STAMP)

$(STAMP): $(BASE_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# What pip does for an installed package: an editable install leaves segjet's own modules to be
# compiled as they are imported, and where PYTHONDONTWRITEBYTECODE is set (as in many CI images)
# at every start, a third of `segjet up`'s start-up. Only modules changed since are compiled again.
bytecode: $(BASE_STAMP)
	@$(BIN)/python -m compileall -q emulator destination contracts

demo: bytecode
	$(BIN)/segjet demo

up: bytecode
	$(BIN)/segjet up

test: $(STAMP) chromium bytecode
	$(BIN)/python -m pytest -n 2 -q

# Prints a table and writes benchmarks/results/latest.json; BENCH_QUICK=1 runs small sizes (CI).
bench: $(BENCH_STAMP) bytecode
	$(BIN)/python -m benchmarks.run

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

# Browser tests use Debian's Chromium; install it where missing and we may (root with apt-get).
chromium:
	@[ -x /usr/bin/chromium ] || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } || \
	  echo "chromium not installed: the browser tests will be skipped"

clean:
	rm -rf $(VENV) .pytest_cache
