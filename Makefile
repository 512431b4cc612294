# Each target is self-sufficient on a fresh machine: it creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
BENCH_STAMP := $(VENV)/.installed-bench-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test up bench clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/segjet demo

up: $(STAMP)
	$(BIN)/segjet up

test: $(STAMP) chromium
	$(BIN)/python -m pytest -n 2 -q

# Prints a table and writes benchmarks/results/latest.json; BENCH_QUICK=1 runs small sizes (CI).
bench: $(BENCH_STAMP)
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
