#!/usr/bin/env bash
# Fuzzes shrink with cargo-fuzz (libFuzzer): builds the seed corpora from the conformance suite
# and the examples, runs each target for a fixed time, one at a time, and prints per target the
# executions, executions per second, corpus size and findings (fuzz/artifacts/<target>/).
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]    (default: 600 s; import text pipeline)
# Not part of CI (it takes long); the findings are replayed by tests/fuzz_regressions.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(import text pipeline)
suite=../shared/onnx-node
[ -d "$suite" ] || { echo "$suite missing: the conformance suite must sit next to the repository" >&2; exit 1; }

# cargo-fuzz passes libFuzzer's nightly-only flags to rustc; RUSTC_BOOTSTRAP lets the stable
# toolchain (the only one this project uses) accept them. Only for cargo fuzz: in the workspace's
# own target dir it would change every fingerprint and rebuild everything.
fuzz() { RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz "$@"; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# The fuzz crate has its own lock file: start it from the workspace's, so that it builds the
# versions the project is tested with.
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock

# Without AddressSanitizer (shrink's own code is safe Rust; the JIT's code is checked by output),
# which triples the throughput; overflow checks and debug assertions stay on.
build=(-s none --codegen-units 16)
fuzz build "${build[@]}"

# Seed corpora, rebuilt on every run (new units found by earlier runs are kept).
for t in import pipeline text; do mkdir -p "fuzz/corpus/$t"; done
for d in "$suite"/*/ examples/models/*/; do
    [ -f "$d/model.onnx" ] || continue
    for t in import pipeline; do cp -f "$d/model.onnx" "fuzz/corpus/$t/seed_$(basename "$d").onnx"; done
done
SHRINK_TEXT_SEEDS=$root/fuzz/corpus/text nice -n 19 cargo test --release -q -p shrink \
    --test fuzz_regressions -- --ignored write_text_seeds >/dev/null
for t in import pipeline text; do cp -f tests/fuzz-regressions/$t/* "fuzz/corpus/$t/"; done

mkdir -p fuzz/logs
summary=()
for t in "${targets[@]}"; do
    log=fuzz/logs/$t.log
    mkdir -p "fuzz/artifacts/$t"
    echo "== $t: ${secs}s" >&2
    # One job; libFuzzer stops at the first finding (saved under fuzz/artifacts/$t/).
    fuzz run "${build[@]}" "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=60 -print_final_stats=1 \
        >"$log" 2>&1 || true
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    findings=$(find "fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) | wc -l)
    summary+=("$(printf '%-9s %12s %10s %8s %9s' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$findings")")
done
printf '%-9s %12s %10s %8s %9s\n' target executions execs/s corpus findings
printf '%s\n' "${summary[@]}"
find fuzz/artifacts -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) | sed 's/^/finding: /'
