# imgpipe: `make run` starts the whole system locally, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := -e schemas -e libs/bus -e libs/runtime -e services/ingest -e services/image-worker \
	-e services/assembler -e services/notifier -e ops
STAMP := $(VENV)/.installed

.PHONY: install run test test-unit test-integration test-e2e demo bench schemas clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt $(wildcard */pyproject.toml */*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(PACKAGES)
	touch $(STAMP)

run: install
	$(BIN)/imgpipe run

test: install
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-integration: install
	$(BIN)/python -m pytest tests/integration

test-e2e: install
	$(BIN)/python -m pytest tests/e2e

demo: install
	$(BIN)/imgpipe demo

bench: install
	$(BIN)/imgpipe bench

schemas: install
	$(BIN)/imgpipe-schemas

clean:
	rm -rf $(VENV) .pytest_cache
