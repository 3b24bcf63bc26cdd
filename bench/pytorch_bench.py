#!/usr/bin/env python3
"""PyTorch CPU reference benchmark for Harambee's FedAvg (benchmark only).

Install (PyPI only; the CPU-only wheel index is not reachable here, so this
pulls the regular, large torch wheel):

    pip install -r bench/requirements.txt     # i.e. pip install torch==2.15.0

Run from the repository root:

    python3 bench/pytorch_bench.py --json bench/results.json

Reads gzipped IDX MNIST from data/full/mnist (scripts/fetch-data.sh), falling
back to the committed subset in data/mnist. Runs with torch.set_num_threads(2).

Measures
  * 2NN (784-200-200-10, ReLU) FedAvg: 1000 IID clients x 60 examples, 50
    sampled per round, E=1, B=10, SGD lr 0.1. A round = for each sampled
    client load global weights, train, collect weights; weighted average;
    evaluate on the test set. Median of 5 rounds after 1 warm-up round.
  * CNN (McMahan et al. 2017: conv5x5x32-relu-pool2-conv5x5x64-relu-pool2-
    fc512-relu-fc10, padding 2, fc input 7*7*64=3136) FedAvg: 100 IID clients
    x 600 examples, 10 sampled per round, E=5, B=10, SGD lr 0.05. Median of
    2 rounds after 1 warm-up round (--cnn-rounds to change); test-set eval
    timed separately.
  * local training throughput (samples/s, local SGD only), start-up time
    (process start -> first round begun), peak RSS (getrusage).
Prints a markdown table; writes JSON to --json.
"""
import time

T_SCRIPT = time.time()

import argparse
import gzip
import json
import os
import platform
import resource
import statistics
import struct
import sys


