# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WHEELS := .wheels
LLAMA_VERSION := 0.3.36
# Portable CPU baseline: the default -march=native build crashes in its AMX kernel with q8_0 models.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
PIP := $(BIN)/pip install --disable-pip-version-check --find-links $(WHEELS) --only-binary=llama-cpp-python

.PHONY: demo test lint bench venv clean bundle nats-server

demo: $(VENV)/.installed
	$(BIN)/semtrace model verify
	$(BIN)/semtrace demo

test: $(VENV)/.installed-test bundle nats-server
	$(BIN)/python -m pytest -q

# The cluster tests start a real nats-server (Debian's package has JetStream); sudo only when not root.
nats-server:
	@PATH="$$PATH:/usr/sbin" command -v nats-server >/dev/null 2>&1 || { \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq nats-server; \
	} || echo "make: nats-server could not be installed; the cluster tests will be skipped." >&2

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

$(VENV)/.installed: pyproject.toml $(WHEELS)/.llama-$(LLAMA_VERSION) | $(VENV)/bin/python
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(WHEELS)/.llama-$(LLAMA_VERSION) | $(VENV)/bin/python
	$(PIP) -e '.[test]'
	touch $(VENV)/.installed $@

bench: $(VENV)/.installed-test
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/redact.py
	$(BIN)/python bench/link.py
	$(BIN)/python bench/cluster.py

clean:
	rm -rf $(VENV) .demo .bundle dist
