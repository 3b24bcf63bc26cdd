#!/usr/bin/env python3
"""Table and plot for docs/diloco.md from the runs of scripts/diloco.sh (standard library only).

Usage: diloco_plot.py RUNS_DIR WORKERS EVAL_STEPS [NAME [VOCAB [UNIT]]]
Reads RUNS_DIR/{single,sync,diloco-10,diloco-50,diloco-100}/rounds.csv and summary.json,
prints a markdown table, writes docs/NAME.svg and docs/results/NAME.csv (NAME: diloco).
VOCAB (96) places the untrained model's loss, ln VOCAB; UNIT (char) names what the loss is
per. When the runs' summaries carry a per-language table (udhr-text), prints it too.
"""
import csv
import json
import math
import os
import sys

RUNS = [("sync", "synchronous data-parallel (H=1)", "#000000"),
        ("diloco-10", "DiLoCo H=10", "#1f77b4"),
        ("diloco-50", "DiLoCo H=50", "#2ca02c"),
        ("diloco-100", "DiLoCo H=100", "#d62728"),
        ("single", "single worker", "#9467bd")]


def load(root, name, workers, eval_steps, vocab):
    """Points (inner steps per worker, cumulative bytes, validation loss, cumulative wall
    seconds) of one run; the first is the uniform guess before training."""
    per_round = int(name.split("-")[1]) if name.startswith("diloco") else eval_steps
    points, total, steps, wall = [(0, 0, math.log(vocab), 0.0)], 0, 0, 0.0
    with open(os.path.join(root, name, "rounds.csv")) as f:
        for row in csv.DictReader(f):
            steps += per_round
            wall += float(row["wall_s"])
            model = int(row["bytes_down"]) // max(1, int(row["participants"]))
            if name == "sync":
                # Every step, each worker sends its gradient and gets the average back.
                total += 2 * workers * model * per_round
            elif name.startswith("diloco"):
                total += int(row["bytes_up"]) + int(row["bytes_down"])
            if row["loss"]:
                points.append((steps, total, float(row["loss"]), wall))
    with open(os.path.join(root, name, "summary.json")) as f:
        summary = json.load(f)
    return points, summary


def loss_at(points, step):
    """Validation loss at the last evaluation at or before `step`."""
    return [p[2] for p in points if p[0] <= step][-1]