def process_start_time():
    """Wall-clock time at which this process started (Linux /proc), else script start."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return T_SCRIPT


T_PROCESS = process_start_time()

import warnings  # noqa: E402

# numpy is not needed; silence torch's "Failed to initialize NumPy" warning
warnings.filterwarnings("ignore", message=".*NumPy.*")
warnings.filterwarnings("ignore", message=".*non-writable.*")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

RSS_AFTER_IMPORT_MIB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        t = torch.frombuffer(data, dtype=torch.uint8, offset=16)
        return t.view(n, 1, rows, cols).float().div_(255.0)
    if magic == 0x801:
        return torch.frombuffer(data, dtype=torch.uint8, offset=8).long()
    raise ValueError(f"{path}: bad IDX magic {magic:#x}")


def load_mnist():
    for d in (os.path.join(ROOT, "data", "full", "mnist"), os.path.join(ROOT, "data", "mnist")):
        if os.path.isfile(os.path.join(d, "train-images-idx3-ubyte.gz")):
            x = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz"))
            y = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz"))
            xt = read_idx(os.path.join(d, "t10k-images-idx3-ubyte.gz"))
            yt = read_idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz"))
            return d, x, y, xt, yt
    sys.exit("no MNIST found: run scripts/fetch-data.sh (or keep data/mnist)")


class TwoNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 200), nn.Linear(200, 200), nn.Linear(200, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1, self.fc2 = nn.Linear(7 * 7 * 64, 512), nn.Linear(512, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def local_train(model, x, y, epochs, batch, lr, gen):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()


@torch.no_grad()
def evaluate(model, xt, yt, batch=1000):
    model.eval()
    correct = 0
    for i in range(0, len(xt), batch):
        correct += (model(xt[i:i + batch]).argmax(1) == yt[i:i + batch]).sum().item()
    return correct / len(xt)


def fedavg_round(model, global_state, clients, sampled, epochs, batch, lr, gen, xt, yt):
    """One FedAvg round; returns (new_state, acc, train_agg_s, eval_s, local_s, n_samples)."""
    t0 = time.perf_counter()
    local_s, n_samples = 0.0, 0
    acc_state = {k: torch.zeros_like(v) for k, v in global_state.items()}
    total = 0
    for c in sampled.tolist():
        x, y = clients[c]
        model.load_state_dict(global_state)
        t1 = time.perf_counter()
        local_train(model, x, y, epochs, batch, lr, gen)
        local_s += time.perf_counter() - t1
        n_samples += epochs * len(x)
        w = len(x)
        total += w
        for k, v in model.state_dict().items():
            acc_state[k].add_(v, alpha=w)
    new_state = {k: v / total for k, v in acc_state.items()}
    t_agg = time.perf_counter()
    model.load_state_dict(new_state)
    acc = evaluate(model, xt, yt)
    t_end = time.perf_counter()
    return new_state, acc, t_agg - t0, t_end - t_agg, local_s, n_samples


def run_fedavg(name, model_cls, x, y, xt, yt, n_clients, per_client, per_round,
               epochs, batch, lr, warmup, rounds, seed, on_first_round=None):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=gen)
    assert n_clients * per_client <= len(x), "not enough training data for the client split"
    clients = [(x[perm[i * per_client:(i + 1) * per_client]], y[perm[i * per_client:(i + 1) * per_client]])
               for i in range(n_clients)]
    model = model_cls()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rows = []
    for r in range(warmup + rounds):
        sampled = torch.randperm(n_clients, generator=gen)[:per_round]
        if r == 0 and on_first_round:
            on_first_round()
        t0 = time.perf_counter()
        state, acc, train_s, eval_s, local_s, n = fedavg_round(
            model, state, clients, sampled, epochs, batch, lr, gen, xt, yt)
        round_s = time.perf_counter() - t0
        tag = "warm-up" if r < warmup else "timed"
        print(f"  {name} round {r + 1} ({tag}): {round_s:.3f}s (train+agg {train_s:.3f}s, "
              f"eval {eval_s:.3f}s), acc {acc:.4f}", file=sys.stderr, flush=True)
        if r >= warmup:
            rows.append((round_s, train_s, eval_s, local_s, n, acc))
    return {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "clients": n_clients, "examples_per_client": per_client, "clients_per_round": per_round,
        "E": epochs, "B": batch, "lr": lr, "warmup_rounds": warmup, "timed_rounds": rounds,
        "round_s_median": statistics.median(r[0] for r in rows),
        "train_aggregate_s_median": statistics.median(r[1] for r in rows),
        "eval_s_median": statistics.median(r[2] for r in rows),
        "round_s_all": [round(r[0], 4) for r in rows],
        "local_train_samples_per_s": sum(r[4] for r in rows) / sum(r[3] for r in rows),
        "test_accuracy": rows[-1][5],
        "rounds_completed": warmup + rounds,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write results as JSON to this file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nn-rounds", type=int, default=5)
    ap.add_argument("--cnn-rounds", type=int, default=2)
    ap.add_argument("--skip-cnn", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    data_dir, x, y, xt, yt = load_mnist()
    print(f"data: {os.path.relpath(data_dir, ROOT)} train {len(x)} test {len(xt)}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)

    startup = {}

    def first_round():
        startup["s"] = time.time() - T_PROCESS

    n_nn_clients = min(1000, len(x) // 60)
    results = [run_fedavg("2NN", TwoNN, x, y, xt, yt, n_nn_clients, 60, 50, 1, 10, 0.1,
                          1, args.nn_rounds, args.seed, on_first_round=first_round)]
    if not args.skip_cnn:
        results.append(run_fedavg("CNN", CNN, x, y, xt, yt, min(100, len(x) // 600), 600, 10,
                                  5, 10, 0.05, 1, args.cnn_rounds, args.seed))

    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    report = {
        "torch": torch.__version__, "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "data_dir": os.path.relpath(data_dir, ROOT),
        "startup_s": startup["s"], "peak_rss_mib": peak_rss_mib,
        "rss_after_import_torch_mib": RSS_AFTER_IMPORT_MIB,
        "total_s": time.time() - T_PROCESS, "results": results,
    }

    print(f"\nPyTorch {torch.__version__}, CPU, {report['threads']} threads, data {report['data_dir']}\n")
    print("| model | clients/round | E | B | lr | round s (median) | train+agg s | eval s "
          "| local train samples/s | test acc | timed rounds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['clients_per_round']} x {r['examples_per_client']} | {r['E']} | "
              f"{r['B']} | {r['lr']} | {r['round_s_median']:.3f} | {r['train_aggregate_s_median']:.3f} | "
              f"{r['eval_s_median']:.3f} | {r['local_train_samples_per_s']:.0f} | "
              f"{r['test_accuracy']:.4f} | {r['timed_rounds']} (+1 warm-up) |")
    print(f"\nstart-up (process start -> first round): {report['startup_s']:.2f} s; "
          f"peak RSS: {peak_rss_mib:.0f} MiB (of which import torch: "
          f"{RSS_AFTER_IMPORT_MIB:.0f} MiB); total: {report['total_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
