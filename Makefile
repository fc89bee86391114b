# srlab: `make train` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Pinned first: on our machines this is a local CPU build; an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0
export WANDB_SILENT ?= true

# `make sweep GPUS=4`: one job per GPU in parallel (submitit local launcher); default: jobs in turn.
GPUS ?=
SWEEP_LAUNCHER = $(if $(GPUS),hydra/launcher=local_gpus hydra.launcher.gpus_per_node=1,)

.PHONY: help install train test lint clean sweep report

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install srlab with its dev tools

train: install  ## train the default model on the embedded sample photos, test it, print the results
	$(PY) -m src.train $(ARGS)

sweep: install  ## the paper's experiment: train all four models, then write and print the report
	$(PY) -m src.train -m experiment=compare_models $(SWEEP_LAUNCHER) $(ARGS)
	$(PY) -m src.report

report: install  ## (re)write the report of the latest sweep (or SWEEP=<dir>)
	$(PY) -m src.report $(SWEEP)

test: install  ## run the test suite
	$(PY) -m pytest $(ARGS)

lint: install  ## ruff
	$(VENV)/bin/ruff check src scripts tests

clean:  ## remove the venv, caches and all outputs
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
