#!/usr/bin/env bash
# Compare what two nmitrace binaries write, byte for byte: for a refactor
# that must not change behaviour.
#
#   scripts/compare-outputs.sh OLD_BIN NEW_BIN [OUT_DIR]
#
# Every sample trace and every trace under ../shared/traces (gcc-large
# aside: it is the benchmark) is analysed by both binaries: JSON and text
# reports, and `events` JSON lines; for the sample traces and the first
# capture of each real-NMI run also the HTML report, the charts (SVG, PNG)
# and the Parquet tables. Prints each difference; exits 1 if there is any.
set -uo pipefail
old=$1
new=$2
out=${3:-$(mktemp -d)}
cd "$(dirname "$0")/.."
mkdir -p "$out/old" "$out/new"
traces=()
while IFS= read -r f; do traces+=("$f"); done < <(
  { find sample-traces -type f \( -name '*.txt' -o -name '*.gz' \) ! -path '*/background/*';
    [ -d ../shared/traces ] && find ../shared/traces -type f ! -path '*gcc-large*'; } | sort)
full() {
  case "$1" in
    sample-traces/*|*/real-nmi/*/capture-000/*|*/real-nmi/*/capture-005/*) return 0;;
    *) return 1;;
  esac
}
args_for() {
  # the scenarios' own model arguments, from their expected.json
  local d; d=$(dirname "$1")
  if [ -f "$d/expected.json" ]; then
    python3 -c 'import json,sys; a=json.load(open(sys.argv[1])).get("args",[]); print(" ".join(a if isinstance(a,list) else a.split()))' "$d/expected.json"
  fi
}
n=0
for t in "${traces[@]}"; do
  key=$(echo "$t" | sed 's#[/.]#_#g')
  read -r -a extra <<< "$(args_for "$t")"
  for side in old new; do
    bin=$old; [ "$side" = new ] && bin=$new
    d="$out/$side/$key"
    mkdir -p "$d"
    "$bin" analyze "$t" "${extra[@]}" --format json > "$d/report.json" 2> "$d/stderr.txt"; echo "exit $?" >> "$d/stderr.txt"
    "$bin" analyze "$t" "${extra[@]}" > "$d/report.txt" 2>> "$d/stderr.txt"
    "$bin" events "$t" > "$d/events.jsonl" 2>> "$d/stderr.txt"
    if full "$t"; then
      "$bin" analyze "$t" "${extra[@]}" --report "$d/report.html" --plot "$d/plots" --tables "$d/tables" > /dev/null 2>> "$d/stderr.txt"
    fi
    sed -i "s#$out/$side#OUT#g" "$d/stderr.txt"
  done
  n=$((n + 1))
done
if diff -r -q "$out/old" "$out/new" > "$out/diff.txt"; then
  echo "compare-outputs: $n traces, every output identical ($out)"
  exit 0
fi
echo "compare-outputs: $n traces; differences ($out/diff.txt):"
cat "$out/diff.txt"
exit 1
