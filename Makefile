# imgpipe: `make run` starts the whole system locally, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := -e schemas -e libs/bus -e libs/runtime -e services/ingest -e services/image-worker \
	-e services/assembler -e services/notifier -e ops
STAMP := $(VENV)/.installed

.PHONY: install tools run check test test-unit test-integration test-e2e demo bench schemas docs clean

install: $(STAMP)

# requirements.txt is what the production image installs; requirements-local.txt adds the embedded broker and
# database of `make run` and `make test`, requirements-dev.txt the test tools. Locally all of them.
$(STAMP): requirements.txt requirements-local.txt requirements-dev.txt constraints.txt $(wildcard */pyproject.toml */*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(PACKAGES)
	touch $(STAMP)

# Debian/Ubuntu packages the tests use: kcat, for the test of the kcat recipes in docs/operations.md (`imgpipe kcat` supplies a
# newer librdkafka), and Debian's Chromium with its driver, for the status page's browser test.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
tools:
	@command -v kcat >/dev/null || { echo "installing kcat"; \
		$(SUDO) apt-get install -y -qq kcat >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq kcat; }; }
	@{ command -v chromium && command -v chromedriver; } >/dev/null || { echo "installing chromium and chromium-driver"; \
		$(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; }; }

run: install
	$(BIN)/imgpipe run

# The linter and the formatter, with the rules in pyproject.toml; mypy (strict on schemas/ and libs/, its standard
# checks elsewhere); and deptry: each package declares exactly what it imports. CI runs this before the tests.
PACKAGE_DIRS := schemas libs/bus libs/runtime services/ingest services/image-worker services/assembler \
	services/notifier ops
check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@for dir in $(PACKAGE_DIRS); do (cd $$dir && $(CURDIR)/$(BIN)/deptry --no-ansi .) || exit 1; done

# The test modules run in four parallel processes (pytest-xdist), each module whole in one of them with its own
# broker and database; most tests wait on processes and sockets, so more processes than cores pay.
# `make test PARALLEL=` runs them one at a time.
PARALLEL ?= -n 4 --dist loadfile --no-loadscope-reorder

test: install tools
	$(BIN)/python -m pytest $(PARALLEL)

test-unit: install
	$(BIN)/python -m pytest $(PARALLEL) tests/unit

test-integration: install
	$(BIN)/python -m pytest $(PARALLEL) tests/integration

test-e2e: install tools
	$(BIN)/python -m pytest $(PARALLEL) tests/e2e

demo: install
	$(BIN)/imgpipe demo

bench: install
	$(BIN)/imgpipe bench

schemas: install
	$(BIN)/imgpipe-schemas

# docs/configuration.md's table of settings, from the settings classes.
docs: install
	$(BIN)/python -m tests.support.configuration_doc

clean:
	rm -rf $(VENV) .pytest_cache
