# brainseg: `make run` (install + the default pipeline) and `make test` (install + tests).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?=  # empty: the profile's (every core); `make run CORES=4` to use fewer
PROFILE := workflow/profiles/default
export PATH := $(BIN):$(PATH)

.PHONY: install run run-real test lint unit integration lock clean help bench faults bench-peers \
	bench-memory bench-peers-real bench-peers-install bench-peers-lock brats-eval-install brats-eval-lock

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv from requirements.lock and install brainseg (no-op when up to date)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

run: install  ## run the whole pipeline on params.yaml with Snakemake (settings: $(PROFILE))
	snakemake --workflow-profile $(PROFILE) $(if $(CORES),--cores $(CORES))

PRESET := workflow/presets/real.yaml
REAL_PARAMS := params-real.yaml
REAL_DATA ?=

# The real preset as one params file (params-real.yaml, not tracked), run by Snakemake
# with --configfile: every command reads that file. REAL_DATA=<folder>: a local copy in
# any supported layout instead of the download by the committed manifest.
run-real: install  ## the pipeline on real BraTS scans by 5-fold CV (REAL_DATA=<folder>: local copy)
	brainseg -q params --base $(PRESET) --out $(REAL_PARAMS) \
	  $(if $(REAL_DATA),--set download.source=local --set 'download.path=$(REAL_DATA)')
	snakemake --workflow-profile $(PROFILE) $(if $(CORES),--cores $(CORES)) --configfile $(REAL_PARAMS)

lint: install  ## ruff, snakefmt --check, snakemake --lint
	ruff check src tests benchmarks
	snakefmt --check Snakefile workflow
	snakemake --lint

# pytest-xdist workers of the test targets (each test module runs whole on one worker, and the
# modules that share the session's pipeline runs on one: tests/conftest.py); 0: one process.
TEST_JOBS ?= 2
XDIST = -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder

unit: install  ## fast tests only
	pytest $(XDIST) -m "not integration"

integration: install  ## Snakemake and DVC runs on the smoke params
	pytest $(XDIST) -m integration

test: lint brats-eval-install  ## linters, then the whole test suite (with the official BraTS evaluation; TEST_JOBS=2 workers)
	pytest $(XDIST)

lock:  ## re-resolve requirements.lock from pyproject.toml (needs network; uses uv)
	$(BIN)/python -m pip install --quiet uv
	# The current pins are uv's preferences: only what pyproject.toml changed moves.
	grep -v '^#' requirements.lock | sed 's/^torch==\([0-9.]*\)$$/torch==\1+cpu/' > requirements.lock.tmp
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra bench --python-version 3.11 \
	  --find-links /opt/wheels --no-emit-find-links --no-header -o requirements.lock.tmp
	sed -i 's/^torch==\([0-9.]*\)+cpu/torch==\1/' requirements.lock.tmp
	{ printf '%s\n' '# Lock file for brainseg: every dependency (run + dev), resolved in one pass' \
	  '# by `make lock` (uv pip compile pyproject.toml --extra dev --extra bench). torch is pinned to' \
	  '# 2.13.0; the CPU build is used where it is on disk.'; cat requirements.lock.tmp; } > requirements.lock
	rm requirements.lock.tmp

PEERS_LOCK := benchmarks/requirements-peers.lock
PEERS_STAMP := $(VENV)/.peers-installed

bench-peers-install: $(PEERS_STAMP)  ## add nnU-Net v2, MONAI and smp to .venv (peer benchmarks only)

