#!/usr/bin/env bash
# bench_ab.sh — before/after a change: two or more copper binaries, `copper bench train` on the
# same model, alternating binary by binary inside every round, so that a drift of the machine's
# speed (a shared VM moves by 10 % within minutes) falls on all of them alike.
#
#   cp build/bin/copper /tmp/copper-before    # ... change, rebuild ...
#   scripts/bench_ab.sh /tmp/copper-before build/bin/copper
#   CONFIG=../shared/bench/lm-long.json PES=rope,cope ROUNDS=4 STEPS=6 scripts/bench_ab.sh A B C
#   DTYPE=bf16 scripts/bench_ab.sh A B                 mixed precision (`bench train --dtype`)
#
# Output: the JSON lines in $OUT (default runs/bench_ab/lines.jsonl), each with the binary it
# came from, then per encoding and binary: the median tokens/s over the rounds, the slowest and
# fastest round, and the median's ratio to the first binary's.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: scripts/bench_ab.sh BINARY_A BINARY_B [BINARY ...]" >&2; exit 2; }
config=${CONFIG:-../shared/bench/lm-small.json}
pes=${PES:-abs}
steps=${STEPS:-8}
rounds=${ROUNDS:-3}
threads=${THREADS:-$(nproc)}
dtype=${DTYPE:-f32}
out=${OUT:-runs/bench_ab/lines.jsonl}
for b in "$@"; do
  [ -x "$b" ] || { echo "[bench_ab] no program $b. HINT: the binaries to compare, e.g. build/bin/copper" >&2; exit 2; }
done
[ -f "$config" ] || { echo "[bench_ab] no config $config. HINT: CONFIG=../shared/bench/lm-small.json" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
: > "$out"
echo "bench_ab: $config, pe $pes, $dtype, threads $threads, $steps steps, $rounds round(s); lines in $out" >&2
for ((r = 1; r <= rounds; r++)); do
  for b in "$@"; do
    echo "  round $r  $b" >&2
    "$b" bench train --config "$config" --pe "$pes" --steps "$steps" --threads "$threads" --dtype "$dtype" |
      while IFS= read -r line; do printf '{"binary":"%s",%s\n' "$b" "${line#\{}"; done >> "$out"
  done
done

python3 - "$out" "$@" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
binaries = sys.argv[2:]
print(f"{'pe':6} {'binary':40} {'median tok/s':>12} {'min':>8} {'max':>8} {'/ first':>8}")
for pe in dict.fromkeys(r["pe"] for r in rows):
    first = None
    for b in binaries:
        ts = [r["tokens_per_s"] for r in rows if r["pe"] == pe and r["binary"] == b]
        med = statistics.median(ts)
        first = first or med
        print(f"{pe:6} {b[-40:]:40} {med:12.1f} {min(ts):8.1f} {max(ts):8.1f} {med / first:8.3f}")
PY
