#!/usr/bin/env bash
# One GPU check, prepared to run in well under 10 minutes on one NVIDIA GPU (H100/H200 class),
# printing one table:
#   1. tests/test_cuda.py (the CUDA tests);
#   2. bench/train.py --device cuda on the tiny and small presets (moegrow vs the plain loops);
#   3. a ~1B-total MoE of the paper-3b shape (hidden 1024, 64 experts top-4, expert width 768)
#      with --layers layers under `moegrow train` (bf16 autocast), eager and with --compile:
#      tokens/s and MFU (against the bf16 matmul peak measured in the same process);
#   4. the same model under FSDP2 on one GPU (torch.distributed.run --nproc_per_node 1 with
#      MOEGROW_FSDP=1, which shards even a world of one process).
# Each step has its own time limit (570 s in all at worst); a failed or timed-out step is a row
# marked FAIL/TIMEOUT and the rest still run. Logs and results go to --workdir.
#
#   bash bench/gpu_check.sh                # on the GPU machine, from the repository root
#   bash bench/gpu_check.sh --dry-run      # print the commands only (runs anywhere)
set -u -o pipefail

usage() {
    cat <<'EOF'
usage: bench/gpu_check.sh [--dry-run] [--workdir DIR] [--python PY] [--layers N] [--steps N]
                          [--seq-len N] [--batch-size N] [--skip-tests] [--skip-bench]
  --dry-run       print the commands and the table's rows, run nothing
  --workdir DIR   logs, data, models and runs (default: .bench-cache/gpu)
  --python PY     the interpreter with moegrow installed (default: .venv/bin/python, else python3)
  --layers N      layers of the paper-3b-shaped model (default 6: ~1.0B total parameters)
  --steps N       training steps of each run of that model (default 30; the first 5 are warm-up)
  --seq-len N     sequence length of those runs (default 2048)
  --batch-size N  sequences per step of those runs (default 8)
  --skip-tests    leave out tests/test_cuda.py
  --skip-bench    leave out bench/train.py
EOF
}

die() {
    echo "gpu_check.sh: $1" >&2
    exit 2
}

positive() { # option value
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"
}

DRY_RUN=0
WORKDIR=.bench-cache/gpu
PY=""
LAYERS=6
STEPS=30
SEQ_LEN=2048
BATCH=8
SKIP_TESTS=0
SKIP_BENCH=0
while (($#)); do
    case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --skip-tests) SKIP_TESTS=1 ;;
    --skip-bench) SKIP_BENCH=1 ;;
    --workdir | --python | --layers | --steps | --seq-len | --batch-size)
        (($# >= 2)) || die "$1 needs a value"
        case "$1" in
        --workdir) WORKDIR=$2 ;;
        --python) PY=$2 ;;
        --layers) positive "$1" "$2" && LAYERS=$2 ;;
        --steps) positive "$1" "$2" && STEPS=$2 ;;
        --seq-len) positive "$1" "$2" && SEQ_LEN=$2 ;;
        --batch-size) positive "$1" "$2" && BATCH=$2 ;;
        esac
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
((STEPS > 5)) || die "--steps must be more than the 5 warm-up steps, got $STEPS"
if [[ -z "$PY" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi

TOKENS=$((STEPS * SEQ_LEN * BATCH))
DATA="$WORKDIR/train/pydoc-v8192"
MODEL="$WORKDIR/moe-paper3b-${LAYERS}L"
RESULTS="$WORKDIR/results.tsv"
TRAIN=(-m moegrow train "$MODEL" --data "$DATA" --tokens "$TOKENS" --batch-size "$BATCH"
    --seq-len "$SEQ_LEN" --device cuda --quiet)

# name, time limit (s), command...
STEP_NAMES=()
declare -A STEP_LIMIT STEP_CMD
add_step() {
    local name=$1 limit=$2
    shift 2
    STEP_NAMES+=("$name")
    STEP_LIMIT[$name]=$limit
    STEP_CMD[$name]=$(printf '%q ' "$@")
}

((SKIP_TESTS)) || add_step cuda-tests 100 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py
((SKIP_BENCH)) || add_step train-bench 120 "$PY" bench/train.py --device cuda \
    --presets tiny small --workdir "$WORKDIR/train" --repeats 1
# the data folder bench/train.py prepares (pydoc topics, no download), made here if it was skipped
add_step data 40 "$PY" -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; \
import train; train.pydoc_data(Path(sys.argv[1]), 8192)" "$WORKDIR/train"
add_step init 80 "$PY" -m moegrow init "$MODEL" --preset paper-3b --tokenizer "$DATA" \
    --set "num_hidden_layers=$LAYERS" --overwrite
add_step train-eager 60 "$PY" "${TRAIN[@]}" --out "$WORKDIR/run-eager"
add_step train-compile 110 "$PY" "${TRAIN[@]}" --out "$WORKDIR/run-compile" --compile
add_step train-fsdp2 60 env MOEGROW_FSDP=1 "$PY" -m torch.distributed.run --standalone \
    --nproc_per_node 1 "${TRAIN[@]}" --out "$WORKDIR/run-fsdp2"

if ((DRY_RUN)); then
    for name in "${STEP_NAMES[@]}"; do
        echo "[$name, limit ${STEP_LIMIT[$name]} s] ${STEP_CMD[$name]}"
    done
    echo "then: $PY bench/gpu_table.py $WORKDIR"
    exit 0
fi

mkdir -p "$WORKDIR/logs"
: >"$RESULTS"
for name in "${STEP_NAMES[@]}"; do
    rm -rf "$WORKDIR/run-${name#train-}"
    echo "== $name: ${STEP_CMD[$name]}"
    start=$SECONDS
    timeout "${STEP_LIMIT[$name]}" bash -c "${STEP_CMD[$name]}" >"$WORKDIR/logs/$name.log" 2>&1
    code=$?
    seconds=$((SECONDS - start))
    case $code in
    0) status=ok ;;
    124) status=TIMEOUT ;;
    *) status="FAIL($code)" ;;
    esac
    printf "%s\t%s\t%s\n" "$name" "$status" "$seconds" >>"$RESULTS"
    echo "   $status in $seconds s (log: $WORKDIR/logs/$name.log)"
    [[ $status == ok ]] || tail -5 "$WORKDIR/logs/$name.log"
done
"$PY" bench/gpu_table.py "$WORKDIR"
