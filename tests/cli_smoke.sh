#!/usr/bin/env bash
# cli_smoke.sh — the copper program end to end, as a user runs it, on a tiny budget:
# info, a short training run, eval on a file, gates, grads, --init/--train-data, and the exit
# codes of bad input.
# Usage: cli_smoke.sh path/to/copper
set -euo pipefail
copper=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Outputs are captured, then searched with `grep <<< "$text"`. Neither `cmd | grep -q` nor
# `echo "$text" | grep -q` is safe under pipefail: grep -q stops reading at its first match, and
# a writer with more than one pipe buffer (4 KiB) left to write then dies of SIGPIPE.
info=$("$copper" info)
grep -q "OpenBLAS" <<< "$info" || fail "copper info does not name OpenBLAS"
# A CUDA build names the cuBLAS library its GPU products open, and whether it opens here.
if ! grep -q "cuda          not built" <<< "$info"; then
  grep -qE "^  cublas        libcublas\.so\.[0-9]+ " <<< "$info" || fail "copper info has no cublas line"
fi

"$copper" task data --task flipflop --n 20 --seed 3 --out "$work/ff.txt" > /dev/null
[ "$(wc -l < "$work/ff.txt")" -eq 20 ] || fail "task data wrote the wrong number of lines"

"$copper" task train --task flipflop --pe cope --preset demo --seed 1 --steps 3 --out "$work/run" --quiet > /dev/null
for f in model.safetensors config.json results.json; do [ -s "$work/run/$f" ] || fail "train did not write $f"; done

line=$("$copper" task eval --model "$work/run" --data "$work/ff.txt")
grep -q '"task"' <<< "$line" && grep -q '"error"' <<< "$line" && grep -q '"samples":20' <<< "$line" ||
  fail "eval printed: $line"
gates=$("$copper" task gates --model "$work/run" --data "$work/ff.txt" --sample 2)
grep -q "L0H0" <<< "$gates" || fail "gates printed no heads"
grads=$("$copper" task grads --model "$work/run" --data "$work/ff.txt" --n 4 --out "$work/grads.safetensors")
grep -q '"loss"' <<< "$grads" && grep -q '"examples":4' <<< "$grads" || fail "grads printed: $grads"
grep -qa "blocks.0.attn.pe.pos_emb" <(head -c 4000 "$work/grads.safetensors") || fail "grads wrote no CoPE table gradient"
set +e
"$copper" task grads --model "$work/run" --data "$work/ff.txt" --n 21 --out "$work/g2.safetensors" 2> "$work/err"; rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "holds 20 examples" "$work/err" || fail "grads --n past the file exited $rc: $(cat "$work/err")"

# --steps 0 writes the initial model; --init and --train-data start another run from it on a file
"$copper" task train --task flipflop --pe rope --preset demo --seed 2 --steps 0 --out "$work/init" --quiet > /dev/null
[ -s "$work/init/model.safetensors" ] || fail "--steps 0 wrote no model"
"$copper" task data --task flipflop --pairs 32 --n 8 --seed 4 --out "$work/ff32.txt" 2> /dev/null
"$copper" task train --task flipflop --pe rope --preset demo --seed 2 --steps 2 --init "$work/init/model.safetensors" \
  --train-data "$work/ff32.txt" --out "$work/fromfile" --quiet > /dev/null
grep -q '"train_data"' "$work/fromfile/config.json" || fail "--train-data is not in config.json"

before=$(sha256sum "$work/run/model.safetensors")
set +e
"$copper" task train --task flipflop --pe bogus --seed 1 --out "$work/run" 2> "$work/err"; rc=$?
set -e
[ "$rc" -eq 2 ] || fail "unknown --pe exited $rc, want 2"
grep -q "valid names" "$work/err" || fail "unknown --pe does not list the valid names"
echo "w0i1r0x1" > "$work/bad.txt"
set +e
"$copper" task eval --model "$work/run" --data "$work/bad.txt" 2> "$work/err"; rc=$?
set -e
[ "$rc" -eq 3 ] || fail "malformed data exited $rc, want 3"
grep -q "bad.txt:1" "$work/err" || fail "malformed data error does not name file:line: $(cat "$work/err")"
[ "$(sha256sum "$work/run/model.safetensors")" = "$before" ] || fail "a failed command changed the model file"

