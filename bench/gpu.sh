#!/usr/bin/env bash
# Every GPU figure and the GPU tests in one call to the GPU machine (docs/gpu.md). That machine has torch,
# transformers, peft and accelerate but no duckdb, pydantic or rouge-score and no network, and a task gets it for
# 15 minutes in all (its start included, one command <= 10 min), so everything it needs is made here first:
#
#   make gpu-kit                  # here: bench/out/gpu/ (lengths, items, tokenizer, wheels, kit.json), checked to
#                                 # fit the 64 MiB a call may carry together with the working tree
#   bash bench/gpu.sh plan        # the parts in priority order, their time boxes and the sum (<= 480 s)
#   bash bench/gpu.sh all         # on the GPU machine, carrying bench/out/gpu: every part in its own time box;
#                                 # $OUT/results.json, $OUT/summary.txt, $OUT/gpu.log (a cut part says so)
#   bash bench/gpu.sh PART        # one part alone, no time box: train-1b train-8b llm tests eval
#   python3 bench/gpu_report.py render $OUT     # here: the tables of docs/benchmarks-gpu.md
#
#   GPU_KIT_DRY_RUN=1 bash bench/gpu.sh all    # the same on CPU at small shapes, boxes x GPU_KIT_BOX_SCALE (4);
#   KIT_PY=3.11 bash bench/gpu.sh kit-wheels   #   its venv's Python may differ: the kit's wheels for it
#   GPU_KIT_PLAN="train-8b 200;report 5" bash bench/gpu.sh all     # other parts/boxes (GPU_KIT_DIR: another kit)
#
# The kit holds inputs derived from the open demo (token lengths, evaluation items rendered from the demo marts, a
# tokenizer trained on demo text) and stays under the ignored bench/out/: never commit it.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${GPU_KIT_DIR:-bench/out/gpu}
OUT=${OUT:-$KIT/results}
KIT_PY=${KIT_PY:-3.12}          # the GPU machine's Python (the binary wheels are downloaded for it)
CARRY_LIMIT_MIB=64              # working tree + carried paths, per device call
DRY=${GPU_KIT_DRY_RUN:-0}
PY=${GPU_PY:-python3}           # on the GPU machine: the image's python3 (torch, transformers, peft, accelerate)

# Priority order and time boxes (seconds). The sum must stay <= 480 (8 min of the 10-minute call; the machine's
# start and the transfers come on top): tests/test_gpu_kit.py checks it.
PLAN=(   # boxes from the first H200 window (2026-11-30): what each part took there, docs/gpu.md
  "setup 20"      # GPU, driver and library versions; the kit's wheels into a private site dir (13-16 s)
  "train-1b 100"  # 1B LoRA: our trainer (packing + chunked loss) vs HF Trainer + peft padded (4 variants in ~85 s)
  "train-8b 70"   # 8B LoRA, the same two (MFU against 989 and ~790 TFLOP/s) (52 s)
  "llm 160"       # 1B generation, 64 x 512-token prompts, 128 new: backend modes vs one prompt at a time
                  # (dynamic + static ~100 s with their compilation; compile, last, ~100 s more: may be cut)
  "tests 50"      # pytest -m gpu tests/gpu (36-40 s)
  "eval 75"       # evaluation items/s, batched pipeline vs a naive per-item loop, 1B shape (64 s)
  "report 5"      # results.json + summary.txt from the parts' JSON
)
# GPU_KIT_PLAN="train-8b 200;report 5" runs other parts or boxes (a second try within the same window, tests)
if [ -n "${GPU_KIT_PLAN:-}" ]; then IFS=';' read -ra PLAN <<<"$GPU_KIT_PLAN"; fi

die() { echo "error: $*" >&2; exit 2; }

py_tag() { "$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")'; }

