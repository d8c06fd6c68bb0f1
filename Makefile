# Everything starts from a fresh machine with Python 3.11 and make: each target creates
# .venv and installs the locked dependencies first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
UV_DIR := .uv
UV := $(UV_DIR)/bin/uv
export UV_PYTHON_DOWNLOADS := never

.PHONY: install run console test lint format bench lock clean

# The installer is pinned too: the machine's pip (any version) installs only uv, by hash
# from requirements-uv.lock; uv then makes .venv exactly the lock (hashes required, nothing
# resolved, nothing else kept), so what the index publishes later cannot change an install.
$(UV): requirements-uv.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	rm -rf $(UV_DIR)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
		--target $(UV_DIR) -r requirements-uv.lock
	@touch $(UV)

$(STAMP): $(UV) requirements-dev.lock pyproject.toml
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --require-hashes --python $(BIN)/python requirements-dev.lock
	$(UV) pip install --quiet --no-deps --no-build-isolation --python $(BIN)/python -e .
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/gemini-bot run

console: $(STAMP)
	$(BIN)/gemini-bot console

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Most end-to-end tests wait on subprocesses, sockets and platform pacing, not the CPU: four
# workers (pytest-xdist) halve the suite's time even on two cores.
test: lint
	$(BIN)/pytest -n 4

bench: $(STAMP)
	$(BIN)/python -m bench

# Re-pin after editing dependencies in pyproject.toml (see README: Dependencies).
lock: $(UV)
	$(UV) pip compile pyproject.toml --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --no-header -q -o requirements.lock
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --no-header -q -o requirements-dev.lock

clean:
	rm -rf $(VENV) $(UV_DIR) build *.egg-info .mypy_cache .ruff_cache