# ---- first contact (issue 13, parts 2, 3, 5, 6): config files and overrides, --help, bad
# seeds and --out paths, data of another task, binary data, NaN weights, the demo, the docs ----
root=$(cd "$(dirname "$0")/.." && pwd)
expect_fail() {  # expect_fail CODE PATTERN WHAT -- command...: exit code CODE and PATTERN (fixed string) on stderr
  local want=$1 pattern=$2 what=$3 rc
  shift 4
  set +e
  "$@" > /dev/null 2> "$work/err"; rc=$?
  set -e
  [ "$rc" -eq "$want" ] || fail "$what exited $rc, want $want: $(cat "$work/err")"
  grep -qF -- "$pattern" "$work/err" || fail "$what: no '$pattern' in: $(cat "$work/err")"
}

# --config: a run's config.json is a valid input; explicit flags override it, the rest comes from it
"$copper" task train --config "$work/run/config.json" --steps 2 --seed 5 --lr 0.002 --batch 4 --out "$work/fromcfg" \
  --quiet > /dev/null
cfgjs=$(tr -d ' \n' < "$work/fromcfg/config.json")
for want in '"seed":5' '"lr":0.002' '"batch":4' '"steps":2' '"preset":"demo"' '"pairs":32' '"pe":"cope"'; do
  grep -qF "$want" <<< "$cfgjs" || fail "--config + overrides: config.json lacks $want"
done
expect_fail 2 "--preset" "--config with --preset" -- "$copper" task train --config "$work/run/config.json" --preset paper \
  --out "$work/x"
expect_fail 2 "--heads" "--heads that do not divide the width" -- "$copper" task train --task flipflop --pe rope \
  --heads 3 --out "$work/x"

# --help shows the defaults and every preset with its size, steps and expected time
help=$("$copper" task train --help)
for want in "=cpu-small" "--d-model" "--layers" "--heads" "--context" "--dropout" "--weight-decay" "--warmup" \
  "--lr" "--batch" "--config" "time"; do
  grep -qF -- "$want" <<< "$help" || fail "task train --help does not show $want"
done
for p in cpu-small paper demo; do
  [ "$(echo "$help" | grep -cE "^  $p +(flipflop|selective-copy|counting) .* (s|min|h)$")" -eq 3 ] ||
    fail "task train --help does not list preset $p for the three tasks with a time"
done

# --seed -1 is rejected, not wrapped to 2^64-1; --out naming a file or nothing says so
expect_fail 2 "negative" "--seed -1" -- "$copper" task train --task flipflop --pe abs --seed -1 --steps 1 --out "$work/s"
# --device: an unknown name, and a GPU this machine or build does not have (CI has neither a
# GPU nor, on some machines, the CUDA backend: either way a message and exit 2, never a crash)
expect_fail 2 "tpu" "--device tpu" -- "$copper" task train --task flipflop --pe abs --steps 1 --device tpu --out "$work/d"
expect_fail 2 "cuda" "--device cuda:7 without that GPU" -- "$copper" task train --task flipflop --pe abs --steps 1 \
  --device cuda:7 --out "$work/d"
[[ ! -e "$work/d" ]] || fail "a refused --device still made its --out folder"
expect_fail 2 "negative" "task data --seed -1" -- "$copper" task data --task flipflop --n 2 --seed -1 --out "$work/s.txt"
[ ! -e "$work/s" ] || fail "--seed -1 still trained"
touch "$work/afile"
expect_fail 2 "is an existing file" "--out naming a file" -- "$copper" task train --task flipflop --pe abs --steps 1 \
  --out "$work/afile"
expect_fail 2 "--out is empty" "--out ''" -- "$copper" task train --task flipflop --pe abs --steps 1 --out ""
expect_fail 2 "is a folder" "task data --out naming a folder" -- "$copper" task data --task flipflop --n 2 --out "$work"

# a data file of another task is a task mismatch; a binary file's bad byte is shown escaped
"$copper" task data --task selective-copy --n 3 --seed 1 --out "$work/sc.txt" 2> /dev/null
expect_fail 3 "task mismatch" "selective-copy data on a Flip-Flop model" -- "$copper" task eval --model "$work/run" \
  --data "$work/sc.txt"
grep -qF "selective-copy example" "$work/err" || fail "the mismatch does not name the data's task: $(cat "$work/err")"
printf 'w0\xff1r0\n' > "$work/binary.dat"
expect_fail 3 '\xff' "a binary data file" -- "$copper" task eval --model "$work/run" --data "$work/binary.dat"

# weights holding NaN: eval says so and fails instead of printing an error of 1.0
cp -r "$work/run" "$work/nan"
f="$work/nan/model.safetensors"
hlen=$(od -An -t u8 -N8 "$f" | tr -d ' ')
printf '\x00\x00\xc0\x7f' | dd of="$f" bs=1 seek=$((8 + hlen)) conv=notrunc status=none  # the first f32 value: NaN
expect_fail 3 "NaN" "eval of NaN weights" -- "$copper" task eval --model "$work/nan" --data "$work/ff.txt"

