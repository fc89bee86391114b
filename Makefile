# srlab: `make train` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Pinned first: on our machines this is a local CPU build; an unpinned torch pulls a multi-GB CUDA build.
# Another build: `make install TORCH=torch TORCH_INDEX=https://download.pytorch.org/whl/cu128`.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
PIP_TORCH_INDEX = $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)

# `make sweep`: the jobs run one after another in one process (on the trainer's device: the first GPU,
# else the CPU). `make sweep GPUS=4`: in parallel, one GPU each, scheduled by Ray (GPUS=all: every GPU
# Ray detects); jobs beyond the free GPUs wait. Each job gets its share of this machine's cores.
GPUS ?=
NPROC := $(shell nproc 2>/dev/null || echo 1)
CPUS_PER_JOB = $(if $(filter all,$(GPUS)),1,$(shell echo $$(( $(NPROC) / $(GPUS) > 0 ? $(NPROC) / $(GPUS) : 1 ))))
SWEEP_LAUNCHER = $(if $(GPUS),hydra/launcher=ray_gpus hydra.launcher.ray.remote.num_cpus=$(CPUS_PER_JOB) \
	$(if $(filter all,$(GPUS)),,hydra.launcher.ray.init.num_gpus=$(GPUS)),)
SWEEP ?=
# The sweep's experiment (conf/experiment/): compare_models (the paper's four) or compare_zoo (+ ESPCN,
# FSRCNN, EDSR baseline); MODELS=a,b,... sweeps any list of nets instead of the experiment's own.
EXPERIMENT ?= compare_models
MODELS ?=
# The bundled models (src/pretrained/): `make pretrained DATA=<folder of photos>` retrains each with the
# recipe of conf/experiment/pretrained.yaml (pretrained_<name>.yaml or pretrained_<name>_x<scale>.yaml where
# one exists, then <recipe>_restart.yaml from its best weights where that exists) and packs it as
# <name>_x<scale>.pt; their cards (docs/models.md) name T91 + BSD200. A name is a model (conf/model/) or a
# recipe that picks its own (cnn_deep_noise3: cnn_deep for JPEG noise level 3). In the order below: a
# recipe may start from a model packed before it (init=).
# name:scale:epochs:HR patch px:weights stored as. The paper's nets: 48 px patches, 20 epochs where 2 fall
# short of the card's target (cnn_deep: the published FSRCNN/SRCNN scores; cnn_small: +1.5 dB over bicubic),
# 2 where they reach it. EDSR baseline reads the LR image: 24 LR px patches, fp16 weights (half the size).
DATA ?=
PRETRAINED = cnn_deep:2:20:48:fp32 cnn_deep:3:20:48:fp32 cnn_deep:4:20:48:fp32 cnn_small:2:20:48:fp32 \
	cnn_medium:2:2:48:fp32 waifu2x:2:2:48:fp32 edsr_baseline:3:8:72:fp16 edsr_baseline:4:8:96:fp16 \
	edsr_baseline:2:8:48:fp16 edsr_baseline_noise1:2:6:64:fp16 cnn_deep_noise3:2:8:64:fp32 \
	cnn_deep_noise3:1:6:64:fp32

# Published weights (spandrel, the [zoo] extra) live in their own venv: spandrel imports torchvision, and a
# torchvision from the package index needs its own torch build, which pip would otherwise install over the
# core venv's torch. ZOO_TORCH is the pair installed there; both are then pinned while the extra installs,
# so pip fails rather than swap them. A CPU-only pair from pytorch.org:
# `make zoo ZOO_TORCH="torch torchvision" TORCH_INDEX=https://download.pytorch.org/whl/cpu`.
ZOO_VENV ?= .venv-zoo
ZOO_TORCH ?= torch==2.14.1 torchvision==0.29.1
ZOO_PY := $(ZOO_VENV)/bin/python

# Test processes: one per core (pytest-xdist); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= auto

.PHONY: help install train test test-zoo zoo lint clean sweep report compare pretrained

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)" $(PIP_TORCH_INDEX)
	$(PY) -m pip install -q -e .
	touch $@

