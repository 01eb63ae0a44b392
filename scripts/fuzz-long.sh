#!/usr/bin/env bash
# The long fuzzing run: every target in fuzz/ under libFuzzer (cargo bolero),
# one job, for SECONDS each (default 180), seeded from fuzz/corpus/. Prints
# each target's exec count, run time and crashes, the table in the README's
# "Fuzzing" section. A crash input lands in fuzz/crashes/<target>/ and makes
# the script exit non-zero after the other targets ran.
#   scripts/fuzz-long.sh [SECONDS] [TARGET...]
# The instrumented build goes to $CARGO_TARGET_DIR/fuzz (or target/fuzz), so
# it never replaces the tests' debug build. No sanitizer (-s NONE): stable
# Rust, and the code under test is safe Rust; overflow checks are on
# (profile.fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-180}
shift || true
all=(beacon_parser anonymised_event plausible_event signed_batch stats_query webhook_signatures webhook_payloads user_agent referrer_source cross_domain_ids)
[[ $# -gt 0 ]] && targets=("$@") || targets=("${all[@]}")

bolero_version=0.13.5
if ! cargo bolero --version 2>/dev/null | grep -q "$bolero_version"; then
  echo "==> installing cargo-bolero $bolero_version (crates.io)" >&2
  cargo install cargo-bolero --locked --version "$bolero_version"
fi

work=${CARGO_TARGET_DIR:-$PWD/target}/fuzz
export CARGO_INCREMENTAL=0
corpus_of() {
  case $1 in
    beacon_parser | anonymised_event) echo beacon ;;
    signed_batch) echo batch ;;
    *) echo "$1" ;;
  esac
}

failed=0
rows=()
for t in "${targets[@]}"; do
  seeds=fuzz/corpus/$(corpus_of "$t")
  [[ -d $seeds ]] || { echo "unknown target $t (no $seeds)" >&2; exit 2; }
  # libFuzzer adds what it finds to the first corpus folder: a scratch copy,
  # so fuzz/corpus/ stays the small committed seed set.
  mkdir -p "$work/corpus/$t" "fuzz/crashes/$t"
  log=$work/$t.log
  echo "==> $t: ${seconds}s under libFuzzer" >&2
  status=0
  cargo bolero test -p engagetrack-fuzz --engine libfuzzer --sanitizer NONE --profile fuzz --target-dir "$work" \
    --corpus-dir "$work/corpus/$t" --crashes-dir "fuzz/crashes/$t" -T "${seconds}s" -E "$seeds" --engine-args=-print_final_stats=1 \
    "targets::$t::target" >"$log" 2>&1 || status=$?
  execs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | tail -n 1 | awk '{print $2}' || true)
  took=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 | awk '{print $5}' || true)
  crashes=$(find "fuzz/crashes/$t" -type f ! -name '.*' | wc -l)
  if [[ $status -ne 0 || $crashes -ne 0 ]]; then
    failed=1
    tail -n 40 "$log" >&2
  fi
  rows+=("| \`$t\` | ${execs:-?} | ${took:-?} s | $crashes |")
  echo "    ${rows[-1]}" >&2
done
echo "| target | execs | time | crashes |"
echo "|---|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
exit $failed
