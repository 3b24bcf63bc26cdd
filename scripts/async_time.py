"""Reproduces the simulated-time table of docs/async.md: how long (in simulated seconds) FedAvg
takes to reach its target when participants differ in speed, synchronous against
over-selection and a deadline.

Every participant gets a compute speed and links from the seed (log-normal, sigma 0.5, around
2 ms per example, 5 Mbit/s up and 20 down), and 10% of them are ten times slower. The same
seed gives the same participants in every run. Each run is `harambee simulate
--simulated-time ...`; the times are the runs' own `sim_time_to_target_s`. Needs a release
build. MNIST is the full set when fetched (`scripts/fetch-data.sh mnist`).

    python3 scripts/async_time.py [--rounds 200] [--out runs/async-time] [--dp]

With --dp it also compares DP-FedAvg and DP-FedBuff at the same clipping bound and noise on
the 2NN, 100 rounds (versions) each: accuracy, simulated time and the ε each run reports.
"""

import argparse
import json
import os
import re
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


def dp_table(harambee, out):
    flags, _ = TASKS["2nn"]
    common = [*flags, "--rounds", "100", "--eval-every", "100", "--seed", "1", "--simulated-time"]
    print("\n2NN, 100 rounds (versions), simulated time with the slow tail")
    print("| aggregation | accuracy after 100 | simulated time | ε (δ = 1/100) |")
    print("|---|---|---|---|")
    for name, extra in [
        ("FedAvg (synchronous)", []),
        ("FedBuff, K=10 of 13", ["--fedbuff", "10:13"]),
        ("DP-FedAvg, clip 1, z 0.5", ["--strategy", "dp-fedavg:1.0:0.5"]),
        ("DP-FedBuff, clip 1, z 0.5", ["--strategy", "dp-fedavg:1.0:0.5", "--fedbuff", "10:13"]),
    ]:
        path = os.path.join(out, "dp-" + re.sub(r"[^a-z0-9]+", "-", name.lower()))
        said = subprocess.run([harambee, "simulate", "--out", path, *common, *extra],
                              check=True, capture_output=True, text=True).stdout
        with open(os.path.join(path, "summary.json")) as f:
            s = json.load(f)
        eps = re.search(r"privacy: \(([0-9.]+),", said)
        print(f"| {name} | {s['final_accuracy']:.4f} | {s['sim_time_s']:,.0f} s |"
              f" {eps.group(1) if eps else '∞ (no DP)'} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--harambee", default=os.path.join(REPO, "target", "release", "harambee"))
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--tasks", default="2nn,langid")
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "async-time"))
    parser.add_argument("--dp", action="store_true")
    args = parser.parse_args()
    if not os.path.exists(args.harambee):
        sys.exit(f"{args.harambee} not found: cargo build --release first")
    for task in filter(None, args.tasks.split(",")):
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
    if args.dp:
        dp_table(args.harambee, args.out)


if __name__ == "__main__":
    main()
