# MOSAIC: make install | run | sweep | report | explore | browser | test | test-fast | bench | lint | clean
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
# Extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: install run sweep report explore browser test test-fast bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first: any later package that depends on torch must find it, or pip pulls a CUDA build.
install: $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==$(TORCH_VERSION) $(TORCH_PIP_ARGS)
	$(PY) -m pip install --quiet -e '.[dev]'
	# The sparse-probing suite's datasets ship inside sae-probes. Without its dependencies: they would pull
	# xgboost's CUDA/NCCL build (xgboost-cpu above is the same module); the rest are MOSAIC's own.
	$(PY) -m pip install --quiet --no-deps sae-probes==0.4.2

run:
	$(PY) run.py

sweep:
	$(PY) run.py -m pooling=mean,max,sum,last,topn binarize=none,threshold

# The newest run or sweep directory, or SWEEP=multirun/DATE/TIME.
report:
	$(PY) -m mosaic report $${SWEEP:-$$(ls -d multirun/*/*/ | sort | tail -1)}

# The explore page of the newest run or sweep directory, or SWEEP=multirun/DATE/TIME.
explore:
	$(PY) -m mosaic explore $${SWEEP:-$$(ls -d multirun/*/*/ | sort | tail -1)}

# The Chromium the explore page's browser test drives (Debian's package, as root; the test is skipped without it).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium)

test:
	WANDB_MODE=offline $(PY) -m pytest

test-fast:
	WANDB_MODE=offline $(PY) -m pytest -m "not slow and not slurm"

bench:
	WANDB_MODE=disabled $(PY) -m mosaic bench

lint:
	$(PY) -m ruff check .

clean:
	find multirun -mindepth 1 -not -name .gitkeep -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache
