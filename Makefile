# streamer developer tasks. `make help` lists them.
#
# The local stack (Kafka 4.1.1 KRaft + Redis with AOF on 127.0.0.1) is run by the
# scripts in deploy/local/; see docs/LOCAL_STACK.md. Ports and folders come from
# the STREAMER_LOCAL_* environment variables described there.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench
LOCAL := deploy/local

# Extra arguments: make test PYTEST_ARGS='-k stack -x', make bench BENCH_ARGS='...',
# make run RUN_ARGS='...'.
PYTEST_ARGS ?=
BENCH_ARGS ?=
RUN_ARGS ?=

.PHONY: help venv venv-bench up down status run test lint bench clean-local

help:
	@echo "make venv         create $(VENV) and install the package with its test extras (once per pyproject.toml change)"
	@echo "make up           start the local stack: Kafka on 127.0.0.1:$${STREAMER_LOCAL_KAFKA_PORT:-9092}, Redis on 127.0.0.1:$${STREAMER_LOCAL_REDIS_PORT:-6379}"
	@echo "make down         stop the local stack"
	@echo "make status       show whether Kafka and Redis are up"
	@echo "make run          start the stack (unless STREAMER_KAFKA_BOOTSTRAP/STREAMER_REDIS_URL are set) and run 'streamer worker'"
	@echo "make test         run pytest against the local stack (starts and stops what was not running)"
	@echo "make lint         ruff check streamer tests benchmarks, then mypy (what it checks: [tool.mypy] in pyproject.toml)"
	@echo "make bench        run the benchmarks (python -m benchmarks \$$BENCH_ARGS)"
	@echo "make clean-local  stop the stack and delete its data and logs (.local/)"

venv: $(VENV_STAMP)

# Reinstalls only when pyproject.toml is newer than the stamp.
$(VENV_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "streamer needs Python 3.11+, $(PYTHON) is " + sys.version.split()[0])'
	@test -x $(VENV_PY) || { echo "creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

venv-bench: $(BENCH_STAMP)

$(BENCH_STAMP): pyproject.toml $(VENV_STAMP)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	@touch $@

up:
	@$(LOCAL)/stack.sh up

down:
	@$(LOCAL)/stack.sh down

status:
	@$(LOCAL)/stack.sh status

run: venv
	@if [ -z "$${STREAMER_KAFKA_BOOTSTRAP:-}" ] && [ -z "$${STREAMER_REDIS_URL:-}" ]; then \
	  $(LOCAL)/stack.sh up; \
	  eval "$$($(LOCAL)/stack.sh env)"; \
	fi; \
	echo "streamer worker: STREAMER_KAFKA_BOOTSTRAP=$${STREAMER_KAFKA_BOOTSTRAP:-} STREAMER_REDIS_URL=$${STREAMER_REDIS_URL:-}"; \
	exec $(VENV)/bin/streamer worker $(RUN_ARGS)

# with-stack.sh starts only the services that are not running and stops only those
# afterwards. pytest's exit code 5 (no tests collected) counts as a failure.
test: venv
	@rc=0; $(LOCAL)/with-stack.sh $(VENV_PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ "$$rc" -eq 5 ]; then echo "make test: pytest collected no tests (exit 5), failing" >&2; exit 1; fi; \
	exit "$$rc"

# Both run even when ruff finds something, so one CI run shows every problem.
lint: venv
	@rc=0; $(VENV)/bin/ruff check streamer tests benchmarks || rc=$$?; \
	$(VENV)/bin/mypy || rc=$$?; \
	exit "$$rc"

bench: venv
	@if [ -f benchmarks/__main__.py ]; then \
	  $(MAKE) --no-print-directory venv-bench; \
	  exec $(VENV_PY) -m benchmarks $(BENCH_ARGS); \
	else \
	  echo "make bench: no benchmarks yet (benchmarks/__main__.py does not exist), nothing to run"; \
	fi

clean-local:
	@$(LOCAL)/stack.sh down
	@$(LOCAL)/redis-cluster.sh down
	rm -rf "$${STREAMER_LOCAL_DIR:-.local}"
