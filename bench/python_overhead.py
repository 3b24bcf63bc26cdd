"""What the Python path costs over a Rust participant, on the 2NN.

Runs the same federation twice on this machine (a real `harambee serve`, one participant,
TLS, the 2NN, E=1, B=10 on the same examples): once with `harambee join` (Harambee's Rust
trainer), once with a NumPy participant through the `harambee` package. It reports, per round:

- the crossing: handing the global model to `fit` as NumPy arrays and checking and copying
  what `fit` returns (the package's own timing), against a copy of the model's bytes
  measured in the same run (the memory-speed baseline);
- the time outside local training (fetch, evaluate, sign, upload, the coordinator's round
  turnover), Rust against Python, from the runtime's own log lines;
- local training itself, which is NumPy's against Harambee's kernels and not the package's
  cost.

    python bench/python_overhead.py [--harambee target/release/harambee] [--rounds 8]

Needs the package installed (docs/python.md) and a built `harambee`.
"""

import argparse
import ast
import gzip
import os
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from datetime import datetime

import numpy as np

import harambee

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "examples", "python"))
from numpy_logreg import load  # noqa: E402

SIZES = [784, 200, 200, 10]


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header + array.astype(np.uint8).tobytes())


def subset(source, dest, train, test):
    """The first examples of the bundled MNIST as an IDX folder both participants read."""
    os.makedirs(dest)
    for part, n in (("train", train), ("t10k", test)):
        x, y = load(source, part)
        write_idx(os.path.join(dest, f"{part}-images-idx3-ubyte.gz"), (x[:n] * 255).round().reshape(n, 28, 28))
        write_idx(os.path.join(dest, f"{part}-labels-idx1-ubyte.gz"), y[:n])


def fit_2nn(parameters, config):
    """The 2NN trained with plain SGD in NumPy, in place."""
    x, y = config["data"]["train"]
    w = [parameters[f"layers.{i}.weight"] for i in range(3)]
    b = [parameters[f"layers.{i}.bias"] for i in range(3)]
    lr, batch = np.float32(config["learning_rate"]), config["batch_size"] or len(x)
    rng = np.random.default_rng(config["seed"])
    for _ in range(config["epochs"]):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            acts = [x[idx]]
            for i in range(3):
                z = acts[-1] @ w[i].T + b[i]
                acts.append(np.maximum(z, 0) if i < 2 else z)
            p = np.exp(acts[-1] - acts[-1].max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(idx)), y[idx]] -= 1
            grad = p / len(idx)
            for i in (2, 1, 0):
                gw, gb = grad.T @ acts[i], grad.sum(axis=0)
                if i:
                    grad = (grad @ w[i]) * (acts[i] > 0)
                w[i] -= lr * gw
                b[i] -= lr * gb
    return parameters, len(x), {"loss": 0.0}


def evaluate_2nn(parameters, config):
    x, y = config["data"]["test"]
    a = x
    for i in range(3):
        a = a @ parameters[f"layers.{i}.weight"].T + parameters[f"layers.{i}.bias"]
        if i < 2:
            a = np.maximum(a, 0)
    return 0.0, len(x), {"accuracy": float((a.argmax(axis=1) == y).mean())}


STAMP = re.compile(r"^(\S+Z)\s+INFO .*?(trained|update acknowledged) round=(\d+)(?: seconds=([\d.e-]+))?")


def per_round(log):
    """From a participant's log: {round: (seconds training, time of its acknowledgement)}."""
    trained, acked = {}, {}
    for line in log.splitlines():
        m = STAMP.match(line)
        if not m:
            continue
        at = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
        if m.group(2) == "trained":
            trained[int(m.group(3))] = float(m.group(4))
        else:
            acked[int(m.group(3))] = at
    return trained, acked


def outside_training(trained, acked):
    """Per round after the first: the time between acknowledgements, less local training."""
    return [acked[r] - acked[r - 1] - trained[r] for r in sorted(acked) if r - 1 in acked and r in trained]