def table(data, workers, unit):
    steps = max(p[0] for p in data["sync"][0])
    sync_bytes = data["sync"][0][-1][1]
    print(f"| run | syncs | MB sent (all {workers} workers) | vs sync | "
          f"val loss @ {steps // 4} | @ {steps // 2} | @ {steps} | bits/{unit} @ {steps} | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, label, _ in RUNS:
        points = data[name][0]
        last = points[-1]
        if name.startswith("diloco"):
            syncs = steps // int(name.split("-")[1])
        else:
            syncs = steps if name == "sync" else 0
        ratio = f"1/{sync_bytes / last[1]:.0f}" if last[1] else "none"
        if name == "sync":
            ratio = "1"
        print(f"| {label} | {syncs} | {last[1] / 1e6:.1f} | {ratio} | "
              f"{loss_at(points, steps // 4):.3f} | {loss_at(points, steps // 2):.3f} | "
              f"{last[2]:.3f} | {last[2] / math.log(2):.3f} | {last[3]:.0f} |")


def per_language(data):
    """Bits per character of each language after the runs, one column per run."""
    tables = {name: data[name][1].get("per_language") for name, _, _ in RUNS}
    if not all(tables.values()):
        return
    print("\n| language | region | bytes/char | " + " | ".join(label for _, label, _ in RUNS) + " |")
    print("|---|---|---|" + "---|" * len(RUNS))
    rows = {name: {l["code"]: l for l in t} for name, t in tables.items()}
    for lang in tables["sync"]:
        cells = [f'{rows[name][lang["code"]]["bits_per_char"]:.3f}' for name, _, _ in RUNS]
        print(f'| {lang["name"]} ({lang["code"]}) | {lang["region"]} | '
              f'{lang["bytes"] / lang["chars"]:.2f} | ' + " | ".join(cells) + " |")


def svg(data, path, unit):
    w, h, pad = 460, 340, 60
    lo = min(p[2] for d in data.values() for p in d[0])
    hi = max(p[2] for d in data.values() for p in d[0] if p[0] > 0)
    lo, hi = math.floor(lo * 10) / 10, math.ceil(hi * 10) / 10
    steps = max(p[0] for d in data.values() for p in d[0])
    bmax = max(p[1] for d in data.values() for p in d[0])
    bmin = min(p[1] for d in data.values() for p in d[0] if p[1] > 0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h + 40}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{2 * w}" height="{h + 40}" fill="white"/>']

    def y_of(loss):
        return pad / 2 + (h - 1.5 * pad) * (hi - min(max(loss, lo), hi)) / (hi - lo)

    def panel(x0, title, x_of, xticks, key):
        out.append(f'<text x="{x0 + w / 2}" y="16" text-anchor="middle" font-size="13">{title}</text>')
        left, right, bottom = x0 + pad, x0 + w - 15, pad / 2 + h - 1.5 * pad
        out.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>')
        out.append(f'<line x1="{left}" y1="{pad / 2}" x2="{left}" y2="{bottom}" stroke="black"/>')
        k = lo
        while k <= hi + 1e-9:
            y = y_of(k)
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end">{k:.1f}</text>')
            k += 0.2 if hi - lo > 1 else 0.1
        for value, text in xticks:
            x = left + (right - left) * x_of(value)
            out.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="black"/>')
            out.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{text}</text>')
        out.append(f'<text x="{(left + right) / 2}" y="{bottom + 32}" text-anchor="middle">{key}</text>')
        out.append(f'<text x="{x0 + 14}" y="{(pad / 2 + bottom) / 2}" text-anchor="middle" '
                   f'transform="rotate(-90 {x0 + 14} {(pad / 2 + bottom) / 2})">validation loss (nats/{unit})</text>')
        return left, right

    def line(left, right, pts, color):
        coords = " ".join(f"{left + (right - left) * x:.1f},{y_of(l):.1f}" for x, l in pts)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.8"/>')

    x_steps = lambda s: s / steps
    l, r = panel(0, "against inner steps per worker", x_steps,
                 [(steps * i / 4, f"{int(steps * i / 4)}") for i in range(5)], "inner steps per worker")
    drawn = []
    for name, _, color in RUNS:
        # The untrained point (ln VOCAB) would stretch the axis; curves start at the first evaluation.
        pts = [(x_steps(p[0]), p[2]) for p in data[name][0] if p[0] > 0]
        line(l, r, pts, color)
        drawn += [(l + (r - l) * x, y_of(loss)) for x, loss in pts]
    lmin, lmax = math.floor(math.log10(bmin)), math.ceil(math.log10(bmax))
    x_bytes = lambda b: (math.log10(b) - lmin) / (lmax - lmin)
    l, r = panel(w, "against bytes communicated (log scale)", x_bytes,
                 [(10 ** e, f"1e{e}") for e in range(lmin, lmax + 1)], "bytes sent and received, all workers")
    for name, _, color in RUNS:
        pts = [(x_bytes(p[1]), p[2]) for p in data[name][0] if p[1] > 0]
        if pts:
            line(l, r, pts, color)
    # The legend goes in the corner of the first panel that the curves leave emptier: the
    # lower left, or the upper right.
    corners = [(pad + 15, h - 1.5 * pad + pad / 2 - 90), (w - 215, pad / 2 + 10)]

    def crossings(corner):
        x0, y0 = corner
        return sum(x0 - 5 <= x <= x0 + 200 and y0 - 8 <= y <= y0 + 16 * len(RUNS) for x, y in drawn)
    x0, y0 = min(corners, key=crossings)
    for i, (name, label, color) in enumerate(RUNS):
        x, y = x0, y0 + 16 * i
        out.append(f'<line x1="{x}" y1="{y}" x2="{x + 20}" y2="{y}" stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{x + 25}" y="{y + 4}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    root, workers, eval_steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    out_name = sys.argv[4] if len(sys.argv) > 4 else "diloco"
    vocab = int(sys.argv[5]) if len(sys.argv) > 5 else 96
    unit = sys.argv[6] if len(sys.argv) > 6 else "char"
    data = {name: load(root, name, workers, eval_steps, vocab) for name, _, _ in RUNS}
    # Compare at the DiLoCo runs' length, whatever longer baselines were run.
    limit = max(p[0] for name in data if name.startswith("diloco") for p in data[name][0])
    data = {n: ([p for p in pts if p[0] <= limit], s) for n, (pts, s) in data.items()}
    table(data, workers, unit)
    per_language(data)
    svg(data, f"docs/{out_name}.svg", unit)
    os.makedirs("docs/results", exist_ok=True)
    with open(f"docs/results/{out_name}.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["run", "inner_steps_per_worker", "bytes_all_workers", "val_loss"])
        for name, _, _ in RUNS:
            for s, b, l, _ in data[name][0]:
                out.writerow([name, s, b, f"{l:.4f}"])


if __name__ == "__main__":
    main()
