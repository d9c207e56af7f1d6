#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what is missing, then runs
# formatting and lint checks and every test (conformance, importer differential, CLI, unit).
# Usage: scripts/test-all.sh        (CI runs exactly this via .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
# The AOT tests compile the generated headers as C++ too, and link and run the static
# libraries for AArch64 and RISC-V 64 with the cross compilers under qemu-user (the tests
# install a profile's packages themselves too, or fail loudly; never skip).
command -v g++ >/dev/null || need_apt+=(g++)
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v riscv64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-riscv64-linux-gnu libc6-dev-riscv64-cross)
command -v qemu-aarch64 >/dev/null && command -v qemu-riscv64 >/dev/null || need_apt+=(qemu-user)
# tests/report.rs renders the HTML report with headless Chromium.
command -v chromium >/dev/null || need_apt+=(chromium)
command -v jq >/dev/null || need_apt+=(jq)
command -v pkg-config >/dev/null || true
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
    else
        echo "missing ${need_apt[*]}: install them (sudo apt-get install ${need_apt[*]})" >&2
        exit 1
    fi
fi
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust 1.95 with rustup (https://rustup.rs) and re-run" >&2
    exit 1
fi
if [ ! -d ../shared/onnx-node ]; then
    echo "../shared/onnx-node is missing: the conformance suite must sit next to the repository" >&2
    exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --release -- -D warnings
echo "== cargo test (release-optimised test profile)"
log=$(mktemp)
set +e
cargo test --workspace --release -- --nocapture 2>&1 | tee "$log" | grep -E "^(test result|interp:|jit:|aot-[a-z0-9_]+:|running|error|failures|---- )|panicked"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
    echo "== tests FAILED; the failing part of the log:" >&2
    grep -E -A 30 "^failures:|panicked at" "$log" | head -200 >&2
    exit "$status"
fi
passed=$(grep -E "^test result:" "$log" | sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' | awk '{p+=$1; f+=$2} END {print p, f}')
echo "${passed% *} passed, ${passed#* } failed"
