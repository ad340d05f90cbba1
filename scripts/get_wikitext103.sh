#!/usr/bin/env bash
# get_wikitext103.sh — download WikiText-103 (v1, tokenized), check it, and lay it out as
# copper's commands expect: OUT/{train,valid,test}.txt. Needs a network connection; the tests
# never run it (the project's machines have only WikiText-2, in ../shared/data).
#
#   scripts/get_wikitext103.sh [OUT]          (default OUT: data/wikitext-103)
#   build/bin/copper lm prepare --train OUT/train.txt --valid OUT/valid.txt --test OUT/test.txt \
#       --tokenizer bpe --vocab 32768 --out data/wt103-bpe
#
# The checks: the SHA-1 sums that the original release's users publish for the archive and
# for each unpacked file (Apache MXNet's Gluon WikiText103 dataset lists them); no SHA-256 of
# the original files is published, so the script prints the SHA-256 of each file it lays out
# for you to record (`copper lm prepare` also stores them in manifest.json).
set -euo pipefail
out=${1:-data/wikitext-103}
urls=(https://wikitext.smerity.com/wikitext-103-v1.zip
      https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip)
zip_sha1=0aec09a7537b58d4bb65362fee27650eeaba625a
declare -A file_sha1=([wiki.train.tokens]=b7497e2dfe77e72cfef5e3dbc61b7b53712ac211
                      [wiki.valid.tokens]=c326ac59dc587676d58c422eb8a03e119582f92b
                      [wiki.test.tokens]=8a5befc548865cec54ed4273cf87dbbad60d1e47)
declare -A split_of=([wiki.train.tokens]=train [wiki.valid.tokens]=valid [wiki.test.tokens]=test)

for tool in curl unzip sha1sum sha256sum; do
  command -v "$tool" > /dev/null || { echo "get_wikitext103: needs $tool (apt-get install curl unzip)" >&2; exit 1; }
done
mkdir -p "$out"
tmp=$(mktemp -d "$out/.download.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

zip="$tmp/wikitext-103-v1.zip"
got=""
for u in "${urls[@]}"; do
  echo "get_wikitext103: downloading $u (about 180 MB)"
  if curl -fL --retry 3 -o "$zip" "$u"; then got=$u; break; fi
done
[ -n "$got" ] || { echo "get_wikitext103: no mirror answered. HINT: download wikitext-103-v1.zip by hand into $tmp" >&2; exit 1; }
echo "$zip_sha1  $zip" | sha1sum -c --quiet - || { echo "get_wikitext103: the archive's SHA-1 is not the published one" >&2; exit 1; }
unzip -q "$zip" -d "$tmp"
for f in "${!file_sha1[@]}"; do
  echo "${file_sha1[$f]}  $tmp/wikitext-103/$f" | sha1sum -c --quiet - ||
    { echo "get_wikitext103: $f does not have the published SHA-1" >&2; exit 1; }
done
for f in "${!split_of[@]}"; do
  mv "$tmp/wikitext-103/$f" "$out/${split_of[$f]}.txt"
done
echo "get_wikitext103: checked and written to $out (SHA-256 for your records):"
(cd "$out" && sha256sum train.txt valid.txt test.txt)
