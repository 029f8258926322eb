#!/usr/bin/env bash
# `make fuzz`: coverage-guided fuzzing (Jazzer.js, libFuzzer) of every network decoder, one target after another
# on one core. Each target runs FUZZ_SECONDS (default 60) with test/fuzz/corpus/<target>/ as its corpus: new
# coverage-increasing inputs are added there, then the directory is minimized (libFuzzer -merge), keeping the
# seed-* and crash-* files as they are. A crash or hang is saved as crash-<sha1> (hangs as crash-timeout-<sha1>),
# replayed from then on by test/fuzz/replay.test.ts in `make test`. One line per run is appended to
# test/fuzz/stats.tsv. FUZZ_TARGETS picks targets (default: all of test/fuzz/targets/ except the harness).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-60}"
scripts/fuzz-setup.sh
node dist/test/fuzz/seeds.js
if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  mapfile -t targets < <(find dist/test/fuzz/targets -name '*.js' ! -name harness.js -printf '%f\n' | sed 's/\.js$//' | sort)
fi
stats=test/fuzz/stats.tsv
[ -f "$stats" ] || printf 'date\ttarget\tseconds\texecs\tcov\tft\tcorpus\tnew_crashes\n' >"$stats"
jazzer() {
  nice -n 10 npx --no-install jazzer "dist/test/fuzz/targets/$1.js" "${@:2}"
}
failed=()
for t in "${targets[@]}"; do
  dir="test/fuzz/corpus/$t"
  mkdir -p "$dir"
  log="$(mktemp)"
  before=$(find "$dir" -name 'crash-*' | wc -l)
  echo "== fuzz $t for ${secs}s"
  start=$(date +%s)
  set +e
  # test/fuzz/dict/<target>.dict: tokens (XML tags, header names) the mutator would hardly guess.
  dict=()
  [ -f "test/fuzz/dict/$t.dict" ] && dict=(-dict="test/fuzz/dict/$t.dict")
  # --sync: the decoders are synchronous. Per-input timeout 2 s: longer is a hang.
  jazzer "$t" "$dir" --sync --timeout=2000 -i dist/src/ -- -max_total_time="$secs" -max_len=4096 \
    -artifact_prefix="$dir/" -print_final_stats=1 "${dict[@]}" 2>&1 | tee "$log" | grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|==|Done)' || true
  set -e
  # Fuzzing time as libFuzzer counts it (without start-up and minimization); wall time if it said nothing.
  elapsed=$(grep -oE '^Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE '[0-9]+ second' | grep -oE '[0-9]+' || true)
  [ -n "$elapsed" ] || elapsed=$(($(date +%s) - start))
  for f in "$dir"/timeout-* "$dir"/slow-unit-* "$dir"/oom-*; do
    [ -e "$f" ] && mv "$f" "$dir/crash-$(basename "$f")"
  done
  after=$(find "$dir" -name 'crash-*' | wc -l)
  execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  [ -n "$execs" ] || execs=$(grep -oE '^Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -1 || echo 0)
  last=$(grep -E '^#[0-9]+[[:space:]].*cov: ' "$log" | tail -1 || true)
  cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo 0)
  ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || echo 0)
  # Minimize: merge the seeds and everything found into a fresh directory, drop what duplicates a seed, and swap
  # it in. Crash inputs stay out of the merge (one not yet fixed would stop it) and are kept as they are.
  min="$(mktemp -d)"
  seeds="$(mktemp -d)"
  crashes="$(mktemp -d)"
  scratch="$(mktemp -d)"
  find "$dir" -maxdepth 1 -type f -name 'seed-*' -exec mv {} "$seeds/" \;
  find "$dir" -maxdepth 1 -type f -name 'crash-*' -exec mv {} "$crashes/" \;
  jazzer "$t" "$min" "$seeds" "$dir" --sync --timeout=2000 -i dist/src/ -- -merge=1 -artifact_prefix="$scratch/" \
    >/dev/null 2>&1 || true
  for f in "$seeds"/*; do rm -f "$min/$(sha1sum "$f" | cut -d' ' -f1)"; done
  find "$dir" -maxdepth 1 -type f -delete
  mv "$seeds"/* "$crashes"/* "$min"/* "$dir/" 2>/dev/null || true
  rm -rf "$min" "$seeds" "$crashes" "$scratch"
  corpus=$(find "$dir" -type f | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$elapsed" "$execs" "$cov" "$ft" "$corpus" \
    $((after - before)) >>"$stats"
  echo "== $t: ${elapsed}s, ${execs} execs, cov ${cov}, ft ${ft}, corpus ${corpus}, new crashes $((after - before))"
  [ "$after" -eq "$before" ] || failed+=("$t")
  rm -f "$log"
done
echo "== totals over every run in $stats (seconds, executions, last cov/ft/corpus, crashes)"
awk -F'\t' 'NR > 1 { s[$2] += $3; e[$2] += $4; c[$2] = $5; f[$2] = $6; k[$2] = $7; x[$2] += $8 }
  END { for (t in s) printf "%-10s %6d s %11d execs %6d/s  cov %4d  ft %5d  corpus %4d  crashes %d\n",
    t, s[t], e[t], e[t] / (s[t] ? s[t] : 1), c[t], f[t], k[t], x[t] }' "$stats" | sort
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: new crashes in ${failed[*]} (see test/fuzz/corpus/<target>/crash-*)" >&2
  exit 1
fi
