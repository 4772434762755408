# ferrotile task runner. `make help` lists the targets.
# Everything is set up on first use: a virtualenv in .venv, the Rust extension (release build),
# and the Python dependencies. Cargo's target directory stays outside the repository so that
# rebuilds in fresh clones are incremental.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(HOME)/.cargo/bin:$(PATH)
export CARGO_TARGET_DIR ?= $(HOME)/.cache/ferrotile/target
export NO_PROXY := 127.0.0.1,localhost,$(NO_PROXY)
export no_proxy := 127.0.0.1,localhost,$(no_proxy)

.PHONY: help serve test lint build venv rust-test pytest system-deps bench bench-quick bench-micro clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/bin/maturin:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "maturin>=1.9,<2"

venv: $(VENV)/bin/maturin

# Dependencies are (re)installed when pyproject.toml changes; the extension is rebuilt in place
# on every build (incremental, so quick when nothing changed).
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/maturin
	$(VENV)/bin/maturin develop --release --extras test,bench
	touch $@

# The extension is abi3 (`_core.abi3.so`); a leftover version-specific build
# (`_core.cpython-3xx-*.so`, from before) would be imported in its place, so it goes.
build: $(VENV)/.installed ## build the Rust extension (release) and install ferrotile + test deps into .venv
	rm -f python/ferrotile/_core.cpython-*.so
	$(VENV)/bin/maturin develop --release --skip-install --quiet

serve: build ## run a server on the embedded default (temporary SQLite catalog, in-process streaming)
	$(VENV)/bin/ferrotile serve catalog --temp $(ARGS)

lint: build ## ruff, mypy (and stubtest of the native module), rustfmt, clippy
	$(VENV)/bin/ruff check python tests bench
	$(VENV)/bin/ruff format --check python tests bench
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest ferrotile._core
	cargo fmt --all --check
	cargo clippy --all-targets --quiet -- -D warnings

rust-test: ## cargo test (the engine, no Python needed)
	cargo test --quiet

# Tests start their own PostgreSQL, Redis, HAProxy and Chromium from Debian's binaries (never the
# machine's running ones).
system-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		echo "installing PostgreSQL binaries (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@test -x /usr/bin/redis-server || { \
		echo "installing redis-server (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@test -x /usr/sbin/haproxy || { \
		echo "installing haproxy (apt-get; tests/integration/test_haproxy.py)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }
	@test -x /usr/bin/chromium || { \
		echo "installing chromium (apt-get; tests/live drive it with Playwright)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

pytest: build system-deps ## pytest: unit, native-core and compatibility tests against real servers
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint rust-test pytest ## every check: lint, cargo test, pytest

# Benchmarks (bench/README.md): each run starts its own servers and Redis on loopback ports and
# stops them; Tiled 0.2.20 is installed into ~/.cache/ferrotile/tiled-0.2.20 on first use.
bench: build system-deps ## full benchmark run (all targets and relays, median of 3) into bench/README.md
	$(PY) bench/run.py --readme $(ARGS)

bench-quick: build system-deps ## quick benchmark (~15 min): ferrotile 1 worker, both relays, Tiled; one run
	$(PY) bench/run.py --quick $(ARGS)

bench-micro: build ## micro-benchmarks: Python-visible costs (pytest-benchmark), the hub (criterion)
	$(PY) -m pytest bench/micro -p no:cacheprovider -q --benchmark-columns=min,median,mean,ops,rounds
	cargo bench -p ferrotile-core --bench hub_fanout -- --warm-up-time 1 --measurement-time 2

clean: ## remove the virtualenv and build products (not the shared cargo cache)
	rm -rf $(VENV) python/ferrotile/*.so .pytest_cache .mypy_cache .ruff_cache
