#!/usr/bin/env bash
# Reproduces the table in docs/robustness.md: every strategy against every attack, at 10% and
# 20% attackers, on MNIST split by Dirichlet(0.5) among 100 participants (20 per round), with
# McMahan et al.'s 2NN. Needs the full MNIST (scripts/fetch-data.sh mnist) and a release
# build. Prints the markdown table; each run's outputs stay under $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
H=${HARAMBEE:-target/release/harambee}
OUT=${OUT:-runs/robustness}
ROUNDS=${ROUNDS:-20}
STRATEGIES=${STRATEGIES:-"fedavg median trimmed-mean:0.2 krum:4 multi-krum:4 bulyan:4 norm-bound centered-clip:1"}
ATTACKS=${ATTACKS:-"sign-flip scaling noise label-flip alie ipm"}
mkdir -p "$OUT"

run() { # strategy attack fraction
    local dir="$OUT/${1//:/_}-${2//:/_}-$3"
    local attack=()
    [ "$2" != clean ] && attack=(--attack "$2" --attackers "$3")
    if [ ! -f "$dir/summary.json" ]; then
        "$H" simulate --dataset mnist --model 2nn --clients 100 --fraction 0.2 --epochs 1 \
            --batch 10 --lr 0.05 --partition dirichlet:0.5 --rounds "$ROUNDS" --seed 1 \
            --eval-every "$ROUNDS" --strategy "$1" "${attack[@]}" --out "$dir" >/dev/null 2>&1 \
            || echo '{"final_accuracy": null}' > "$dir/summary.json"
    fi
    python3 -c 'import json,sys; a=json.load(open(sys.argv[1])).get("final_accuracy"); print("fail" if a is None else f"{100*a:.1f}")' "$dir/summary.json"
}

header="| strategy | clean |"
rule="|---|---|"
for a in $ATTACKS; do for f in 0.1 0.2; do
    header+=" $a ${f/0./}0% |"; rule+="---|"
done; done
echo "$header"
echo "$rule"
for s in $STRATEGIES; do
    line="| $s | $(run "$s" clean 0) |"
    for a in $ATTACKS; do for f in 0.1 0.2; do
        line+=" $(run "$s" "$a" "$f") |"
    done; done
    echo "$line"
done
