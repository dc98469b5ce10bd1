# sessionstream: the two commands of the README, and what they need.
#   make run    set up, then run the main job on the embedded default (no Docker, no config)
#   make test   set up (system packages, virtualenv, jars on first use), then the whole test suite
# Both are safe to run again; each step is skipped when already done.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test setup system venv lint stack-up stack-down clean

run: venv
	$(BIN)/sessionstream run

test: setup
	$(BIN)/pytest

setup: system venv

# Prometheus (a real scraper for the metrics tests) comes from Debian; Java 17 and Maven are
# needed for Kafka and Neo4j (their jars come from Maven Central on first start); Go builds
# Jaeger (the trace tests' OTLP receiver) from the Go module proxy on first start.
system:
	@command -v java >/dev/null || { echo "error: Kafka and Neo4j need Java 17+ (apt-get install openjdk-17-jre-headless)"; exit 1; }
	@command -v mvn >/dev/null || { echo "error: Maven fetches the Kafka and Neo4j jars (apt-get install maven)"; exit 1; }
	@command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || { echo "error: the trace tests build Jaeger with Go 1.24+ (https://go.dev/dl/)"; exit 1; }
	@if ! command -v prometheus >/dev/null && [ ! -x /usr/bin/prometheus ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing prometheus (Debian package)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else \
	    echo "error: Prometheus is missing: sudo apt-get install prometheus"; exit 1; \
	  fi; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy streams schemas agents projections

stack-up: venv
	$(BIN)/sessionstream stack up

stack-down: venv
	$(BIN)/sessionstream stack down

clean:
	-$(BIN)/sessionstream stack down
	rm -rf $(VENV) .state .pytest_cache
