# make lab | make run | make test -- each sets up .venv first if it is missing or stale.
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
KERNEL_CONFIG := $(VENV)/etc/ipython/ipython_kernel_config.py

export KERAS_HOME := $(CURDIR)/.keras
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONHASHSEED := 0

.PHONY: setup lab run test clean
setup: $(STAMP) $(KERNEL_CONFIG)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# the two TensorFlow builds share the `tensorflow` module: never keep both
	@if [ -e $(VENV)/.installed-$(OTHER_TF) ]; then $(BIN)/python -m pip uninstall --yes --quiet $(OTHER_TF); fi
	$(BIN)/python -m pip install --quiet -e ".[$(TF),test]"
	@rm -f $(VENV)/.installed-*
	@touch $@

# The course's kernels leave C-level stdout/stderr (TensorFlow's C++ log lines) on the terminal
# instead of copying them into the notebook: ipykernel's capture thread for them has stalled a
# kernel mid-notebook (ipython/ipykernel#847). IPython reads this file from the venv's etc/ipython.
$(KERNEL_CONFIG): | $(STAMP)
	@mkdir -p $(dir $@)
	@echo "c.IPKernelApp.capture_fd_output = False  # written by make setup, see the Makefile" > $@

lab: setup
	$(BIN)/jupyter lab notebooks/

# Every notebook, top to bottom, in a fresh kernel; executed copies go to build/. helpers.headless
# is nbconvert --execute, but it does not stall after a widget cell (jupyter/nbclient#312).
# CELL_TIMEOUT bounds one cell: the longest at the default sizes takes about 2.5 minutes.
CELL_TIMEOUT ?= 600
run: setup
	$(BIN)/python -m helpers.headless --timeout $(CELL_TIMEOUT) --out-dir build notebooks/[0-9]*.ipynb

# COURSE_OFFLINE: encoders use only weights already on disk, so no test ever downloads
test: setup
	COURSE_OFFLINE=1 $(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg tests notebooks

clean:
	rm -rf build .pytest_cache data/mini_flickr
