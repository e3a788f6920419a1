#!/usr/bin/env bash
# Runs the ingest benchmark side by side with Debian's restic and borg (installed if missing).
# Usage: benches/compare_restic.sh [MB per data set, default 256]
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/tools.sh
need_tools restic borg
AIRBACK_BENCH_MB="${1:-256}" cargo bench --bench ingest
