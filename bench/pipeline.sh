#!/usr/bin/env bash
# Benchmark: parse + validate project.yaml, warden vs the reference validator
# (opensafely==2.0.1's vendored pipeline library), measured in the same run.
#
#   bench/pipeline.sh
#
# Workloads: (a) the whole corpus (corpus/project-yaml, one batch),
# (b) a synthetic 1,000-action and (c) a 10,000-action pipeline (bench/synth.py).
# Both sides time in-process: median of K runs of load_pipeline / check on text
# already in memory. Prints medians, ratios (reference / warden), and warden's peak RSS
# checking the 10,000-action file (/usr/bin/time -v).
#
# Knobs (environment): K (warden runs, default 21), K_REF (reference runs, default 5),
# K_REF_BIG (reference runs on 10,000 actions, default 3), CORPUS (corpus folder),
# CARGO_TARGET_DIR (default ~/.cache/warden/target), KEEP=1 keeps the work folder.
#
# Whole-process mode:
#
#   bench/pipeline.sh --process
#
# `warden check FILE` (the release binary) and the reference validator as its own
# Python process (interpreter start, imports, read, load_pipeline), alternating, on
# synthetic 1,000 / 10,000 / 100,000-action files and on the corpus with one process
# per file (bench/process.py). Prints median wall time, median peak RSS (getrusage of
# each child) and the ratio for each. Knobs: K (warden runs, default 11), K_REF
# (reference runs, default 3), K_REF_HUGE (reference runs on 100,000 actions,
# default 1; 0 skips the reference there), K_CORPUS (rounds over the corpus, default 3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ "${1:-}" == "--process" ]]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warden/target}"
    PY="$("$ROOT/scripts/oracle/setup.sh")"
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/warden-bench.XXXXXX")"
    if [[ "${KEEP:-0}" != 1 ]]; then
        trap 'rm -rf "$WORK"' EXIT
    fi
    for n in 1000 10000 100000; do
        python3 "$ROOT/bench/synth.py" --actions "$n" --seed 1 >"$WORK/synth-$n.yaml"
    done
    echo "building warden (release)..." >&2
    cargo build --quiet --release -p warden-cli --manifest-path "$ROOT/Cargo.toml"
    BIN="$CARGO_TARGET_DIR/release/warden"
    K="${K:-11}"
    K_REF="${K_REF:-3}"
    K_REF_HUGE="${K_REF_HUGE:-1}"
    K_CORPUS="${K_CORPUS:-3}"
    P=(python3 "$ROOT/bench/process.py" --warden "$BIN" --python "$PY")
    echo "whole process: corpus (K_CORPUS=$K_CORPUS rounds), 1,000 and 10,000 actions (K=$K, K_REF=$K_REF)..." >&2
    {
        "${P[@]}" --k "$K_CORPUS" --k-ref "$K_CORPUS" --corpus "${CORPUS:-$ROOT/corpus/project-yaml}"
        "${P[@]}" --k "$K" --k-ref "$K_REF" "1,000 actions=$WORK/synth-1000.yaml" "10,000 actions=$WORK/synth-10000.yaml"
        if [[ "$K_REF_HUGE" -gt 0 ]]; then
            echo "100,000 actions (K_REF_HUGE=$K_REF_HUGE; the reference takes minutes)..." >&2
            "${P[@]}" --k "$K" --k-ref "$K_REF_HUGE" "100,000 actions=$WORK/synth-100000.yaml"
        fi
    } >"$WORK/process.jsonl"
    if [[ "$K_REF_HUGE" -eq 0 ]]; then
        # warden alone on 100,000 actions, for the scaling.
        python3 - "$BIN" "$WORK/synth-100000.yaml" "$K" >>"$WORK/process.jsonl" <<'PY'