# -c requirements.lock: no package of the project's lock changes version (torch stays 2.13.0).
$(PEERS_STAMP): $(STAMP) $(PEERS_LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r $(PEERS_LOCK) \
	  -c requirements.lock
	touch $(PEERS_STAMP)

bench: bench-peers-install  ## every benchmark, quiet machine (~16 min, no GPU); docs/performance.md table from the results
	$(BIN)/python -m benchmarks.run

faults: install  ## SIGKILL every stage at 3 points in both runners, rerun, compare bytes (~30 min); counts to docs/performance.md
	$(BIN)/python -m benchmarks.faults
	$(BIN)/python -m benchmarks.report

bench-memory: install  ## peak RSS of every rule on real BraTS scans vs the Slurm profile's mem_mb (REAL_DATA=<folder>; default ../shared/fixtures/brats18)
	$(BIN)/python -m benchmarks.bench_memory $(if $(REAL_DATA),--real '$(REAL_DATA)')
	$(BIN)/python -m benchmarks.report

bench-peers: bench-peers-install  ## train MONAI's and smp's U-Nets through our loop vs ours (~28 min)
	$(BIN)/python -m benchmarks.run --only peers_training

REAL_DATA_DEFAULT := ../shared/fixtures/brats18

bench-peers-real: bench-peers-install  ## nnU-Net v2 2d vs our real preset on real scans, same folds and training time (FOLDS="0 1": quick mode)
	$(BIN)/python -m benchmarks.bench_peers_real --data '$(or $(REAL_DATA),$(REAL_DATA_DEFAULT))' \
	  $(if $(FOLDS),--folds $(FOLDS))
	$(BIN)/python -m benchmarks.report

bench-peers-lock:  ## re-resolve benchmarks/requirements-peers.lock from the `peers` extra (needs network; uses uv)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))\
	  ["project"]["optional-dependencies"]["peers"], sep="\n")' > $(PEERS_LOCK).in
	$(BIN)/uv pip compile --quiet $(PEERS_LOCK).in -c requirements.lock --python-version 3.11 \
	  --find-links /opt/wheels --no-emit-find-links --no-header -o $(PEERS_LOCK).tmp
	sed -i -e 's/^torch==\([0-9.]*\)+cpu/torch==\1/' -e 's|$(PEERS_LOCK).in|pyproject.toml (peers)|' \
	  $(PEERS_LOCK).tmp
	{ printf '%s\n' '# Peers for benchmarks/bench_peers.py only (make bench-peers-install), never' \
	  '# for make run/test. Resolved by `make bench-peers-lock`: uv pip compile of the `peers`' \
	  '# extra of pyproject.toml with -c requirements.lock, so every package shared with' \
	  '# requirements.lock keeps its version (torch 2.13.0; the CPU build where on disk).'; \
	  cat $(PEERS_LOCK).tmp; } > $(PEERS_LOCK)
	rm $(PEERS_LOCK).in $(PEERS_LOCK).tmp

BRATS_EVAL := .venv-brats-eval
BRATS_EVAL_LOCK := tests/reference/requirements-brats-eval.lock
BRATS_EVAL_STAMP := $(BRATS_EVAL)/.installed

brats-eval-install: $(BRATS_EVAL_STAMP)  ## the official BraTS evaluation in its own venv (.venv-brats-eval), for the lesion-wise cross-check

# Its own venv: brats-evaluation needs numpy < 2.3 and pandas < 3, which requirements.lock is not.
$(BRATS_EVAL_STAMP): $(BRATS_EVAL_LOCK)
	test -x $(BRATS_EVAL)/bin/python || $(PYTHON) -m venv $(BRATS_EVAL)
	$(BRATS_EVAL)/bin/python -m pip install --quiet --disable-pip-version-check -r $(BRATS_EVAL_LOCK)
	touch $(BRATS_EVAL_STAMP)

brats-eval-lock: install  ## re-resolve tests/reference/requirements-brats-eval.lock from its .in (needs network; uses uv)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile --quiet $(BRATS_EVAL_LOCK:.lock=.in) --python-version 3.11 --no-header \
	  -o $(BRATS_EVAL_LOCK).tmp
	{ printf '%s\n' '# The official BraTS evaluation (brats-evaluation on panoptica) for the lesion-wise' \
	  '# cross-check test only, in its own venv (make brats-eval-install: .venv-brats-eval).' \
	  '# Resolved by `make brats-eval-lock` (uv pip compile requirements-brats-eval.in, Python 3.11).'; \
	  cat $(BRATS_EVAL_LOCK).tmp; } > $(BRATS_EVAL_LOCK)
	rm $(BRATS_EVAL_LOCK).tmp

clean:  ## remove pipeline outputs (not the environment)
	rm -rf data models reports/figures logs .snakemake mlflow.db mlruns mlartifacts $(REAL_PARAMS)
	mkdir -p models/folds && touch models/folds/.gitkeep  # the DVC train stage's folds dep
