#!/bin/sh
# Fuzz the restore path (archive::unpack on raw bytes) for SECONDS (default 60), on the
# nightly toolchain with cargo-fuzz. Crashes land in tests/fuzz/artifacts/unpack/; turn each
# into a regression test in tests/cli/hostile.rs. Extra arguments go to libFuzzer.
#   scripts/fuzz.sh 1800 -jobs=2 -workers=2
set -eu
cd "$(dirname "$0")/.."
secs="${1:-60}"
[ $# -gt 0 ] && shift
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
corpus=tests/fuzz/corpus/unpack
mkdir -p "$corpus"
# No sanitizer: the code under test is safe Rust plus zstd's C, which is not instrumented
# either way, so ASan would only slow every run down.
exec cargo +nightly fuzz run --fuzz-dir tests/fuzz -s none unpack "$corpus" tests/fuzz/seeds/unpack -- \
    -max_total_time="$secs" -max_len=262144 -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 "$@"
