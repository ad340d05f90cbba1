#!/usr/bin/env bash
# cli_lm_smoke.sh — `copper lm` end to end on a tiny made-up corpus, as a user runs it:
# prepare (BPE and word, .txt and .txt.xz), train a small model, eval (sliding windows, longer
# context), generate with and without the KV cache, the attention map, the gate picture, the
# loss curves, a Ctrl-C and resume that ends bit-identical, and the exit codes of bad input.
# Usage: cli_lm_smoke.sh path/to/copper
set -euo pipefail
copper=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect CODE PATTERN cmd...: the command exits CODE and its stderr matches PATTERN
expect() {
  local code=$1 pattern=$2 rc=0
  shift 2
  "$@" > "$work/out" 2> "$work/err" || rc=$?
  [ "$rc" -eq "$code" ] || fail "$* exited $rc, want $code: $(cat "$work/err")"
  grep -q -- "$pattern" "$work/err" || fail "$* did not say '$pattern': $(cat "$work/err")"
}
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "$1 is not a PNG"; }

# A WikiText-like corpus: headings, paragraphs, empty lines, from a small vocabulary.
python3 - "$work" <<'EOF'
import random, sys
d = sys.argv[1]
words = ["the", "a", "cat", "dog", "runs", "sat", "on", "mat", "and", "then", "it", "was", "@-@", "1", "."]
for name, lines, seed in (("train", 1500, 1), ("valid", 200, 2), ("test", 200, 3)):
    rng = random.Random(seed)
    out = [" = = Opening = = \n"] if name == "train" else []
    for i in range(lines):
        if i % 25 == 0:
            out.append(" = = Section = = \n")
        elif i % 5 == 0:
            out.append(" \n")
        else:
            out.append(" " + " ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) + " \n")
    open(f"{d}/{name}.txt", "w").write("".join(out))
EOF
xz -k "$work/train.txt"

# ---- prepare
"$copper" lm prepare --train "$work/train.txt.xz" --valid "$work/valid.txt" --test "$work/test.txt" \
  --tokenizer bpe --vocab 300 --out "$work/data" > "$work/manifest.json" 2> /dev/null
for f in tokenizer.model train.bin valid.bin test.bin manifest.json; do [ -s "$work/data/$f" ] || fail "prepare wrote no $f"; done
grep -q '"uint16"' "$work/manifest.json" || fail "prepare did not write uint16 token files"
"$copper" lm prepare --train "$work/train.txt" --valid "$work/valid.txt" --test "$work/test.txt" \
  --tokenizer word --out "$work/words" > /dev/null 2>&1
[ -s "$work/words/tokenizer.vocab" ] || fail "the word tokenizer wrote no vocabulary"

# ---- train (a tiny model through the override flags), then a finished run is left alone
small=(--d-model 32 --layers 2 --heads 4 --context 32 --batch 4)
"$copper" lm train --data "$work/data" --pe cope --preset cpu-small "${small[@]}" --steps 6 --seed 1 \
  --out "$work/run" --quiet > "$work/train.json"
for f in model.safetensors config.json results.json log.jsonl tokenizer.model checkpoints/best/model.safetensors; do
  [ -s "$work/run/$f" ] || fail "lm train wrote no $f"
done
grep -q '"test"' "$work/train.json" || fail "lm train printed: $(cat "$work/train.json")"
before=$(sha256sum "$work/run/model.safetensors" "$work/run/results.json")
"$copper" lm train --data "$work/data" --pe cope --preset cpu-small "${small[@]}" --steps 6 --seed 1 \
  --out "$work/run" --quiet > /dev/null 2>&1
[ "$(sha256sum "$work/run/model.safetensors" "$work/run/results.json")" = "$before" ] ||
  fail "re-running a finished lm run changed its files"

# ---- Ctrl-C and resume: the same weights as an uninterrupted run
long=(--data "$work/data" --pe rope --preset cpu-small "${small[@]}" --steps 40 --seed 2 --quiet)
"$copper" lm train "${long[@]}" --out "$work/straight" > /dev/null 2>&1
rc=0
"$copper" lm train "${long[@]}" --out "$work/killed" > /dev/null 2> "$work/err" &
pid=$!
sleep 2
kill -INT "$pid" 2> /dev/null || true
wait "$pid" || rc=$?
[ "$rc" -eq 0 ] || [ "$rc" -eq 130 ] || fail "lm train under SIGINT exited $rc: $(cat "$work/err")"
"$copper" lm train "${long[@]}" --out "$work/killed" > /dev/null 2>&1
cmp -s "$work/straight/model.safetensors" "$work/killed/model.safetensors" ||
  fail "an interrupted and resumed lm run differs from an uninterrupted one (rc $rc)"

# ---- eval
line=$("$copper" lm eval --model "$work/run" --data "$work/data" --split test --quiet)
for k in ppl word_ppl bits_per_byte tokens context stride; do
  grep -q "\"$k\"" <<< "$line" || fail "lm eval printed no $k: $line"
done
line=$("$copper" lm eval --model "$work/run" --data "$work/data" --split valid --context 64 --stride 16 --quiet)
grep -q '"context":64' <<< "$line" && grep -q '"stride":16' <<< "$line" || fail "longer-context eval: $line"

# ---- generate: greedy with the cache equals greedy without it
a=$("$copper" lm generate --model "$work/run" --prompt " = = Section = = " --tokens 12 --temperature 0 2> /dev/null)
b=$("$copper" lm generate --model "$work/run" --prompt " = = Section = = " --tokens 12 --temperature 0 --no-cache 2> /dev/null)
[ "$a" = "$b" ] || fail "generation with the KV cache differs from without: '$a' vs '$b'"
"$copper" lm generate --model "$work/run" --prompt " the cat" --tokens 8 --top-k 5 --top-p 0.9 --seed 3 > /dev/null 2>&1 ||
  fail "sampling with top-k and top-p failed"

# ---- pictures
"$copper" lm attention-map --model "$work/run" --text "$work/valid.txt" --layer 0 --head 1 --out "$work/map.png" 2> /dev/null
is_png "$work/map.png"
"$copper" lm attention-map --model "$work/run" --text "$work/valid.txt" --layer 1 --head 0 --position-only \
  --out "$work/pos.png" 2> /dev/null
is_png "$work/pos.png"
gates=$("$copper" lm gates --model "$work/run" --text "$work/valid.txt" --layer 0 --out "$work/gates.png" 2> /dev/null)
is_png "$work/gates.png"
grep -q "L0H3" <<< "$gates" || fail "lm gates listed no heads: $gates"
"$copper" plot --log "$work/run/log.jsonl" --log "$work/straight/log.jsonl" --out "$work/curves.png" > /dev/null
is_png "$work/curves.png"

# ---- bad input: a message, an exit code below 128, and no output touched
expect 2 "context" "$copper" lm train --data "$work/data" --pe cope --preset cpu-small --context 0 --out "$work/x"
expect 2 "steps" "$copper" lm train --data "$work/data" --pe cope --preset cpu-small --steps abc --out "$work/x"
expect 2 "valid names" "$copper" lm train --data "$work/data" --pe bogus --preset cpu-small --out "$work/x"
expect 3 "not found" "$copper" lm prepare --train "$work/nope.txt" --valid "$work/valid.txt" \
  --test "$work/test.txt" --out "$work/x"
printf ' good line \n bad \xff byte \n' > "$work/binary.txt"
expect 3 'xff' "$copper" lm prepare --train "$work/binary.txt" --valid "$work/valid.txt" --test "$work/test.txt" \
  --tokenizer word --out "$work/x"
expect 3 "another tokenizer" "$copper" lm eval --model "$work/run" --data "$work/words" --quiet
expect 3 "not a finished" "$copper" lm eval --model "$work/data" --data "$work/data" --quiet
"$copper" lm train --data "$work/data" --pe abs --preset cpu-small "${small[@]}" --steps 1 --out "$work/abs" --quiet > /dev/null 2>&1
long_prompt=$(python3 -c "print(' the cat' * 40)")
expect 2 "context" "$copper" lm generate --model "$work/abs" --prompt "$long_prompt" --tokens 4
expect 2 "context" "$copper" lm eval --model "$work/abs" --data "$work/data" --context 64 --quiet
before=$(sha256sum "$work/run/model.safetensors")
expect 3 "different config\|another config\|--fresh" "$copper" lm train --data "$work/data" --pe cope --preset cpu-small \
  "${small[@]}" --steps 7 --seed 1 --out "$work/run" --quiet
[ "$(sha256sum "$work/run/model.safetensors")" = "$before" ] || fail "a refused lm train changed the model"
head -c 100 "$work/run/model.safetensors" > "$work/trunc.safetensors"
mkdir -p "$work/broken" && cp "$work/run/config.json" "$work/run/tokenizer.model" "$work/broken/" &&
  cp "$work/trunc.safetensors" "$work/broken/model.safetensors"
set +e
"$copper" lm eval --model "$work/broken" --data "$work/data" --quiet > /dev/null 2> "$work/err"; rc=$?
set -e
[ "$rc" -ge 2 ] && [ "$rc" -lt 128 ] || fail "a truncated model file exited $rc: $(cat "$work/err")"
echo "cli lm smoke: all checks passed"
