# make lab | make run | make test -- each sets up .venv first if it is missing or stale.
# make student (copies with the solutions to write, in build/student/) | make test-browser (JupyterLab in Chromium)
# make test-fast (the unit tests alone) | make lint | make format -- for work on the course.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

# Which TensorFlow: the CPU-only build (about a third of the download, no CUDA warnings) in CI
# and on Linux without an NVIDIA GPU; the full `tensorflow` everywhere else (macOS, GPUs).
# Override with `make test TF=tensorflow` or `make lab TF=tensorflow-cpu`.
TF ?= $(shell if [ "$$(uname -s)" = Linux ] && { [ -n "$$CI" ] || ! command -v nvidia-smi >/dev/null 2>&1; }; \
                then echo tensorflow-cpu; else echo tensorflow; fi)
OTHER_TF := $(if $(filter tensorflow-cpu,$(TF)),tensorflow,tensorflow-cpu)
STAMP := $(VENV)/.installed-$(TF)
BACKENDS_STAMP := $(VENV)/.installed-backends
BROWSER_STAMP := $(VENV)/.installed-browser
KERNEL_CONFIG := $(VENV)/etc/ipython/ipython_kernel_config.py

export KERAS_HOME := $(CURDIR)/.keras
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONHASHSEED := 0

.PHONY: setup lab run notebooks student test test-browser test-fast lint format clean
setup: $(STAMP) $(KERNEL_CONFIG)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "The course needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1). Run make PYTHON=python3.11 ..."; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# the two TensorFlow builds share the `tensorflow` module: never keep both
	@if [ -e $(VENV)/.installed-$(OTHER_TF) ]; then $(BIN)/python -m pip uninstall --yes --quiet $(OTHER_TF); fi
	$(BIN)/python -m pip install --quiet -e ".[$(TF),test]"
	@rm -f $(VENV)/.installed-*
	@touch $@

# The tests also run the models under Keras's JAX and NumPy backends (as bench/full_scale.py does on
# GPU machines without TensorFlow): JAX comes with the first `make test`, not with `make lab`.
$(BACKENDS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[$(TF),test,backends]"
	@touch $@

# The course's kernels leave C-level stdout/stderr (TensorFlow's C++ log lines) on the terminal
# instead of copying them into the notebook: ipykernel's capture thread for them has stalled a
# kernel mid-notebook (ipython/ipykernel#847). IPython reads this file from the venv's etc/ipython.
$(KERNEL_CONFIG): | $(STAMP)
	@mkdir -p $(dir $@)
	@echo "c.IPKernelApp.capture_fd_output = False  # written by make setup, see the Makefile" > $@

# JupyterLab refuses to run as root unless told (containers, CI machines)
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: setup
	$(BIN)/jupyter lab $(ALLOW_ROOT) notebooks/

# Every notebook, top to bottom, in a fresh kernel; executed copies go to build/. helpers.headless
# is nbconvert --execute, but it does not stall after a widget cell (jupyter/nbclient#312).
# CELL_TIMEOUT bounds one cell: the longest at the default sizes (06's training) takes about 4 minutes.
CELL_TIMEOUT ?= 900
run: setup
	$(BIN)/python -m helpers.headless --timeout $(CELL_TIMEOUT) --out-dir build notebooks/[0-9]*.ipynb

# The same, but in place: the notebooks to commit after a change (README, "Working on the course")
notebooks: setup
	$(BIN)/python -m helpers.headless --timeout $(CELL_TIMEOUT) --out-dir notebooks notebooks/[0-9]*.ipynb

# Student copies: every notebook with each ### BEGIN/END SOLUTION region replaced by a
# NotImplementedError and its hint (helpers.exercises); open them from build/student/ in JupyterLab.
student: setup
	$(BIN)/python -m helpers.exercises --out-dir build/student notebooks/[0-9]*.ipynb

# COURSE_OFFLINE: encoders use only weights already on disk, so no test ever downloads.
# Every test: the unit tests, every notebook under nbval, the student copies of 01-03 (in the
# unit tests), then the course in a browser.
test: setup $(BACKENDS_STAMP)
	COURSE_OFFLINE=1 $(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg tests notebooks
	$(MAKE) --no-print-directory student test-browser

$(BROWSER_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[$(TF),test,browser]"
	@touch $@

# JupyterLab on 127.0.0.1 in Debian's Chromium, driven by Playwright (tests/test_browser.py);
# screenshots in build/browser/. Chromium comes from apt-get where it is missing (CHROMIUM=path overrides).
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser || command -v google-chrome)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
test-browser: setup $(BROWSER_STAMP)
	@if [ -z "$(CHROMIUM)" ]; then \
		command -v apt-get >/dev/null || { echo "No Chromium found and no apt-get to install it: install Chromium, or run make test-browser CHROMIUM=/path/to/chrome"; exit 1; }; \
		echo "Installing Debian's chromium for the browser test"; \
		$(SUDO) apt-get install -y -q chromium >/dev/null || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }; \
	fi
	COURSE_BROWSER=1 CHROMIUM="$(or $(CHROMIUM),$$(command -v chromium || command -v chromium-browser))" \
		$(BIN)/python -m pytest -p no:cacheprovider tests/test_browser.py

# The unit tests alone (no training runs, notebooks, benchmarks or other processes): a couple of minutes
test-fast: setup $(BACKENDS_STAMP)
	COURSE_OFFLINE=1 $(BIN)/python -m pytest -m "not slow" tests

# ruff's lint and format checks, configured in pyproject.toml; `make format` applies them
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf build .pytest_cache data/mini_flickr