setup() {
  # WORK holds the parts' JSON and the site dir; `all` makes one per run, a part run alone writes into $OUT
  mkdir -p "$WORK"
  if [ -d "$KIT/whl" ]; then
    local tag; tag=$(py_tag)
    for w in "$KIT"/whl/*-cp3*.whl; do
      [ -e "$w" ] || continue
      case "$(basename "$w")" in
        *-"$tag"-*|*-"$tag".*) ;;
        *) die "$w is for another Python than this $tag: rebuild the kit with KIT_PY=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")') make gpu-kit" ;;
      esac
    done
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
      "$KIT"/whl/*.whl
  else
    echo "warning: no $KIT/whl (run make gpu-kit here): using whatever this Python has" >&2
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  site_env "$PY" - "$WORK/setup.json" "$DRY" <<'EOF'
import json, platform, sys
import torch, transformers, peft, accelerate
info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__, "accelerate": accelerate.__version__, "cuda": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "dry_run": sys.argv[2] == "1"}
for name in ("duckdb", "pydantic", "rouge_score"):
    try:
        info[name] = __import__(name).__version__ if name != "rouge_score" else "ok"
    except Exception as exc:  # reported, not fatal here: the part that needs it fails and says why
        info[name] = f"missing: {exc}"
print(json.dumps(info))
open(sys.argv[1], "w").write(json.dumps(info, indent=1))
EOF
}

site_env() {  # run a command with the kit's site dir first on the path
  PYTHONPATH="$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 "$@"
}

need_kit() {
  [ -f "$KIT/$1" ] || [ -d "$KIT/$1" ] || die "no $KIT/$1: run \`make gpu-kit\` here and carry $KIT (docs/gpu.md)"
}

run_part() {
  local part=$1
  case "$part" in
  setup) setup ;;
  train-1b)
    need_kit lengths.json
    if [ "$DRY" = 1 ]; then
      args=(--size tiny --steps 3 --warmup 1 --max-len 512 --variants ours:512x2,hf_padded,ours_nochunk:512x2)
    else
      args=(--size 1b --steps 20 --warmup 5 --max-len 2048
            --variants ours:2048x8,hf_padded,ours:4096x4,ours_nochunk:2048x8,ours_compile:2048x8)
    fi
    site_env "$PY" bench/bench_train.py speed --lengths "$KIT/lengths.json" --out-dir "$WORK" "${args[@]}"
    ;;
  train-8b)
    need_kit lengths.json
    if [ "$DRY" = 1 ]; then
      args=(--size tiny --steps 3 --warmup 1 --max-len 512 --variants ours:512x2,hf_padded --lora-r 8)
    else
      args=(--size 8b --steps 12 --warmup 4 --max-len 2048 --variants ours:2048x4,hf_padded,ours:4096x2)
    fi
    # the dry run's tiny shape would overwrite train-1b's speed_tiny.json: give it its own folder
    site_env "$PY" bench/bench_train.py speed --lengths "$KIT/lengths.json" --out-dir "$WORK/8b" "${args[@]}"
    ;;
  llm)
    if [ "$DRY" = 1 ]; then
      args=(--small --n-prompts 8 --prompt-tokens 64 --new-tokens 16 --modes dynamic,static --batch-sizes 8
            --naive-prompts 2)
    else
      args=(--modes dynamic,static,compile --batch-sizes 64 --naive-prompts 4)
    fi
    site_env "$PY" bench/bench_llm.py --gpu --out-json "$WORK/llm.json" "${args[@]}"
    ;;
  tests)
    if [ "$DRY" = 1 ]; then export EHRFORGE_GPU_TESTS_ON_CPU=1; else export EHRFORGE_GPU_TESTS_REQUIRE_CUDA=1; fi
    # the quick training checks first: the generation test waits for two compilations of the decode step
    # each outcome also goes to tests.jsonl as it is known (tests/gpu/conftest.py): a cut run still tells
    EHRFORGE_GPU_TESTS_REPORT="$WORK/tests.jsonl" site_env "$PY" -m pytest -m gpu tests/gpu/test_gpu_training.py \
      tests/gpu/test_gpu_generation.py -p no:cacheprovider -v --junitxml "$WORK/tests.xml"
    ;;
  eval)
    need_kit items.jsonl
    need_kit tokenizer
    if [ "$DRY" = 1 ]; then shape=(--random-shape tiny --device cpu); else shape=(--model-1b --device cuda); fi
    site_env "$PY" bench/bench_eval.py --items "$KIT/items.jsonl" --model "$KIT/tokenizer" "${shape[@]}" \
      --skip-metrics embedding_similarity --out-json "$WORK/eval.json"
    ;;
  report)
    "$PY" bench/gpu_report.py collect --work "$WORK" --kit "$KIT" --out "$OUT"
    ;;
  *) die "unknown part $part" ;;
  esac
}

run_all() {
  local scale=${GPU_KIT_BOX_SCALE:-1}
  [ "$DRY" = 1 ] && scale=${GPU_KIT_BOX_SCALE:-4}
  echo "bash bench/gpu.sh all: $(date -u +%FT%TZ), dry run $DRY, time boxes x$scale, OUT=$OUT"
  : >"$WORK/status.tsv"
  for entry in "${PLAN[@]}"; do
    read -r part box <<<"$entry"
    box=$((box * scale))
    echo
    echo "=== $part (time box ${box}s) ==="
    local t0 rc status
    t0=$(date +%s)
    rc=0
    WORK=$WORK timeout -k 5 "$box" bash "$0" --part "$part" || rc=$?
    case $rc in
      0) status=ok ;;
      124|137) status=cut ;;
      *) status=failed ;;
    esac
    local took=$(($(date +%s) - t0))
    if [ "$status" = cut ]; then
      echo "=== $part: CUT FOR TIME after ${took}s (time box ${box}s); what it finished is kept ==="
    else
      echo "=== $part: $status in ${took}s (rc $rc) ==="
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$part" "$status" "$rc" "$took" "$box" >>"$WORK/status.tsv"
  done
}

kit_wheels() {  # wheels for KIT_PY, kit.json, and the check that a call can carry the kit
  plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64)
  pins=$($PY -c "import duckdb, pydantic, pydantic_core as c; print(f'duckdb=={duckdb.__version__} pydantic=={pydantic.VERSION} pydantic-core=={c.__version__}')")
  # shellcheck disable=SC2086
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version "$KIT_PY" --implementation cp "${plat[@]}" \
      -d "$KIT/whl" $pins annotated-types typing-inspection typing-extensions nltk
  $PY -m pip wheel -q --no-deps -w "$KIT/whl" rouge-score   # sdist only on PyPI; pure Python
  rm -rf "$KIT/kit.duckdb" "$KIT/runs"
  commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  dirty=$([ -z "$(git status --porcelain 2>/dev/null)" ] && echo false || echo true)
  printf '{"commit": "%s", "dirty": %s, "created_at": "%s", "kit_python": "%s"}\n' \
    "$commit" "$dirty" "$(date -u +%FT%TZ)" "$KIT_PY" >"$KIT/kit.json"
  # what a device call carries: the working tree (tracked + untracked, not ignored) and the kit
  tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  kit=$(du -sb "$KIT" | cut -f1)
  mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
  ls "$KIT" "$KIT/whl"
  echo "kit $(mib "$kit") MiB + working tree $(mib "$tree") MiB = $(mib $((tree + kit))) MiB (limit ${CARRY_LIMIT_MIB} MiB)"
  [ $((tree + kit)) -lt $((CARRY_LIMIT_MIB * 1048576)) ] || die "the kit and the working tree are $(mib $((tree + kit))) MiB, over the \
${CARRY_LIMIT_MIB} MiB a device call carries: remove large untracked files from the tree"
  echo "next: the device call in docs/gpu.md (command 'bash bench/gpu.sh all', carry [\"$KIT\"], timeout_s 540)"
}

case "${1:-}" in
kit)
  PY=${PY_HERE:-.venv/bin/python}
  : "${MIMIC_ROOT:?set MIMIC_ROOT and MIMIC_NOTE_ROOT (make gpu-kit does)}" "${MIMIC_NOTE_ROOT:?}"
  rm -rf "$KIT" && mkdir -p "$KIT/whl"
  export EHRFORGE_DUCKDB=$PWD/$KIT/kit.duckdb EHRFORGE_RUNS=$PWD/$KIT/runs
  $PY -m ehrforge.build
  $PY -m synthesis.cli --config synthesis/configs/demo.yaml
  $PY bench/bench_train.py lengths --out "$KIT/lengths.json"
  $PY bench/bench_eval.py --warehouse "$KIT/kit.duckdb" --n-items 64 --export-only "$KIT"
  kit_wheels
  ;;
kit-wheels)  # only the wheels, for another Python (KIT_PY=3.11 for a CPU dry run in a 3.11 venv)
  PY=${PY_HERE:-.venv/bin/python}
  need_kit lengths.json
  rm -rf "$KIT/whl" && mkdir -p "$KIT/whl"
  kit_wheels
  ;;
plan)
  total=0
  for entry in "${PLAN[@]}"; do
    read -r part box <<<"$entry"
    printf '%-9s %4ss\n' "$part" "$box"
    total=$((total + box))
  done
  printf '%-9s %4ss (limit 480 s)\n' total "$total"
  ;;
all)
  mkdir -p "$OUT"
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/ehrforge-gpu-XXXXXX")
  export WORK
  run_all 2>&1 | tee "$OUT/gpu.log"
  # the report part ran inside; if it was cut or failed, leave the raw JSON where the next call can see it
  ;;
--part)  # one part inside `all` (WORK set by the caller)
  run_part "$2"
  ;;
train-1b|train-8b|llm|tests|eval)
  mkdir -p "$OUT"
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/ehrforge-gpu-XXXXXX")   # the site dir must not land in $OUT (8 files come back)
  export WORK
  rc=0
  { setup && run_part "$1"; } 2>&1 | tee "$OUT/$1.txt" || rc=$?
  find "$WORK" -maxdepth 2 -name '*.json' -not -path '*/site/*' -exec cp {} "$OUT"/ \;
  exit "$rc"
  ;;
*)
  sed -n '2,19p' "$0"; exit 2
  ;;
esac
