#!/usr/bin/env bash
# cli_smoke.sh — the copper program end to end, as a user runs it, on a tiny budget:
# info, a short training run, eval on a file, gates, grads, --init/--train-data, and the exit
# codes of bad input.
# Usage: cli_smoke.sh path/to/copper
set -euo pipefail
copper=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# (outputs are captured before grep reads them: `cmd | grep -q` under pipefail fails when
# grep stops reading early and the command gets SIGPIPE)
info=$("$copper" info)
echo "$info" | grep -q "OpenBLAS" || fail "copper info does not name OpenBLAS"

"$copper" task data --task flipflop --n 20 --seed 3 --out "$work/ff.txt" > /dev/null
[ "$(wc -l < "$work/ff.txt")" -eq 20 ] || fail "task data wrote the wrong number of lines"

"$copper" task train --task flipflop --pe cope --preset demo --seed 1 --steps 3 --out "$work/run" --quiet > /dev/null
for f in model.safetensors config.json results.json; do [ -s "$work/run/$f" ] || fail "train did not write $f"; done

line=$("$copper" task eval --model "$work/run" --data "$work/ff.txt")
echo "$line" | grep -q '"task"' && echo "$line" | grep -q '"error"' && echo "$line" | grep -q '"samples":20' ||
  fail "eval printed: $line"
gates=$("$copper" task gates --model "$work/run" --data "$work/ff.txt" --sample 2)
echo "$gates" | grep -q "L0H0" || fail "gates printed no heads"
grads=$("$copper" task grads --model "$work/run" --data "$work/ff.txt" --n 4 --out "$work/grads.safetensors")
echo "$grads" | grep -q '"loss"' && echo "$grads" | grep -q '"examples":4' || fail "grads printed: $grads"
head -c 4000 "$work/grads.safetensors" | grep -q "blocks.0.attn.pe.pos_emb" || fail "grads wrote no CoPE table gradient"
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
echo "cli smoke: all checks passed"
