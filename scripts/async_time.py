"""Reproduces the simulated-time table of docs/async.md: how long (in simulated seconds) FedAvg
takes to reach its target when participants differ in speed, synchronous against
over-selection and a deadline.

Every participant gets a compute speed and links from the seed (log-normal, sigma 0.5, around
2 ms per example, 5 Mbit/s up and 20 down), and 10% of them are ten times slower. The same
seed gives the same participants in every run. Each run is `harambee simulate
--simulated-time ...`; the times are the runs' own `sim_time_to_target_s`. Needs a release
build. MNIST is the full set when fetched (`scripts/fetch-data.sh mnist`).

    python3 scripts/async_time.py [--rounds 200] [--out runs/async-time]
"""

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TASKS = {
    "2nn": (["--dataset", "mnist", "--model", "2nn", "--clients", "100", "--fraction", "0.1",
             "--epochs", "1", "--batch", "10", "--lr", "0.1"], 0.97),
    "langid": (["--dataset", "udhr", "--model", "langid", "--clients", "40", "--fraction", "0.25",
                "--epochs", "1", "--batch", "32", "--lr", "0.05", "--optimizer", "adamw",
                "--partition", "natural:10"], 0.95),
}

WAYS = [
    ("everyone selected (synchronous FedAvg)", []),
    ("the first 10 of 13 selected (over-selection)", ["--over-select", "1.3"]),
    ("a deadline (what arrived by then)", ["--virtual-deadline-s", "DEADLINE"]),
    ("no one: FedBuff, K=10 of 13 training", ["--fedbuff", "10:13"]),
]


def run(harambee, out, flags):
    subprocess.run([harambee, "simulate", "--out", out, *flags], check=True, capture_output=True)
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--harambee", default=os.path.join(REPO, "target", "release", "harambee"))
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--tasks", default="2nn,langid")
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "async-time"))
    args = parser.parse_args()
    if not os.path.exists(args.harambee):
        sys.exit(f"{args.harambee} not found: cargo build --release first")
    for task in args.tasks.split(","):
        flags, target = TASKS[task]
        common = [*flags, "--rounds", str(args.rounds), "--seed", "1", "--target-accuracy", str(target),
                  "--simulated-time"]
        print(f"\n{task}, target {target:.0%}, {args.rounds} rounds at most")
        print("| rounds wait for | simulated time to target | rounds | per round | accuracy when it stopped |")
        print("|---|---|---|---|---|")
        deadline = None
        for name, extra in WAYS:
            if "DEADLINE" in extra:
                extra = [deadline if e == "DEADLINE" else e for e in extra]
            out = os.path.join(args.out, task + "-" + name.split()[1].rstrip(":"))
            s = run(args.harambee, out, [*common, *extra])
            if "--over-select" in extra:
                # The deadline run is given over-selection's mean round, so the two cut the
                # slow tail by the same time.
                deadline = str(round(s["sim_time_s"] / max(1, s["rounds"]), 1))
            to_target = s.get("sim_time_to_target_s")
            shown = f"{to_target:,.0f} s" if to_target is not None else "not reached"
            rounds = s["rounds_to_target"] or f">{s['rounds']}"
            per_round = s["sim_time_s"] / max(1, s["rounds"])
            print(f"| {name} | {shown} | {rounds} | {per_round:,.1f} s | {s['final_accuracy']:.4f} |")
        print(f"(the deadline: {deadline} s, over-selection's mean round)")


if __name__ == "__main__":
    main()
