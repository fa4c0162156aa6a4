# CAE search harness. `make help` lists the verbs; every target sets itself up on first use.
# Variables are passed through only when set (defaults live in the YAML files).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
# TensorFlow variant (an extra of pyproject.toml): gpu = TensorFlow with its CUDA wheels; tf-cpu = the
# CPU-only wheel (Linux x86-64, a third of the download); tf = plain `tensorflow` (macOS, other CPUs).
# Unset, `make setup` picks gpu when `nvidia-smi -L` lists a GPU, else tf-cpu on Linux x86-64, else tf.
TF_EXTRA ?=
PY_MIN := 3.11

# Every variable a target reads. A name on the command line that is not here is refused at once:
# a misspelt `TRIAL=2` would otherwise run the whole default study.
KNOWN_VARS := DATA SUBSET EPOCHS SEED STUDY STORAGE SET TRIALS CODE ENGINE WORKERS TIMEOUT EXTEND CONFIG TOP TRIAL_IDS \
	RUNS STATES LINEAR HOST PORT AUTH VARIANT VIVID FINAL_EPOCHS FROM QUICK PLAN YES FORCE JSON PYTEST_ARGS TF_EXTRA \
	PYTHON VENV
unknown_vars := $(filter-out $(KNOWN_VARS),$(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v))))
ifneq ($(unknown_vars),)
closest := $(shell $(PYTHON) -c 'import difflib, sys; m = difflib.get_close_matches(sys.argv[1], sys.argv[2:], 1, 0.5); \
	print(f" (did you mean {m[0]}?)" if m else "")' $(firstword $(unknown_vars)) $(KNOWN_VARS) 2>/dev/null)
$(error unknown make variable $(firstword $(unknown_vars))$(closest); known: $(KNOWN_VARS))
endif

# A value as one shell word, whatever it holds (a path with spaces or quotes): '...' with each ' escaped.
quote = '$(subst ','\'',$(1))'
opt = $(if $($(1)),--$(2) $(call quote,$($(1))))
# SET="train.batch_size=64 model.refine_layers=3": any config key, the same name in every verb, each one --set.
TRAIN_ARGS = $(call opt,DATA,data) $(call opt,SUBSET,subset) $(call opt,EPOCHS,epochs) $(call opt,SEED,seed) \
	$(foreach s,$(SET),--set $(call quote,$(s)))
STUDY_ARGS = $(call opt,STUDY,study)
SEARCH_ARGS = $(TRAIN_ARGS) $(STUDY_ARGS) $(call opt,TRIALS,trials) $(call opt,CODE,code) $(call opt,ENGINE,engine) \
	$(call opt,WORKERS,workers) $(call opt,TIMEOUT,timeout) $(if $(EXTEND),--extend)
# The storage URL reaches every command in its environment, never its command line: a PostgreSQL
# password there would show in every process list and in make's echo of the command.
ifneq ($(STORAGE),)
export CAE_STORAGE := $(STORAGE)
endif

.PHONY: FORCE help setup test test-fast lint train search pareto worker best studies delete compare report publish ui dashboard \
	colorize-best colorize-search bench

help: ## list the verbs, their variables and defaults
	@echo "Verbs (each sets itself up on first use; defaults live in experiments/*.yaml and cae/config.py):"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'
	@echo
	@echo "Variables (pass only what you change):"
	@echo "  DATA=path|keras|sample  CIFAR-10 source (default: CAE_DATA, the Keras cache or download, else the sample)"
	@echo "  SUBSET=N (0 = all)  EPOCHS=N  SEED=N (split and init, 42)  STUDY=name (cae-search)  STORAGE=url"
	@echo "  TRIALS=N (30)  CODE=values (256)  WORKERS=N (1)  ENGINE=optuna|keras-tuner  TIMEOUT=s  EXTEND=1"
	@echo "  SET=\"key=value ...\"  any config key, the same name in every verb, e.g. SET=\"train.batch_size=64\""
	@echo "Examples: make search TRIALS=4 EPOCHS=2 SUBSET=3000 STUDY=demo;  make delete STUDY=demo YES=1;  .venv/bin/cae --help"

setup: $(STAMP) ## create .venv with the pinned stack (other targets do this on first use); TF_EXTRA=gpu|tf-cpu|tf forces one

