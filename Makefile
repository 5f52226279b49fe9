# Two commands from nothing: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
EXAMPLE_STAMP := $(VENV)/.installed-example

.PHONY: run run-sandbox test lint bench clean system-deps example

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[whatsmeow]'
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP) $@

$(EXAMPLE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[example]'
	touch $@

# neonize (the whatsmeow engine) needs libmagic; install it when we can, else say so.
system-deps:
	@if ! ldconfig -p 2>/dev/null | grep -q libmagic.so.1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq libmagic1 >/dev/null 2>&1 || \
	      (apt-get update -qq && apt-get install -y -qq libmagic1); \
	  else \
	    echo "zapmux: the whatsmeow engine needs libmagic: sudo apt-get install libmagic1"; \
	  fi; \
	fi

run: $(STAMP) system-deps
	$(BIN)/zapmux serve

# zapmux with the simulated WhatsApp network (the README's walkthrough): no phone needed.
run-sandbox: $(STAMP)
	$(BIN)/zapmux serve --engine sandbox

# The Flask app standing in for "Sua Agenda" on :5000, where zapmux delivers by default
# (its messages are kept in data/agenda.db; ZAPMUX_WEBHOOK_SECRET/ZAPMUX_API_KEY apply).
example: $(EXAMPLE_STAMP)
	mkdir -p data
	PORT=5000 AGENDA_DATABASE=data/agenda.db $(BIN)/python examples/flask_app/app.py

test: $(TEST_STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy zapmux
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy zapmux

# ZAPMUX_BENCH_DATABASE_URL=postgresql://… adds the PostgreSQL send (that database is emptied).
bench: $(TEST_STAMP)
	$(BIN)/python -m bench
	$(BIN)/python -m bench.scheduling
	$(BIN)/python -m bench.backlog
	$(BIN)/python -m bench hotpath
	$(BIN)/python scripts/measure_whatsmeow_workers.py 8

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
