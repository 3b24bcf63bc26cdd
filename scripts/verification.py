"""Reproduces the networked table of docs/verification.md: a community federation of real
`harambee serve` and `harambee join` processes on this machine training the 2NN with DiLoCo,
unverified against verified at two replay fractions. For each: the wall time of the rounds,
the coordinator's spot checks (how many, and their mean time from its log), the held-out
accuracy the workers report for the last evaluated model, and how long `harambee ledger
verify` (with `--replay-training` when verified) takes afterwards. Needs a release build
(`cargo build --release`). MNIST is the full set when fetched (`scripts/fetch-data.sh mnist`).

    python3 scripts/verification.py [--rounds 20] [--workers 4] [--steps 50]
"""

import argparse
import datetime
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = os.path.join(REPO, "target", "release", "harambee")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def mnist():
    full = os.path.join(REPO, "data", "full", "mnist")
    return full if os.path.isdir(full) else os.path.join(REPO, "data", "mnist")


def wait_for(path, needle, patience=60):
    deadline = time.time() + patience
    while time.time() < deadline:
        if os.path.exists(path) and needle in open(path, errors="replace").read():
            return
        time.sleep(0.1)
    sys.exit(f"{path}: no {needle!r} after {patience}s")


def stamp(line):
    m = STAMP.match(line)
    return datetime.datetime.fromisoformat(m.group(1)).timestamp() if m else None


def run(name, extra, args, root):
    fed = os.path.join(root, name)
    data = mnist()
    subprocess.run(
        [EXE, "init", fed, "--mode", "community", "--model", "2nn",
         "--strategy", f"diloco:{args.steps}", "--rounds", str(args.rounds),
         "--min-participants", str(args.workers), "--quorum", str(args.workers),
         "--batch", "10", "--seed", "1", "--listen", "127.0.0.1:0", "--no-dashboard"]
        + [a.replace("DATA", data) for a in extra],
        check=True, capture_output=True)
    env = dict(os.environ, RUST_LOG="info")
    serve_log = os.path.join(root, f"{name}-serve.log")
    serve = subprocess.Popen([EXE, "serve", fed, "--linger-s", "1"], env=env,
                             stdout=open(serve_log, "w"), stderr=subprocess.STDOUT)
    wait_for(serve_log, "coordinator listening")
    workers = []
    for k in range(args.workers):
        key = os.path.join(root, f"{name}-w{k}.pem")
        subprocess.run([EXE, "keygen", "--out", key], check=True, capture_output=True)
        log = open(os.path.join(root, f"{name}-w{k}.log"), "w")
        workers.append(subprocess.Popen(
            [EXE, "join", "--invite", os.path.join(fed, "invite.toml"), "--key", key,
             "--data", data, "--name", f"w{k}", "--give-up-after-s", "120"],
            env=env, stdout=log, stderr=subprocess.STDOUT))
    serve.wait(timeout=1800)
    for w in workers:
        w.wait(timeout=120)
    lines = open(serve_log, errors="replace").read().splitlines()
    opened = [stamp(l) for l in lines if "round opened" in l]
    closed = [stamp(l) for l in lines if "round closed" in l]
    checks = [float(m.group(1)) for l in lines
              if "spot check" in l and (m := re.search(r"ms=([\d.]+)", l))]
    frauds = sum("fraud:" in l for l in lines)
    db = sqlite3.connect(os.path.join(fed, "state.db"))
    last = db.execute("SELECT MAX(round) FROM evaluations").fetchone()[0]
    acc = db.execute("SELECT SUM(accuracy * examples) / SUM(examples) FROM evaluations "
                     "WHERE round = ?", (last,)).fetchone()[0]
    verify = [EXE, "ledger", "verify", fed] + (["--replay-training"] if extra else [])
    started = time.time()
    out = subprocess.run(verify, capture_output=True, text=True)
    verify_s = time.time() - started
    if out.returncode != 0:
        sys.exit(f"{name}: ledger verify failed:\n{out.stdout}{out.stderr}")
    replayed = re.search(r"matching bit for bit: (\d+ of \d+)", out.stdout)
    return {
        "name": name,
        "round_s": (closed[-1] - opened[0]) / len(closed),
        "checks": len(checks),
        "check_ms": sum(checks) / len(checks) if checks else 0.0,
        "frauds": frauds,
        "accuracy": acc,
        "evaluated": last - 1,
        "verify_s": verify_s,
        "replayed": replayed.group(1) if replayed else "-",
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--steps", type=int, default=50, help="DiLoCo's H (inner steps)")
    args = p.parse_args()
    if not os.path.exists(EXE):
        sys.exit("build first: cargo build --release")
    modes = [
        ("unverified", []),
        ("verified-0.25", ["--verify", "0.25", "--replay-data", "DATA"]),
        ("verified-1", ["--verify", "1", "--replay-data", "DATA"]),
    ]
    with tempfile.TemporaryDirectory() as root:
        rows = [run(name, extra, args, root) for name, extra in modes]
    print(f"\n{args.workers} workers, 2NN, DiLoCo H={args.steps}, {args.rounds} rounds, "
          f"MNIST from {mnist()}\n")
    print("| run | s per round | spot checks (mean ms) | frauds | held-out accuracy "
          "(model after round) | ledger verify s | training replayed |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['round_s']:.3f} | {r['checks']} ({r['check_ms']:.1f}) | "
              f"{r['frauds']} | {r['accuracy']:.4f} ({r['evaluated']}) | {r['verify_s']:.2f} | "
              f"{r['replayed']} |")


if __name__ == "__main__":
    main()
