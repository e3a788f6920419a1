#!/usr/bin/env bash
# Runs the ingest benchmark side by side with Debian's restic (installed if missing).
# Usage: benches/compare_restic.sh [MB per data set, default 256]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v restic >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic
fi
AIRBACK_BENCH_MB="${1:-256}" cargo bench --bench ingest