# The stamp holds the installed variant: asking for another one reinstalls.
STAMP_DEPS := pyproject.toml constraints.txt
ifneq ($(TF_EXTRA),)
ifneq ($(TF_EXTRA),$(shell cat $(STAMP) 2>/dev/null))
STAMP_DEPS += FORCE
endif
endif
FORCE:

# One script: the interpreter is checked and the TensorFlow variant chosen before anything is created.
# Switching variants uninstalls the other TensorFlow distribution first (tensorflow and tensorflow-cpu
# both provide the `tensorflow` module and would overwrite each other's files).
$(STAMP): $(STAMP_DEPS)
	@set -eo pipefail; \
	info="$$($(PYTHON) -c 'import sys; v = sys.version_info; print(v[0], v[1], sys.version.split()[0])' 2>/dev/null)" \
	  || { echo "error: $(PYTHON) not found; cae-search needs Python $(PY_MIN)+ (make setup PYTHON=python3.11)" >&2; exit 1; }; \
	read -r major minor full <<< "$$info"; \
	if [ "$$major" -lt 3 ] || { [ "$$major" -eq 3 ] && [ "$$minor" -lt $(word 2,$(subst ., ,$(PY_MIN))) ]; }; then \
	  echo "error: $(PYTHON) is Python $$full; cae-search needs Python $(PY_MIN)+ (make setup PYTHON=python3.11)" >&2; exit 1; fi; \
	extra="$(TF_EXTRA)"; why="TF_EXTRA=$(TF_EXTRA)"; \
	if [ -z "$$extra" ]; then \
	  if gpu="$$(nvidia-smi -L 2>/dev/null | head -n 1)" && [ -n "$$gpu" ]; then extra=gpu; why="nvidia-smi -L: $$gpu"; \
	  elif [ "$$(uname -sm)" = "Linux x86_64" ]; then extra=tf-cpu; why="no NVIDIA GPU: nvidia-smi -L found none"; \
	  else extra=tf; why="no NVIDIA GPU on $$(uname -sm)"; fi; fi; \
	case "$$extra" in gpu|tf) other=tensorflow-cpu;; tf-cpu) other=tensorflow;; \
	  *) echo "error: TF_EXTRA=$$extra is not one of gpu, tf-cpu, tf" >&2; exit 1;; esac; \
	echo "setup: Python $$full, TensorFlow extra '$$extra' ($$why); force one with TF_EXTRA=gpu|tf-cpu|tf"; \
	$(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install -q --upgrade pip; \
	if $(PY) -m pip show -q "$$other" >/dev/null 2>&1; then $(PY) -m pip uninstall -q -y "$$other"; fi; \
	echo "setup: installing the pinned stack into $(VENV) (TensorFlow, Keras, Optuna, MLflow: ~2 GB, a few minutes)"; \
	$(PY) -m pip install --progress-bar on -c constraints.txt -e ".[$$extra,dev]" \
	  | grep --line-buffered -E '^(Collecting|Downloading|Installing|Successfully)' || exit 1; \
	echo "$$extra" > $@

# Two pytest-xdist workers, one test file each at a time (a file's module fixtures stay in one
# process): much of the suite waits on servers, restarts and subprocesses, which overlap. A later
# -n in PYTEST_ARGS wins (PYTEST_ARGS="-n 0" runs in one process, for pdb).
test: $(STAMP) ## lint (ruff check and ruff format), then the test suite (exactly what CI runs)
	$(PY) -m ruff check cae tests scripts
	$(PY) -m ruff format --check cae tests scripts
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

test-fast: $(STAMP) ## the suite without the slow tests (studies end to end, subprocesses, servers), for development
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and ruff format --check
	$(PY) -m ruff check cae tests scripts
	$(PY) -m ruff format --check cae tests scripts

train: CONFIG ?= experiments/reference.yaml
train: $(STAMP) ## train CONFIG (default the reference CAE); DATA SUBSET EPOCHS SEED STUDY (MLflow experiment)
	$(PY) -m cae train $(call quote,$(CONFIG)) $(TRAIN_ARGS) $(call opt,STUDY,study)

search: CONFIG ?= experiments/search.yaml
search: $(STAMP) ## run/resume the default study (30 trials at 256 values, up to 20 epochs each); TRIALS CODE EPOCHS SUBSET DATA STUDY STORAGE ENGINE WORKERS SEED EXTEND SET CONFIG
	$(PY) -m cae search $(call quote,$(CONFIG)) $(SEARCH_ARGS)

pareto: $(STAMP) ## two-objective study cae-pareto (val MSE vs code size 128-2,048, 30 trials, up to 30 epochs); as search
	$(PY) -m cae search experiments/pareto.yaml $(SEARCH_ARGS)

worker: CONFIG ?= experiments/search.yaml
worker: $(STAMP) ## join an existing study from another host (same STORAGE, MLFLOW_TRACKING_URI)
	$(PY) -m cae search $(call quote,$(CONFIG)) --join $(SEARCH_ARGS)

delete: $(STAMP) ## delete STUDY (required): trials, MLflow experiment, registered model, runs/<STUDY>/; asks first (YES=1 does not); FORCE=1 while it runs
	@test -n "$(STUDY)" || { echo "error: say which study: make delete STUDY=<name>" >&2; exit 2; }
	$(PY) -m cae delete $(STUDY_ARGS) $(if $(YES),--yes) $(if $(FORCE),--force)

best: $(STAMP) ## the best trial of STUDY in a few lines (JSON=1: the whole best.json, e.g. for jq)
	@$(PY) -m cae best $(STUDY_ARGS) $(if $(JSON),--json)

studies: $(STAMP) ## the studies of the storage: trials by state, best trial, test PSNR and margin over PCA; STORAGE
	@$(PY) -m cae studies

ui: $(STAMP) ## MLflow UI on the project's store; HOST PORT STUDY AUTH=1 (basic auth; always on for a HOST other than localhost)
	$(PY) -m cae ui $(call opt,STUDY,study) $(call opt,HOST,host) $(call opt,PORT,port) $(if $(AUTH),--auth)

dashboard: $(STAMP) ## optuna-dashboard on the study storage (parallel coordinates, importances); STORAGE (sqlite, postgresql, journal) HOST PORT AUTH=1 (the ui's login; always on for a HOST other than localhost)
	$(PY) -m cae dashboard $(call opt,HOST,host) $(call opt,PORT,port) $(if $(AUTH),--auth)

compare: $(STAMP) ## overlay loss curves; STUDY=a[,b] TOP=5 TRIAL_IDS=3,7 RUNS=<ids> STATES=COMPLETE,PRUNED LINEAR=1
	$(PY) -m cae compare $(call opt,STUDY,study) $(call opt,TOP,top) $(call opt,TRIAL_IDS,trial-ids) \
		$(call opt,RUNS,runs) $(call opt,STATES,states) $(if $(LINEAR),--linear)

report: $(STAMP) ## runs/<STUDY>/report/search.md (default cae-search): the best against PCA, the thumbnail, the reference CAE; EPOCHS DATA SUBSET(0=all) SEED retrain
	$(PY) -m cae report $(STUDY_ARGS) $(TRAIN_ARGS)

publish: $(STAMP) ## copy runs/<STUDY>/report/ and best.json to results/<STUDY>/ (with bench, the only verbs that write tracked files)
	@test -n "$(STUDY)" || { echo "error: say which study: make publish STUDY=<name>" >&2; exit 2; }
	$(PY) -m cae publish $(STUDY_ARGS)


colorize-best: $(STAMP) ## colorization from STUDY's best trial; VARIANT=rgb|chroma|seed|chroma-warm|chroma-skips|chroma-semantic|chroma-oracle|conv|all VIVID=0.7 EPOCHS SUBSET DATA CONFIG
	$(PY) -m cae colorize $(call opt,STUDY,study) $(call opt,CONFIG,config) $(call opt,VARIANT,variant) \
		$(call opt,VIVID,vivid) $(TRAIN_ARGS)

colorize-search: $(STAMP) ## search colorization (study <STUDY>-colorize) from STUDY's best, or FROM=<experiment yaml>; TRIALS EPOCHS FINAL_EPOCHS SUBSET DATA STORAGE WORKERS SEED
	$(PY) -m cae colorize-search $(SEARCH_ARGS) $(call opt,FINAL_EPOCHS,final-epochs) $(call opt,FROM,from)

bench: $(STAMP) ## BENCHMARKS.md: training speed; PLAN=table records the learning-curve table (hours, resumable), PLAN=replay replays search strategies over it (STUDY: a live study beside it); QUICK=1 DATA
	$(PY) -m cae bench $(if $(QUICK),--quick) $(call opt,PLAN,plan) $(call opt,DATA,data) $(if $(filter replay,$(PLAN)),$(STUDY_ARGS))