# the demo: selective copy (tiny here), a table, the gates, and a "Try" line whose program path works
demo=$(cd "$work" && "$copper" demo --steps 2 --out demo)
grep -q "selective copy" <<< "$demo" || fail "the demo is not on selective copy"
grep -q "ood_sparse" <<< "$demo" || fail "the demo prints no out-of-distribution table"
grep -q "What CoPE counts" <<< "$demo" || fail "the demo shows no CoPE gates"
try=$(echo "$demo" | grep "^Try: " | sed -e 's/^Try: //' -e 's/   (.*$//')
[ -n "$try" ] || fail "the demo prints no Try line"
(cd "$work" && eval "$try" > /dev/null) || fail "the demo's Try line does not run: $try"
plan=$(make -s -n -C "$root" demo BUILD=build-smoke-demo)  # what make demo would run, without running it
grep -qF -- "--target copper" <<< "$plan" || fail "make demo builds more than copper"

# the docs: what a run writes (every results.json field), exit codes, threads; docs/03's build advice
outputs="$root/docs/outputs.md"
[ -f "$outputs" ] || fail "docs/outputs.md is missing"
grep -q "docs/outputs.md" "$root/README.md" || fail "README does not link docs/outputs.md"
for key in $(tr -d ' \n' < "$work/run/results.json" | grep -oE '"[a-z_]+":' | tr -d '":' | sort -u); do
  grep -qF "\`$key\`" "$outputs" || grep -qF ".$key\`" "$outputs" || fail "docs/outputs.md does not explain results.json's $key"
done
for want in model.safetensors config.json log.jsonl checkpoints/ "| 2 |" "| 3 |" "| 4 |" "| 130 |" "thread count" \
  fraction percent; do
  grep -qF -- "$want" "$outputs" || fail "docs/outputs.md does not cover $want"
done
for want in "--target test_ops" "exp_fast" "kFast" "uns" "Fused ops"; do
  grep -qF -- "$want" "$root/docs/03-adding-an-op.md" || fail "docs/03 does not cover $want"
done
echo "cli smoke: all checks passed"

# ---- the trainer (issue 13 §1): SIGINT/SIGTERM write a checkpoint at the current step and
# name the resume command (exit 130/143); a finished run is left as it is; --fresh over it,
# interrupted, leaves its outputs byte-identical ----
wait_for_log() {  # wait_for_log FILE: until the run has logged a step (it is in its loop), at most 60 s
  for _ in $(seq 1 600); do [ -s "$1" ] && return 0; sleep 0.1; done
  fail "no log line in $1 after 60 s"
}
stop_run() {  # stop_run SIGNAL PID WANT_RC
  kill "-$1" "$2"
  set +e
  wait "$2"; rc=$?
  set -e
  [ "$rc" -eq "$3" ] || fail "SIG$1 exited $rc, want $3: $(cat "$work/sig.err")"
}
trap 'kill $(jobs -p) 2> /dev/null || true; rm -rf "$work"' EXIT  # a failed check leaves no run behind
sig="$work/sig"
"$copper" task train --task flipflop --pe rope --preset demo --seed 3 --steps 100000 --out "$sig" > /dev/null \
  2> "$work/sig.err" &
wait_for_log "$sig/log.jsonl"
sleep 1
stop_run INT $! 130
step=$(sed -n 's/.*interrupted by SIGINT at step \([0-9]*\).*/\1/p' "$work/sig.err")
[ -n "$step" ] || fail "SIGINT: no 'interrupted ... at step' message: $(cat "$work/sig.err")"
[ "$(cat "$sig/checkpoints/latest")" = "$(printf 'step-%08d' "$step")" ] || fail "SIGINT: no checkpoint at step $step"
resume=$(sed -n 's/^resume with: //p' "$work/sig.err")
grep -q -- "task train .*--steps 100000 .*--out $sig" <<< "$resume" || fail "SIGINT: resume command is '$resume'"
# The printed command resumes from that step (stopped again, by SIGTERM).
eval "exec $resume" > /dev/null 2> "$work/sig.err" &  # exec: $! is the program itself
for _ in $(seq 1 600); do [ "$(wc -l < "$sig/log.jsonl")" -gt "$(( step / 25 ))" ] && break; sleep 0.1; done
stop_run TERM $! 143
grep -q "resuming from .*step-0*$step (step $step/100000)" "$work/sig.err" || fail "resume: $(cat "$work/sig.err")"
grep -q "interrupted by SIGTERM" "$work/sig.err" || fail "SIGTERM: $(cat "$work/sig.err")"

