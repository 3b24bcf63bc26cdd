"""A complete Harambee participant in NumPy: multinomial logistic regression on MNIST.

The federation's model is Harambee's `logreg` (`harambee init --model logreg`), so Python
and Rust participants train it side by side, or a custom model started from this script's
own initial weights (`--write-initial FILE`, then `harambee init --model safetensors:FILE`).

    python examples/python/numpy_logreg.py --invite invite.toml --key member.key \\
        --data data/mnist --shard 0/2

Only NumPy is needed. The data folder holds MNIST's IDX files, as `data/mnist` does.
"""

import argparse
import gzip
import os
import struct

import numpy as np

import harambee

WEIGHT, BIAS = "layers.0.weight", "layers.0.bias"
FEATURES, CLASSES = 28 * 28, 10


def read_idx(path):
    """An IDX file (gzipped or not) as a NumPy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    _, kind, dims = struct.unpack(">HBB", data[:4])
    if kind != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX files are read here")
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(folder, part, shard=None):
    """Images as float32 rows in [0, 1] and labels, optionally every n-th from i."""

    def find(stem):
        for name in (stem, stem + ".gz"):
            if os.path.exists(os.path.join(folder, name)):
                return os.path.join(folder, name)
        raise FileNotFoundError(f"{folder}: no {stem}[.gz]")

    images = read_idx(find(f"{part}-images-idx3-ubyte"))
    labels = read_idx(find(f"{part}-labels-idx1-ubyte")).astype(np.int64)
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    if shard is not None:
        index, count = shard
        x, labels = x[index::count], labels[index::count]
    return x, labels


def softmax_cross_entropy(w, b, x, y):
    """Mean loss, and the gradient of the logits (softmax minus one-hot) divided by n."""
    logits = x @ w.T + b
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(-np.log(p[rows, y] + 1e-12).mean())
    p[rows, y] -= 1.0
    return loss, p / len(y)


def fit(parameters, config):
    """Local SGD from the global model, as the round's config says."""
    x, y = config["data"]["train"]
    w, b = parameters[WEIGHT], parameters[BIAS]  # views of the global model: train in place
    anchor = (w.copy(), b.copy()) if config["proximal_mu"] > 0 else None
    lr = np.float32(config["learning_rate"])
    batch = config["batch_size"] or len(x)
    rng = np.random.default_rng(config["seed"])
    steps = config["local_steps"] or config["epochs"] * -(-len(x) // batch)
    order, losses = rng.permutation(len(x)), []
    for step in range(steps):
        start = (step * batch) % len(x)
        if start + batch > len(x) or (step and start == 0):
            order = rng.permutation(len(x))
            start = 0
        idx = order[start : start + batch]
        loss, g = softmax_cross_entropy(w, b, x[idx], y[idx])
        grad_w, grad_b = g.T @ x[idx], g.sum(axis=0)
        if anchor is not None:  # FedProx: pull towards the global model
            grad_w += config["proximal_mu"] * (w - anchor[0])
            grad_b += config["proximal_mu"] * (b - anchor[1])
        w -= lr * grad_w
        b -= lr * grad_b
        losses.append(loss)
    return parameters, len(x), {"loss": float(np.mean(losses[-max(1, len(losses) // 4) :]))}


def evaluate(parameters, config):
    """Loss and accuracy of the global model on this member's held-out data."""
    x, y = config["data"]["test"]
    w, b = parameters[WEIGHT], parameters[BIAS]
    loss, _ = softmax_cross_entropy(w, b, x, y)
    accuracy = float(((x @ w.T + b).argmax(axis=1) == y).mean())
    return loss, len(x), {"accuracy": accuracy}


def write_initial(path, seed=0):
    """Initial weights for a custom federation (`harambee init --model safetensors:FILE`)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(FEATURES)
    save_file(
        {
            WEIGHT: rng.uniform(-bound, bound, (CLASSES, FEATURES)).astype(np.float32),
            BIAS: np.zeros(CLASSES, dtype=np.float32),
        },
        path,
    )


def run(fit, evaluate, write_initial, default_name, description):
    """The command line every example shares: join with `fit` and `evaluate`, or write the
    initial weights of a custom federation."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--invite", help="the federation's invite (invite.toml)")
    parser.add_argument("--key", help="this member's key (harambee keygen, or harambee.keygen)")
    parser.add_argument("--data", default="data/mnist", help="a folder of MNIST IDX files")
    parser.add_argument("--shard", help="I/N: train on every N-th example from the I-th")
    parser.add_argument("--name", default=default_name)
    parser.add_argument("--state", help="progress file (default: beside the key)")
    parser.add_argument("--write-initial", metavar="FILE", help="write initial weights and stop")
    args = parser.parse_args()
    if args.write_initial:
        write_initial(args.write_initial)
        print(f"initial weights written to {args.write_initial}")
        return
    if not (args.invite and args.key):
        raise SystemExit("--invite and --key are needed to join")
    shard = tuple(int(v) for v in args.shard.split("/")) if args.shard else None
    data = {"train": load(args.data, "train", shard), "test": load(args.data, "t10k", shard)}
    report = harambee.join(
        args.invite, args.key, fit=fit, evaluate=evaluate, data=data, name=args.name, state=args.state
    )
    print(
        f"participant {report.participant_id}: {len(report.acknowledged)} updates acknowledged,"
        f" {len(report.refused)} refused; the federation says: {report.finish_message}"
    )


if __name__ == "__main__":
    run(fit, evaluate, write_initial, "numpy participant", __doc__.splitlines()[0])
