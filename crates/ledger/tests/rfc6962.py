"""An independent RFC 6962 Merkle tree on hashlib, for the ledger's tests.

For every tree size n in 1..=N (leaves b"leaf-0", b"leaf-1", ...) prints one JSON line:
the root, the audit paths of leaves 0, n//2 and n-1, and the consistency proofs from sizes
1, n//2 and n-1, all hex. Written from the RFC's definitions, not from the Rust code.
"""
import hashlib
import json
import sys


def leaf(d):
    return hashlib.sha256(b"\x00" + d).digest()


def node(a, b):
    return hashlib.sha256(b"\x01" + a + b).digest()


def k_of(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d):
    if len(d) == 0:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return leaf(d[0])
    k = k_of(len(d))
    return node(mth(d[:k]), mth(d[k:]))


def path(m, d):
    if len(d) <= 1:
        return []
    k = k_of(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m, d, b):
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = k_of(n)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def main():
    top = int(sys.argv[1])
    data = [b"leaf-%d" % i for i in range(top)]
    for n in range(1, top + 1):
        d = data[:n]
        out = {
            "n": n,
            "root": mth(d).hex(),
            "paths": {str(m): [h.hex() for h in path(m, d)] for m in sorted({0, n // 2, n - 1})},
            "consistency": {
                str(m): [h.hex() for h in subproof(m, d, True)] for m in sorted({1, max(1, n // 2), max(1, n - 1)})
            },
        }
        print(json.dumps(out))


main()