# A finished run: the identical command says so and changes no file.
done_dir="$work/done"
"$copper" task train --task flipflop --pe rope --preset demo --seed 1 --steps 3 --out "$done_dir" --quiet > /dev/null
files() { (cd "$done_dir" && find . -type f -exec sha256sum {} + | sort); }
before=$(files)
"$copper" task train --task flipflop --pe rope --preset demo --seed 1 --steps 3 --out "$done_dir" > "$work/out" 2> "$work/err"
grep -q "complete" "$work/err" && grep -qF "$done_dir" "$work/err" || fail "a finished run: $(cat "$work/err")"
grep -q '"error"' "$work/out" || fail "a finished run prints no results: $(cat "$work/out")"
[ "$(files)" = "$before" ] || fail "re-running a finished run changed its files"
# --fresh with another step count over it, interrupted: the old outputs stay byte-identical.
"$copper" task train --task flipflop --pe rope --preset demo --seed 1 --steps 100000 --out "$done_dir" --fresh \
  > /dev/null 2> "$work/sig.err" &
wait_for_log "$done_dir.next/log.jsonl"
stop_run INT $! 130
[ "$(files)" = "$before" ] || fail "an interrupted --fresh run changed the finished run's files"
grep -q "^resume with: " "$work/sig.err" && ! grep -q "^resume with: .*--fresh" "$work/sig.err" ||
  fail "an interrupted --fresh run should resume without --fresh: $(cat "$work/sig.err")"
echo "cli smoke (trainer): all checks passed"

# ---- copper plot (viz/): loss curves from hand-written logs; bad input exits 3, writes nothing ----
mkdir -p "$work/plot/run-a" "$work/plot/run-b"
printf '%s\n' '{"step":0,"loss":3.1,"lr":0.001,"tokens":0}' '{"step":25,"loss":2.4,"lr":0.001,"tokens":3200}' \
  '{"step":50,"loss":1.9,"lr":0.001,"tokens":6400}' '{"step":50,"eval":{"loss":2.0,"error":0.4}}' \
  > "$work/plot/run-a/log.jsonl"
printf '%s\n' '{"step":0,"loss":3.0}' '{"step":25,"loss":2.6}' '{"step":50,"loss":2.2}' > "$work/plot/run-b/log.jsonl"
plotted=$("$copper" plot --log "$work/plot/run-a/log.jsonl" --log "$work/plot/run-b/log.jsonl" \
  --out "$work/plot/curves.png" --title "smoke")
grep -q '"runs":2' <<< "$plotted" || fail "copper plot printed: $plotted"
[ "$(head -c 8 "$work/plot/curves.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] ||
  fail "copper plot did not write a PNG"
set +e
"$copper" plot --log "$work/plot/missing/log.jsonl" --out "$work/plot/none.png" 2> "$work/err"; rc=$?
set -e
[ "$rc" -eq 3 ] || fail "copper plot of a missing log exited $rc, want 3: $(cat "$work/err")"
[ ! -e "$work/plot/none.png" ] || fail "copper plot wrote a picture from a missing log"
printf '%s\n' '{"step":0,"loss":3.0}' '{"step":25,"loss":' > "$work/plot/bad.jsonl"
before=$(sha256sum < "$work/plot/curves.png")
set +e
"$copper" plot --log "$work/plot/bad.jsonl" --out "$work/plot/curves.png" 2> "$work/err"; rc=$?
set -e
[ "$rc" -eq 3 ] && grep -q "bad.jsonl:2" "$work/err" || fail "a malformed log exited $rc: $(cat "$work/err")"
[ "$(sha256sum < "$work/plot/curves.png")" = "$before" ] || fail "a failed copper plot changed --out"
echo "cli smoke (plot): all checks passed"

# copper bench train on a model of a few thousand weights: one JSON line per encoding, with the
# FLOP rate beside the BLAS reference (mfu) and the machine's FMA ceiling (peak_fraction).
printf '%s\n' '{"vocab": 64, "d": 32, "h": 2, "layers": 1, "ctx": 16, "batch": 2, "npos": 8}' > "$work/tiny.json"
bench=$("$copper" bench train --config "$work/tiny.json" --pe abs,cope --steps 3 --threads 1)
[ "$(grep -c '"bench":"train"' <<< "$bench")" -eq 2 ] || fail "bench train printed: $bench"
for key in tokens_per_s mfu sgemm_gflops fma_peak_gflops peak_fraction; do
  grep -q "\"$key\":[0-9]" <<< "$bench" || fail "bench train has no number for $key: $bench"
done
echo "cli smoke (bench): all checks passed"
