# Two commands for a fresh machine: `make quickstart` and `make test`.
# Inside an active virtual environment (or conda env) everything installs there; otherwise into .venv.
PYTHON ?= python3
VENV ?= .venv
ifneq ($(VIRTUAL_ENV)$(CONDA_PREFIX),)
PY := python
VENV_DEP :=
else
PY := $(VENV)/bin/python
VENV_DEP := $(VENV)/bin/python
endif

.PHONY: install install-dev quickstart test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

install: $(VENV_DEP)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .

install-dev: $(VENV_DEP)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .

# Pretrain the tiny model on the bundled corpus, fine-tune it on the bundled sentiment sample, predict.
quickstart: install
	$(PY) -m lit_lm fit --config cli.yaml --config configs/quickstart.yaml
	$(PY) -m lit_lm fit --config configs/quickstart_sst2.yaml
	$(PY) -m lit_lm predict --config configs/quickstart_sst2.yaml --ckpt_path runs/quickstart_sst2/checkpoints/last.ckpt
	@echo
	@cat runs/quickstart/summary.txt runs/quickstart_sst2/summary.txt
	@echo "TensorBoard logs:  tensorboard --logdir runs"
	@echo "checkpoints:       runs/quickstart/checkpoints/ (pretraining), runs/quickstart_sst2/checkpoints/ (SST-2)"
	@echo "predictions:       runs/quickstart_sst2/SST-2.tsv"

test: install-dev
	$(PY) -m pytest --durations=20