def federation(harambee_bin, root, name, rounds):
    fed = os.path.join(root, name)
    subprocess.run(
        [harambee_bin, "init", fed, "--model", "2nn", "--rounds", str(rounds), "--min-participants", "1",
         "--quorum", "1", "--epochs", "1", "--batch", "10", "--no-dashboard", "--listen", "127.0.0.1:0"],
        check=True, capture_output=True,
    )
    serve = subprocess.Popen([harambee_bin, "serve", fed], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return fed, serve


def memcpy_ms(values):
    source = np.ones(values, dtype=np.float32)
    target = np.empty_like(source)
    times = []
    for _ in range(200):
        t = time.perf_counter()
        np.copyto(target, source)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--harambee", default=os.path.join(REPO, "target", "release", "harambee"))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--examples", type=int, default=600)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="harambee-python-bench-")
    data = os.path.join(root, "data")
    subset(os.path.join(REPO, "data", "mnist"), data, args.examples, 500)

    fed, serve = federation(args.harambee, root, "rust", args.rounds)
    subprocess.run([args.harambee, "keygen", "--out", os.path.join(root, "r.key")], check=True, capture_output=True)
    rust = subprocess.run(
        [args.harambee, "join", "--invite", os.path.join(fed, "invite.toml"), "--key", os.path.join(root, "r.key"),
         "--data", data],
        env={**os.environ, "RUST_LOG": "info", "NO_COLOR": "1"}, capture_output=True, text=True, check=True,
    )
    serve.wait()
    rust_trained, rust_acked = per_round(rust.stdout + rust.stderr)

    fed, serve = federation(args.harambee, root, "python", args.rounds)
    key = os.path.join(root, "p.key")
    harambee.keygen(key)
    log = os.path.join(root, "python.log")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import python_overhead as b, harambee;"
        "from numpy_logreg import load;"
        "d = {'train': load(sys.argv[3], 'train'), 'test': load(sys.argv[3], 't10k')};"
        "r = harambee.join(sys.argv[2], sys.argv[4], fit=b.fit_2nn, evaluate=b.evaluate_2nn, data=d);"
        "print('TIMINGS', r.fit_timings)"
    )
    with open(log, "w") as out:
        subprocess.run(
            [sys.executable, "-c", script, os.path.dirname(os.path.abspath(__file__)),
             os.path.join(fed, "invite.toml"), data, key],
            env={**os.environ, "HARAMBEE_LOG": "info", "OMP_NUM_THREADS": "1"}, stdout=out, stderr=out, check=True,
        )
    serve.wait()
    text = open(log).read()
    py_trained, py_acked = per_round(text)
    timings = ast.literal_eval(text.split("TIMINGS", 1)[1].strip().splitlines()[0])
    crossing = [c * 1e3 for _, _, c in timings[1:]]
    in_fit = [f for _, f, _ in timings[1:]]

    values = sum(a * b + b for a, b in zip(SIZES, SIZES[1:]))
    base = memcpy_ms(values)
    print(f"model: 2NN, {values:,} parameters ({values * 4 / 2**20:.2f} MiB); {args.rounds} rounds of E=1, B=10 on {args.examples} examples")
    print(f"copy of the model's bytes (baseline, same run): {base:.3f} ms")
    print(f"Python crossing per round (model in as views, out checked and copied): median {statistics.median(crossing):.3f} ms = {statistics.median(crossing) / base:.1f}x the copy")
    rust_out, py_out = outside_training(rust_trained, rust_acked), outside_training(py_trained, py_acked)
    py_fit_ms = statistics.median(in_fit) * 1e3
    print(f"per round outside local training (median): Rust participant {statistics.median(rust_out) * 1e3:.1f} ms, Python participant {statistics.median(py_out) * 1e3:.1f} ms")
    print(f"local training per round (median): Harambee's Rust trainer {statistics.median(rust_trained.values()) * 1e3:.1f} ms, the NumPy fit {py_fit_ms:.1f} ms")


if __name__ == "__main__":
    main()
