#!/usr/bin/env bash
# Issue #4's acceptance figures on the fake's large preset (see benches/snapshot_large.rs).
# Installs Debian's restic and GNU time if missing, builds the release binary, runs the bench.
# Usage: benches/snapshot_large.sh            # 10k, 50k, 100k records; restic at 50k
#        AIRBACK_BENCH_QUICK=1 benches/snapshot_large.sh
#        AIRBACK_BENCH_SIZES=10000,50000 AIRBACK_BENCH_RESTIC_SIZE=50000 benches/snapshot_large.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/tools.sh
need_tools restic time
# `cargo bench` rebuilds target/release/airback with the dev-dependencies' features (tokio's
# test-util) and puts it in the same place, so measure a copy of the `cargo build --release` one.
cargo build --release
target_dir="${CARGO_TARGET_DIR:-target}"
bin_dir="$(mktemp -d)"
trap 'rm -rf "$bin_dir"' EXIT
cp "$target_dir/release/airback" "$bin_dir/airback"
AIRBACK_BIN="${AIRBACK_BIN:-$bin_dir/airback}" cargo bench --bench snapshot_large
