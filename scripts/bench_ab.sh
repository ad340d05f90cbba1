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
# fastest round, the median's ratio to the first binary's, and the same for the median mfu.
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
# mfu divides each run's rate by an sgemm measured in the same process right after its steps,
# so a host that slows down for minutes moves it less than tokens/s; a second view of the same
# comparison (a core lost in one and not the other can still push it past 1).
print(f"{'pe':6} {'binary':40} {'median tok/s':>12} {'min':>8} {'max':>8} {'/ first':>8} {'median mfu':>10} {'/ first':>8}")
for pe in dict.fromkeys(r["pe"] for r in rows):
    first = first_mfu = None
    for b in binaries:
        mine = [r for r in rows if r["pe"] == pe and r["binary"] == b]
        ts = [r["tokens_per_s"] for r in mine]
        med, mfu = statistics.median(ts), statistics.median(r["mfu"] for r in mine)
        first, first_mfu = first or med, first_mfu or mfu
        print(f"{pe:6} {b[-40:]:40} {med:12.1f} {min(ts):8.1f} {max(ts):8.1f} {med / first:8.3f} {mfu:10.3f} "
              f"{mfu / first_mfu:8.3f}")
PY