# Extras (pyproject.toml): sweep (Slurm, Optuna), ray (multi-GPU sweeps), export (ONNX), dev (tests).
$(VENV)/.installed-%: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[$*]"
	touch $@

$(ZOO_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(ZOO_VENV)
	$(ZOO_PY) -m pip install -q --upgrade pip
	$(ZOO_PY) -m pip install -q $(ZOO_TORCH) $(PIP_TORCH_INDEX)
	$(ZOO_PY) -m pip freeze | grep -iE '^(torch|torchvision)==' > $(ZOO_VENV)/torch-pins.txt
	$(ZOO_PY) -m pip install -q -e ".[zoo,dev,export]" -c $(ZOO_VENV)/torch-pins.txt
	touch $@

zoo: $(ZOO_VENV)/.installed  ## create .venv-zoo: srlab with spandrel, to run published weights (README: Published models)

install: $(VENV)/.installed  ## create .venv and install srlab (core: enough to train, evaluate and upscale)

train: install  ## train the default model on the embedded sample photos, test it, print the results
	$(PY) -m src.train $(ARGS)

sweep: install $(if $(GPUS),$(VENV)/.installed-ray,)  ## the paper's experiment: all four models (EXPERIMENT=compare_zoo: + 3 reference nets; MODELS=a,b; GPUS=N: N at once), then the report
	$(PY) -m src.train -m experiment=$(EXPERIMENT) $(if $(MODELS),model=$(MODELS),) $(SWEEP_LAUNCHER) $(ARGS)
	$(PY) -m src.report
	@echo "compare the runs: make compare   (W&B's terminal dashboard on the latest sweep)"

report: install  ## (re)write the report of the latest sweep (or SWEEP=<dir>)
	$(PY) -m src.report $(SWEEP)

compare: install  ## open W&B's terminal dashboard (wandb leet) on the latest sweep (or SWEEP=<dir>)
	$(VENV)/bin/wandb leet $$($(PY) -m src.report --wandb-dir $(SWEEP))

pretrained: install  ## retrain and pack the bundled models (DATA=<folder of photos>)
	@test -n "$(DATA)" || { echo "error: give DATA=<folder of photos> (the bundled models trained on T91 + BSD200)" >&2; exit 2; }
	@for spec in $(PRETRAINED); do set -- $$(echo $$spec | tr : ' '); run=outputs/pretrained/$$1_x$$2; exp=pretrained; \
	  for e in pretrained_$$1 pretrained_$$1_x$$2; do [ -f conf/experiment/$$e.yaml ] && exp=$$e; done; \
	  model=$$([ -f conf/model/$$1.yaml ] && echo model=$$1); \
	  train="$(PY) -m src.train $$model data.scale=$$2 trainer.max_epochs=$$3 data.patch_size=$$4 data.root=$(DATA)"; \
	  $$train experiment=$$exp hydra.run.dir=$$run || exit 1; \
	  if [ -f conf/experiment/$${exp}_restart.yaml ]; then \
	    best=$$($(PY) -c "import json,sys; print(json.load(open(sys.argv[1]))['checkpoint'])" $$run/summary.json); \
	    $$train experiment=$${exp}_restart init=$$best hydra.run.dir=$${run}_stage2 || exit 1; run=$${run}_stage2; fi; \
	  $(PY) -m src.model_file $$run --out src/pretrained/$$1_x$$2.pt --name $$1 $$([ $$5 = fp16 ] && echo --fp16) || exit 1; done

test: $(VENV)/.installed-dev $(VENV)/.installed-sweep $(VENV)/.installed-export $(VENV)/.installed-ray  ## run the test suite
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --ignore=tests/zoo $(ARGS)

test-zoo: $(ZOO_VENV)/.installed  ## the published-weights tests (spandrel), in .venv-zoo
	$(ZOO_PY) -m pytest -n $(TEST_WORKERS) tests/zoo $(ARGS)

lint: $(VENV)/.installed-dev  ## ruff and the import layering (pyproject.toml)
	$(VENV)/bin/ruff check src scripts tests
	$(VENV)/bin/lint-imports

clean:  ## remove the venv, caches and all outputs
	rm -rf $(VENV) $(ZOO_VENV) .pytest_cache .ruff_cache *.egg-info
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
