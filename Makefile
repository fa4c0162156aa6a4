# CAE search harness. `make help` lists the verbs; every target sets itself up on first use.
# Variables are passed through only when set (defaults live in the YAML files).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
# tf = `tensorflow` (uses a GPU when present); tf-cpu = the smaller CPU-only wheel (CI).
TF_EXTRA ?= tf

opt = $(if $($(1)),--$(2) $($(1)))
TRAIN_ARGS = $(call opt,DATA,data) $(call opt,SUBSET,subset) $(call opt,EPOCHS,epochs) $(call opt,SEED,seed)
STUDY_ARGS = $(call opt,STUDY,study) $(call opt,STORAGE,storage)
SEARCH_ARGS = $(TRAIN_ARGS) $(STUDY_ARGS) $(call opt,TRIALS,trials) $(call opt,ENGINE,engine) \
	$(call opt,WORKERS,workers) $(call opt,TIMEOUT,timeout)

.PHONY: help setup test test-fast lint train search pareto worker best compare report ui dashboard colorize-best \
	colorize-search bench

help: ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv with the pinned stack (other targets do this on first use)
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[$(TF_EXTRA),dev]"
	touch $@

test: $(STAMP) ## lint, then the test suite (exactly what CI runs)
	$(PY) -m ruff check cae tests scripts
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## the suite without the slow tests (subprocesses, servers): minutes, for development
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP) ## ruff
	$(PY) -m ruff check cae tests scripts

train: CONFIG ?= experiments/reference.yaml
train: $(STAMP) ## train CONFIG (default the reference CAE); DATA SUBSET EPOCHS SEED STUDY (MLflow experiment)
	$(PY) -m cae train $(CONFIG) $(TRAIN_ARGS) $(call opt,STUDY,study)

search: CONFIG ?= experiments/search.yaml
search: $(STAMP) ## run/resume a search; TRIALS EPOCHS SUBSET DATA STUDY STORAGE ENGINE WORKERS SEED
	$(PY) -m cae search $(CONFIG) $(SEARCH_ARGS)

pareto: $(STAMP) ## two-objective search (val MSE vs code size), experiments/pareto.yaml
	$(PY) -m cae search experiments/pareto.yaml $(SEARCH_ARGS)

worker: CONFIG ?= experiments/search.yaml
worker: $(STAMP) ## join an existing study from another host (same STORAGE, MLFLOW_TRACKING_URI)
	$(PY) -m cae search $(CONFIG) --join $(SEARCH_ARGS)

best: $(STAMP) ## print the best trial of STUDY (best.json)
	$(PY) -m cae best $(STUDY_ARGS)

ui: $(STAMP) ## MLflow UI on the project's store; HOST PORT STUDY
	$(PY) -m cae ui $(call opt,STUDY,study) $(call opt,HOST,host) $(call opt,PORT,port)

dashboard: $(STAMP) ## optuna-dashboard on the study storage (parallel coordinates, importances); STORAGE HOST PORT
	$(PY) -m cae dashboard $(call opt,STORAGE,storage) $(call opt,HOST,host) $(call opt,PORT,port)

compare: $(STAMP) ## overlay loss curves; STUDY=a[,b] TOP=5 TRIAL_IDS=3,7 RUNS=<ids> STATES=COMPLETE,PRUNED LINEAR=1
	$(PY) -m cae compare $(call opt,STUDY,study) $(call opt,TOP,top) $(call opt,TRIAL_IDS,trial-ids) \
		$(call opt,RUNS,runs) $(call opt,STATES,states) $(if $(LINEAR),--linear)

report: $(STAMP) ## reports/<STUDY>/search.md: retrains reference and best for EPOCHS (default: the search's); DATA SUBSET(0=all) SEED
	$(PY) -m cae report $(STUDY_ARGS) $(TRAIN_ARGS)

colorize-best: $(STAMP) ## colorization from STUDY's best trial; VARIANT=rgb|chroma|seed|chroma-warm|chroma-skips|all VIVID=0.7 EPOCHS SUBSET DATA CONFIG
	$(PY) -m cae colorize $(call opt,STUDY,study) $(call opt,CONFIG,config) $(call opt,VARIANT,variant) \
		$(call opt,VIVID,vivid) $(TRAIN_ARGS)

colorize-search: $(STAMP) ## search colorization (study <STUDY>-colorize) from STUDY's best; TRIALS EPOCHS FINAL_EPOCHS SUBSET DATA STORAGE WORKERS SEED
	$(PY) -m cae colorize-search $(SEARCH_ARGS) $(call opt,FINAL_EPOCHS,final-epochs)

bench: $(STAMP) ## speed benchmarks into BENCHMARKS.md (an hour or more; resumable); QUICK=1 DATA
	$(PY) -m cae bench $(if $(QUICK),--quick) $(call opt,DATA,data)
