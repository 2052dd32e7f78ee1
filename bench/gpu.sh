#!/usr/bin/env bash
# Every GPU figure the README asks for, in parts that each fit one call to the GPU machine (10 min a call,
# 30 min a session). The GPU machine has torch/transformers/peft/accelerate but no duckdb, pydantic or
# rouge-score and no network, so the warehouse-side inputs and those wheels (~30 MB) are made here first:
#
#   make gpu-kit                    # here (= demo-data, then `bash bench/gpu.sh kit` with MIMIC_ROOT and
#                                   # MIMIC_NOTE_ROOT set): bench/out/gpu/ (lengths, items, tokenizer, wheels)
#   bash bench/gpu.sh train-1b      # on the GPU machine, carrying bench/out/gpu (each part prints its table and
#   bash bench/gpu.sh train-8b      # keeps its output in $OUT/<part>.txt; train-* also write JSON there)
#   bash bench/gpu.sh llm
#   bash bench/gpu.sh eval
#
# The kit holds inputs derived from the open demo (token lengths, evaluation items rendered from the demo
# marts, a tokenizer trained on demo text) and stays under the ignored bench/out/: never commit it.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=bench/out/gpu
OUT=${OUT:-$KIT/results}
KIT_PY=${KIT_PY:-3.12}          # the GPU machine's Python (wheels are downloaded for it)

gpu_env() {
  mkdir -p "$OUT"
  if [ -d "$KIT/whl" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$KIT"/whl/*.whl
    export PYTHONPATH=/tmp/site:.
  else
    export PYTHONPATH=.
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
}

part=${1:-}
if [[ $part == train-1b || $part == train-8b || $part == llm || $part == eval ]] && [[ -z ${GPU_SH_TEE:-} ]]; then
  mkdir -p "$OUT"   # every GPU part's full output is also kept as $OUT/<part>.txt
  GPU_SH_TEE=1 bash "$0" "$part" 2>&1 | tee "$OUT/$part.txt"
  exit "${PIPESTATUS[0]}"
fi

case "$part" in
kit)
  PY=${PY:-.venv/bin/python}
  : "${MIMIC_ROOT:?set MIMIC_ROOT and MIMIC_NOTE_ROOT (make gpu-kit does)}" "${MIMIC_NOTE_ROOT:?}"
  rm -rf "$KIT" && mkdir -p "$KIT/whl"
  export EHRFORGE_DUCKDB=$PWD/$KIT/kit.duckdb EHRFORGE_RUNS=$PWD/$KIT/runs
  $PY -m ehrforge.build
  $PY -m synthesis.cli --config synthesis/configs/demo.yaml
  $PY bench/bench_train.py lengths --out "$KIT/lengths.json"
  $PY bench/bench_eval.py --warehouse "$KIT/kit.duckdb" --n-items 64 --export-only "$KIT"
  plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
  pins=$($PY -c "import duckdb, pydantic, pydantic_core as c; print(f'duckdb=={duckdb.__version__} pydantic=={pydantic.VERSION} pydantic-core=={c.__version__}')")
  # shellcheck disable=SC2086
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version "$KIT_PY" --implementation cp "${plat[@]}" \
      -d "$KIT/whl" $pins annotated-types typing-inspection nltk
  $PY -m pip wheel -q --no-deps -w "$KIT/whl" rouge-score   # sdist only on PyPI; pure Python
  rm -rf "$KIT/kit.duckdb" "$KIT/runs"
  du -sh "$KIT"; ls "$KIT" "$KIT/whl"
  ;;
train-1b)
  gpu_env
  python3 bench/bench_train.py speed --size 1b --lengths "$KIT/lengths.json" --steps 40 --warmup 8 \
    --variants hf_padded,ours:2048x8,ours:4096x4,ours_nochunk:2048x8,ours_compile:2048x8 --out-dir "$OUT"
  ;;
train-8b)
  gpu_env
  python3 bench/bench_train.py speed --size 8b --lengths "$KIT/lengths.json" --steps 30 --warmup 6 \
    --variants hf_padded,ours:2048x4,ours:4096x2 --out-dir "$OUT"
  ;;
llm)
  gpu_env
  python3 bench/bench_llm.py --gpu --modes dynamic,static,compile --batch-sizes 32,64 --naive-prompts 4
  ;;
eval)
  gpu_env
  python3 bench/bench_eval.py --items "$KIT/items.jsonl" --model "$KIT/tokenizer" --model-1b --device cuda \
    --skip-metrics embedding_similarity
  ;;
*)
  sed -n '2,14p' "$0"; exit 2
  ;;
esac
