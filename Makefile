# catdiff: `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install train demo sample test test-all lint format bench bench-quick bench-data report vs-peer clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(PY):
	python3 -m venv $(VENV)

install: $(PY)  ## venv + catdiff with dev extras (torch from this machine's wheels)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'

# A local copy of the cat faces beside the project is used when present; otherwise
# catdiff finds them via $$CATDIFF_DATA_ROOT or downloads them once with kagglehub.
DATA_ROOT ?= $(firstword $(wildcard ../shared/data/catfaces64))

train:  ## the seed's experiment on the Kaggle cat faces (ARGS="key=value ...")
	$(PY) -m catdiff.train $(if $(DATA_ROOT),data.root=$(DATA_ROOT)) $(ARGS)

demo:  ## offline demo: a small model trained 600 steps on synthetic cat sketches, then 64 DDIM samples
	$(PY) -m catdiff.train data=synthetic model=unet_small diffusion.T=250 trainer.max_steps=600 \
		trainer.val_check_interval=200 callbacks.sample_grid.every_n_steps=200 name=demo $(ARGS)
	$(PY) -m catdiff.sample ckpt=$$(ls -t outputs/demo/*/checkpoints/last.ckpt | head -1) n=64 sampler=ddim sampler.steps=50

sample:  ## sample from the newest run (ARGS="ckpt=PATH n=64 sampler=ddim sampler.steps=50")
	$(PY) -m catdiff.sample ckpt=$$(ls -t outputs/*/*/checkpoints/last.ckpt | head -1) $(ARGS)

test:  ## the default test run (no slow/slurm/gpu tests); exit code 5 (no tests) fails
	$(PY) -m pytest -q $(ARGS)

test-all:  ## every test, slow ones included
	$(PY) -m pytest -q -m "" $(ARGS)

lint:  ## ruff lint + format check
	$(PY) -m ruff check catdiff experiments tests
	$(PY) -m ruff format --check catdiff experiments tests

format:  ## apply ruff formatting and autofixes
	$(PY) -m ruff check --fix catdiff experiments tests
	$(PY) -m ruff format catdiff experiments tests

bench:  ## speed vs diffusers, 11-16 min on 2 idle cores: JSON + markdown in experiments/bench/ (ARGS="--out PATH")
	$(PY) -m experiments.bench $(ARGS)

bench-quick:  ## the same benchmark in < 2 min: smaller batch and chains, labelled as such
	$(PY) -m experiments.bench --quick $(ARGS)

bench-data:  ## data setup (cold/warm) and batches/s next to what training consumes (ARGS="--root DIR ...")
	$(PY) -m experiments.bench.data $(ARGS)

REPORT_OUT ?= build/report-fixture
report:  ## example report of the committed fixture runs (made-up eval values) into build/report-fixture/
	OMP_WAIT_POLICY=PASSIVE $(PY) -m catdiff.report tests/fixtures/runs/loss_sweep/multirun_2030-01-01_00-00-00 \
		out=$(REPORT_OUT) $(ARGS)

vs-peer:  ## catdiff's recommended recipe vs diffusers' standard one, same data, 384k images each: experiments/vs_diffusers/REPORT.md (~10.5 h on 2 cores; resumable; ARGS="key=value ...")
	CATDIFF_DATA_ROOT=$${CATDIFF_DATA_ROOT:-$(DATA_ROOT)} OMP_WAIT_POLICY=PASSIVE $(PY) -m experiments.vs_diffusers $(ARGS)

clean:  ## remove run outputs and caches (not the venv)
	rm -rf outputs multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
