#!/usr/bin/env bash
# Reproduces the comparison in docs/diloco.md: at equal compute (STEPS inner steps of batch
# BATCH per worker), synchronous data-parallel training, DiLoCo with H = 10, 50 and 100 over
# WORKERS workers, and a single worker, all training the char-transformer on Shakespeare.
# Uses data/full/shakespeare when fetched (scripts/fetch-data.sh shakespeare), else the
# bundled four plays. Needs a release build. Writes runs under $OUT, then the table (stdout),
# docs/diloco.svg and docs/results/diloco.csv through scripts/diloco_plot.py.
#
# DATASET=udhr-text runs the same comparison on the bundled UDHR declarations of the African
# and Indian languages (those of the language-identification task) as byte-level text, prints
# each language's bits per character after each run, and writes docs/diloco-udhr.svg and
# docs/results/diloco-udhr.csv.
#
# Synchronous data parallelism (average the gradients every step, one shared AdamW) is run as
# one participant with a batch of WORKERS × BATCH: the mean of the workers' mean gradients is
# the mean gradient of their union, so the updates are the same; its bytes are counted as
# WORKERS workers each sending and receiving the model every step.
set -euo pipefail
cd "$(dirname "$0")/.."
H=${HARAMBEE:-target/release/harambee}
DATASET=${DATASET:-shakespeare}
case "$DATASET" in
    shakespeare) NAME=diloco; VOCAB=96; UNIT=char; data=() ;;
    udhr-text) NAME=diloco-udhr; VOCAB=256; UNIT=byte
               data=(--data-dir data/udhr --languages africa,india) ;;
    *) echo "DATASET is shakespeare or udhr-text" >&2; exit 2 ;;
esac
OUT=${OUT:-runs/$NAME}
STEPS=${STEPS:-1000}
WORKERS=${WORKERS:-4}
BATCH=${BATCH:-16}
LR=${LR:-3e-3}
MODEL=${MODEL:-char-transformer:2:64:4:64}
EVAL=${EVAL:-50} # inner steps between evaluations (H = 100 evaluates every outer step)
mkdir -p "$OUT"

common=(--dataset "$DATASET" "${data[@]}" --model "$MODEL" --optimizer adamw --lr "$LR" --seed 1 --fraction 1)

run() { # name, then flags
    local dir="$OUT/$1"; shift
    if [ ! -f "$dir/summary.json" ]; then
        echo "[diloco] $dir" >&2
        "$H" simulate "${common[@]}" "$@" --out "$dir" >"$OUT/$(basename "$dir").log" 2>&1
    fi
}

run single --clients 1 --batch "$BATCH" --strategy fedavg --local-steps "$EVAL" --rounds $((STEPS / EVAL))
run sync --clients 1 --batch $((WORKERS * BATCH)) --strategy fedavg --local-steps "$EVAL" --rounds $((STEPS / EVAL))
for h in 10 50 100; do
    every=$(( h >= EVAL ? 1 : EVAL / h ))
    run "diloco-$h" --clients "$WORKERS" --batch "$BATCH" --strategy "diloco:$h" \
        --rounds $((STEPS / h)) --eval-every "$every"
done
python3 scripts/diloco_plot.py "$OUT" "$WORKERS" "$EVAL" "$NAME" "$VOCAB" "$UNIT"
