#!/usr/bin/env bash
# Runs every cargo-fuzz target for MINUTES minutes each (default 10), one after the other,
# niced, on a copy of its seed corpus (the committed seeds stay small), and prints a table of
# executions and findings. Needs the nightly toolchain and cargo-fuzz:
#   tests/fuzz/run-all.sh 10            # every target
#   tests/fuzz/run-all.sh 2 pb_adv cert # some targets
# Crashes land in tests/fuzz/artifacts/NAME/; reproduce with
#   (cd tests/fuzz && cargo +nightly fuzz run --fuzz-dir . NAME artifacts/NAME/crash-…)
set -uo pipefail
cd "$(dirname "$0")"
minutes="${1:-10}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir .)
fi
seconds=$((minutes * 60))
# meshprov forbids unsafe code, so AddressSanitizer finds little that a panic would not, at half
# the speed: no sanitizer unless FUZZ_SANITIZER says otherwise (address, memory, ...).
# cargo-fuzz's default build: optimised, with debug assertions and overflow checks.
sanitizer="${FUZZ_SANITIZER:-none}"
mkdir -p logs work-corpus
cargo +nightly fuzz build --fuzz-dir . -s "$sanitizer" >/dev/null || exit 1
printf '| target | seconds | executions | exec/s | coverage | corpus | findings |\n|---|---|---|---|---|---|---|\n' > logs/summary.md
status=0
for t in "${targets[@]}"; do
    mkdir -p "work-corpus/$t"
    cp -n "corpus/$t"/* "work-corpus/$t/" 2>/dev/null || true
    log="logs/$t.log"
    nice -n 10 cargo +nightly fuzz run --fuzz-dir . -s "$sanitizer" "$t" "work-corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    corp=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    crashes=$(ls "artifacts/$t" 2>/dev/null | wc -l)
    findings="none"
    if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
        findings="exit $rc, $crashes artifact(s): see $log"
        status=1
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "${corp:-?}" "$findings" | tee -a logs/summary.md
done
cat logs/summary.md
exit "$status"
