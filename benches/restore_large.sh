#!/usr/bin/env bash
# Issue #5's write-rate figure: `airback restore` of a large-preset snapshot into a new base,
# with the fake's real rate limit (5 requests/s per base, a 429 locks the base for 30 s).
#
#   benches/restore_large.sh                 # 10,000 records in 4 tables, ~190 MB of files
#   AIRBACK_BENCH_RECORDS=2000 benches/restore_large.sh
#
# Steps: the release binary; `airback fake-airtable --preset large --rate 5` as a child; init
# and snapshot; then `airback restore latest --workspace … --json` under /usr/bin/time -v. The
# restore's JSON report gives the requests and seconds of the apply phase (schema, records,
# attachments, links; verification is listed apart), the floor for the work (records/50 s +
# link updates/50 s + one request per upload and schema change, at 5/s), and the requests on
# the target base in all (verification and repairs included) and on the original (which
# gives the files' URLs, on its own budget). The original base is readable, so files go by
# URL in the create requests (capped at 5 MB, as when they were uploaded one by one).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/tools.sh
need_tools jq time
cargo build --release
bin="${CARGO_TARGET_DIR:-target}/release/airback"
records="${AIRBACK_BENCH_RECORDS:-10000}"
tables=4
attachments=$(( records / 50 ))
work="$(mktemp -d)"
trap 'kill "$fake_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" fake-airtable --preset large --rate 5 \
    --large "tables=$tables,records=$(( records / tables )),attachments=$attachments,min=10000,max=5000000" \
    > "$work/banner" 2> "$work/fake.log" &
fake_pid=$!
for _ in $(seq 100); do [ -s "$work/banner" ] && break; sleep 0.1; done
export AIRTABLE_API_URL="$(jq -r .url "$work/banner")"
export AIRTABLE_CONTENT_URL="$AIRTABLE_API_URL"
export AIRTABLE_TOKEN="$(jq -r .token "$work/banner")"
export AIRBACK_CACHE_DIR="$work/cache" AIRBACK_REPO="$work/repo"
export AIRBACK_PASSWORD="bench" AIRBACK_KDF_PARAMS="1024,1,1"
base="$(jq -r '.bases[0].id' "$work/banner")"
workspace="$(jq -r .workspace "$work/banner")"

"$bin" init --quiet
echo "snapshot of $records records…" >&2
"$bin" snapshot --base "$base" --quiet
echo "restore…" >&2
/usr/bin/time -v -o "$work/time" "$bin" restore latest --workspace "$workspace" --json > "$work/report.json" || true
rss_kb="$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$work/time")"
jq --arg rss "$rss_kb" -r '
  def pct(a; b): (a / b * 1000 | round) / 10;
  "| records | link updates | files by URL | uploads | repaired | target requests | original requests | apply s | floor s | rate /s | % of 5/s | 429s | verify | peak RSS |",
  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
  "| \(.workload.records) | \(.link_records_written) | \(.attachments_by_url) | \(.attachments_uploaded) | \(.attachments_repaired) | \(.requests) | \(.original_requests) | \(.apply_seconds | . * 10 | round / 10) | \(.floor_seconds | round) | \(.apply_requests / .apply_seconds * 100 | round / 100) | \(pct(.apply_requests / .apply_seconds; 5)) | \(.rate_limited) | \(.fidelity.records_found)/\(.fidelity.records_expected) records, cells \(.fidelity.cells.equal)/\(.fidelity.cells.cells), files \(.fidelity.attachments.equal)/\(.fidelity.attachments.cells), \(.fidelity.duplicates) duplicates | \(($rss | tonumber) / 1024 | round) MiB |",
  "",
  "target: \(.requests) requests in \(.seconds | round) s (apply \(.apply_requests); verification and repairs: \(.requests - .apply_requests) requests in \(.seconds - .apply_seconds | round) s)"
' "$work/report.json"