import json, os, statistics, subprocess, sys, time
binary, path, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = []
for _ in range(k):
    t = time.perf_counter()
    p = subprocess.Popen([binary, "check", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    runs.append((time.perf_counter() - t, usage.ru_maxrss / 1024))
print(json.dumps({"workload": "100,000 actions", "bytes": os.path.getsize(path), "ratio": None,
    "warden": {"k": k, "wall_median_s": statistics.median(w for w, _ in runs),
               "rss_median_mb": statistics.median(r for _, r in runs), "exit": os.waitstatus_to_exitcode(status)},
    "reference": None}))
PY
    fi
    python3 - "$WORK/process.jsonl" <<'PY'
import json, sys

def fmt(s):
    return f"{s:.2f} s" if s >= 1 else f"{s * 1e3:.1f} ms"

print()
print(f"{'workload (whole process)':42} {'size':>8} {'reference':>10} {'warden':>9} {'ratio':>7}  {'RSS ref':>8} {'RSS warden':>10}")
for line in open(sys.argv[1]):
    r = json.loads(line)
    w, ref = r["warden"], r["reference"]
    size = f"{r['bytes'] / 1e6:.1f} MB" if r["bytes"] else ""
    print(f"{r['workload']:42} {size:>8} {fmt(ref['wall_median_s']) if ref else '-':>10} "
          f"{fmt(w['wall_median_s']):>9} {(str(round(r['ratio'])) + '×') if r['ratio'] else '-':>7}  "
          f"{(format(ref['rss_median_mb'], '.1f') + ' MB') if ref else '-':>8} {w['rss_median_mb']:>7.1f} MB"
          f"   (K={w['k']}/{ref['k'] if ref else 0}, exit {w['exit']}/{ref['exit'] if ref else '-'})")
print("(medians of wall time and of peak RSS; warden and the reference alternate; corpus: the total of one")
print(" round, one process per file, and the largest RSS of any file)")
PY
    exit 0
fi
K="${K:-21}"
K_REF="${K_REF:-5}"
K_REF_BIG="${K_REF_BIG:-3}"
CORPUS="${CORPUS:-$ROOT/corpus/project-yaml}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warden/target}"

if [[ ! -x /usr/bin/time ]]; then
    echo "installing GNU time (for peak RSS)..." >&2
    (apt-get update -qq && apt-get install -y -qq time) >&2
fi

PY="$("$ROOT/scripts/oracle/setup.sh")"
ORACLE="$ROOT/scripts/oracle/oracle.py"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/warden-bench.XXXXXX")"
if [[ "${KEEP:-0}" != 1 ]]; then
    trap 'rm -rf "$WORK"' EXIT
fi

shopt -s nullglob
CORPUS_FILES=("$CORPUS"/*.yaml)
if [[ ${#CORPUS_FILES[@]} -eq 0 ]]; then
    echo "no corpus files in $CORPUS" >&2
    exit 1
fi

python3 "$ROOT/bench/synth.py" --actions 1000 --seed 1 >"$WORK/synth-1000.yaml"
python3 "$ROOT/bench/synth.py" --actions 10000 --seed 1 >"$WORK/synth-10000.yaml"

echo "building warden (release)..." >&2
cargo build --quiet --release -p warden-pipeline --example bench_check --manifest-path "$ROOT/Cargo.toml"
BIN="$CARGO_TARGET_DIR/release/examples/bench_check"

echo "warden: corpus, 1,000, 10,000 actions (K=$K)..." >&2
"$BIN" --runs "$K" "${CORPUS_FILES[@]}" >"$WORK/warden-corpus.json"
"$BIN" --runs "$K" "$WORK/synth-1000.yaml" >"$WORK/warden-1000.json"
"$BIN" --runs "$K" "$WORK/synth-10000.yaml" >"$WORK/warden-10000.json"

echo "reference: corpus, 1,000 actions (K=$K_REF), 10,000 actions (K=$K_REF_BIG; slow)..." >&2
"$PY" "$ORACLE" --bench "$K_REF" "${CORPUS_FILES[@]}" >"$WORK/ref-corpus.json"
"$PY" "$ORACLE" --bench "$K_REF" "$WORK/synth-1000.yaml" >"$WORK/ref-1000.json"
/usr/bin/time -v -o "$WORK/ref-rss.txt" \
    "$PY" "$ORACLE" --bench "$K_REF_BIG" "$WORK/synth-10000.yaml" >"$WORK/ref-10000.json"

echo "warden peak RSS on 10,000 actions..." >&2
/usr/bin/time -v -o "$WORK/warden-rss.txt" "$BIN" --once "$WORK/synth-10000.yaml" >"$WORK/warden-once.txt"

python3 - "$WORK" "${#CORPUS_FILES[@]}" <<'PY'
import json, re, sys
work, n_corpus = sys.argv[1], int(sys.argv[2])

def load(name):
    with open(f"{work}/{name}") as f:
        return json.load(f)

def rss_mb(name):
    text = open(f"{work}/{name}").read()
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024

def fmt(s):
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"

rows = [
    (f"corpus ({n_corpus} files, one batch)", "corpus", 30),
    ("synthetic, 1,000 actions", "1000", None),
    ("synthetic, 10,000 actions", "10000", 100),
]
print()
print(f"{'workload':36} {'reference':>12} {'warden':>12} {'ref/warden':>11}  {'goal':>6}  valid (ref/warden)")
ok = True
for label, key, goal in rows:
    ref, war = load(f"ref-{key}.json"), load(f"warden-{key}.json")
    r, w = ref["batch_median_s"], war["batch_median_s"]
    ratio = r / w if w > 0 else float("inf")
    goal_s = f"≥{goal}×" if goal else ""
    met = "" if not goal else ("  ok" if ratio >= goal else "  MISSED")
    ok &= not goal or ratio >= goal
    print(f"{label:36} {fmt(r):>12} {fmt(w):>12} {ratio:>10.0f}×  {goal_s:>6}  "
          f"{ref['valid']}/{war['valid']}{met}")
print(f"(medians: warden of K={load('warden-corpus.json')['k']} runs, reference of "
      f"K={load('ref-corpus.json')['k']} (corpus, 1,000) and K={load('ref-10000.json')['k']} (10,000) runs; in-process)")
w_rss, r_rss = rss_mb("warden-rss.txt"), rss_mb("ref-rss.txt")
print(f"peak RSS, 10,000 actions: warden {w_rss:.1f} MB (goal < 50 MB{': ok' if w_rss < 50 else ': MISSED'}); "
      f"reference {r_rss:.1f} MB")
print(open(f"{work}/warden-once.txt").read().strip())
print("(valid counts may differ by warden's deliberate divergences: integer `needs` items,\n"
      " which the reference crashes on (opensafely__ckd-healthcare-use), and cycles in `needs`)")
PY
