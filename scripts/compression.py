"""Reproduces the tables of docs/async.md on compressed updates.

1. FedAvg on the 2NN (MNIST, 100 clients, 10 a round, E=1, B=10): for each update encoding,
   the rounds and the bytes uploaded to reach the target accuracy, and the final accuracy.
2. DiLoCo on the char-transformer (Shakespeare, 4 workers, H inner steps): the held-out loss
   after the same number of outer steps with each encoding, and the bytes each uploaded.
3. FedAvg on the 2NN again, with each download encoding (`--download-encoding`: members
   download each round's change, encoded): rounds and bytes downloaded to the target.

Every run is `harambee simulate` with `--update-encoding` for a fixed number of rounds; the
bytes are the run's own `bytes_up` column. MNIST is the full set when fetched
(`scripts/fetch-data.sh mnist`), else the bundled 6,000 images, on which the 2NN stays near
93%: pass `--target 0.9` then. Needs a release build (`cargo build --release`).

    python3 scripts/compression.py [--rounds 150] [--target 0.97] [--out runs/compression]
        [--tables updates,diloco,downloads]
"""

import argparse
import csv
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENCODINGS = ["f32", "f16", "bf16", "int8", "topk:0.1", "topk:0.01"]


def simulate(harambee, out, flags):
    subprocess.run([harambee, "simulate", "--out", out, *flags], check=True, capture_output=True)
    with open(os.path.join(out, "rounds.csv")) as f:
        rounds = list(csv.DictReader(f))
    with open(os.path.join(out, "summary.json")) as f:
        return rounds, json.load(f)


def fedavg_table(harambee, out, rounds, target, direction="up"):
    """Rounds and bytes to `target` for each encoding of the updates (`up`) or of the
    global model's downloads (`down`)."""
    flag, encodings = {
        "up": ("--update-encoding", ENCODINGS),
        "down": ("--download-encoding", ["f32", "f16", "bf16", "int8", "topk:0.1"]),
    }[direction]
    if not rounds:
        return
    print()
    print(f"FedAvg, 2NN on MNIST, 100 clients, 10 a round, E=1, B=10, {flag}, target {target:.0%}")
    print(f"| encoding | rounds to target | MB {direction} to target | bytes vs f32 | final accuracy |")
    print("|---|---|---|---|---|")
    baseline = None
    for encoding in encodings:
        flags = ["--dataset", "mnist", "--model", "2nn", "--clients", "100", "--fraction", "0.1",
                 "--epochs", "1", "--batch", "10", "--lr", "0.1", "--rounds", str(rounds),
                 "--eval-every", "1", "--seed", "1", flag, encoding]
        name = ("fedavg-" if direction == "up" else "download-") + encoding.replace(":", "-")
        rows, summary = simulate(harambee, os.path.join(out, name), flags)
        reached = next((int(r["round"]) for r in rows if r["accuracy"] and float(r["accuracy"]) >= target), None)
        if reached is None:
            print(f"| {encoding} | not in {rounds} | — | — | {summary['final_accuracy']:.4f} |")
            continue
        sent = sum(int(r["bytes_" + direction]) for r in rows if int(r["round"]) <= reached)
        baseline = baseline or sent
        print(f"| {encoding} | {reached} | {sent / 1e6:.1f} | {baseline / sent:.1f}x fewer |"
              f" {summary['final_accuracy']:.4f} |")


def diloco_table(harambee, out, rounds, steps):
    """Each encoding's held-out loss after `rounds` outer steps, and at equal bytes: after as
    many outer steps as fit in the bytes int8 uploads in all `rounds`."""
    print()
    print(f"DiLoCo, char-transformer on Shakespeare, 4 workers, H={steps}, {rounds} outer steps")
    runs = {}
    for encoding in ENCODINGS:
        flags = ["--dataset", "shakespeare", "--model", "char-transformer:2:64:4:64", "--clients", "4",
                 "--fraction", "1", "--optimizer", "adamw", "--lr", "3e-3", "--batch", "16",
                 "--local-steps", str(steps), "--strategy", f"diloco:{steps}", "--rounds", str(rounds),
                 "--eval-every", "1", "--seed", "1", "--update-encoding", encoding]
        rows, _ = simulate(harambee, os.path.join(out, "diloco-" + encoding.replace(":", "-")), flags)
        sent, curve = 0, []
        for r in rows:
            sent += int(r["bytes_up"])
            curve.append((sent, float(r["loss"])))
        runs[encoding] = curve
    budget = runs["int8"][-1][0]
    print(f"| encoding | loss after {rounds} | MB up | loss at int8's {budget / 1e6:.2f} MB (outer steps) |")
    print("|---|---|---|---|")
    for encoding, curve in runs.items():
        within = [(i + 1, loss) for i, (sent, loss) in enumerate(curve) if sent <= budget]
        at_budget = f"{within[-1][1]:.4f} ({within[-1][0]})" if within else "— (0)"
        print(f"| {encoding} | {curve[-1][1]:.4f} | {curve[-1][0] / 1e6:.2f} | {at_budget} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--harambee", default=os.path.join(REPO, "target", "release", "harambee"))
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--diloco-rounds", type=int, default=10)
    parser.add_argument("--diloco-steps", type=int, default=50)
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "compression"))
    parser.add_argument("--tables", default="updates,diloco,downloads")
    args = parser.parse_args()
    tables = args.tables.split(",")
    if not os.path.exists(args.harambee):
        sys.exit(f"{args.harambee} not found: cargo build --release first")
    if "updates" in tables:
        fedavg_table(args.harambee, args.out, args.rounds, args.target)
    if "diloco" in tables and args.diloco_rounds:
        diloco_table(args.harambee, args.out, args.diloco_rounds, args.diloco_steps)
    if "downloads" in tables:
        fedavg_table(args.harambee, args.out, args.rounds, args.target, "down")


if __name__ == "__main__":
    main()
