#!/usr/bin/env bash
# Issue 14's diff figure: `airback diff A B` between two snapshots of a 100,000-record base
# with 1 % of the records changed: wall time, peak RSS, and API requests (must be 0).
#
#   benches/diff_large.sh                        # 4 tables × 25,000 records, no attachments
#   AIRBACK_BENCH_RECORDS=10000 benches/diff_large.sh
#   AIRBACK_BIN=path/to/airback benches/diff_large.sh   # that binary, no build
#
# Steps: the release binary; `airback fake-airtable --preset large --rate 0` as a child; init
# (encrypted) and snapshot A; an export of A (folder) gives the record ids; every 100th record
# of each table gets a new `Notes` cell through the API (PATCH, 10 records per request);
# snapshot B. Then the fake is stopped and AIRTABLE_TOKEN unset, and `airback diff A B --json`
# runs under /usr/bin/time -v with the Airtable client's debug log on: it succeeds without any
# Airtable to talk to, and the log must show no request.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/tools.sh
need_tools jq time curl
if [ -z "${AIRBACK_BIN:-}" ]; then
    cargo build --release
fi
bin="${AIRBACK_BIN:-${CARGO_TARGET_DIR:-target}/release/airback}"
records="${AIRBACK_BENCH_RECORDS:-100000}"
tables=4
work="$(mktemp -d)"
fake_pid=""
trap '[ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null; rm -rf "$work"' EXIT

"$bin" fake-airtable --preset large --rate 0 \
    --large "tables=$tables,records=$(( records / tables )),attachments=0" \
    > "$work/banner" 2> "$work/fake.log" &
fake_pid=$!
for _ in $(seq 600); do [ -s "$work/banner" ] && break; sleep 0.1; done
url="$(jq -r .url "$work/banner")"
token="$(jq -r .token "$work/banner")"
base="$(jq -r '.bases[0].id' "$work/banner")"
export AIRTABLE_API_URL="$url" AIRTABLE_CONTENT_URL="$url" AIRTABLE_TOKEN="$token"
export AIRBACK_CACHE_DIR="$work/cache" AIRBACK_REPO="$work/repo"
export AIRBACK_PASSWORD="bench" AIRBACK_KDF_PARAMS="1024,1,1"

"$bin" init --quiet
echo "snapshot A of $records records…" >&2
a="$("$bin" snapshot --base "$base" --json | jq -r '.. | .snapshot_id? // empty' | head -n 1)"
"$bin" export "$a" --format dir -o "$work/export" --quiet

echo "changing 1 % of the records…" >&2
changed=0
for json in "$work"/export/tables/*.json; do
    table="$(jq -r .table.id "$json")"
    jq -c '[.records | to_entries[] | select(.key % 100 == 0) | .value.id] | _nwise(10)
           | {records: map({id: ., fields: {"Notes": "changed by the diff benchmark"}})}' \
        "$json" > "$work/patches"
    while read -r patch; do
        curl -sf -X PATCH "$url/v0/$base/$table" -H "Authorization: Bearer $token" \
            -H 'Content-Type: application/json' --data "$patch" > /dev/null
        changed=$(( changed + $(jq '.records | length' <<< "$patch") ))
    done < "$work/patches"
done
echo "snapshot B…" >&2
b="$("$bin" snapshot --base "$base" --json | jq -r '.. | .snapshot_id? // empty' | head -n 1)"

kill "$fake_pid"; wait "$fake_pid" 2>/dev/null || true; fake_pid=""
unset AIRTABLE_TOKEN
echo "diff (the fake is stopped)…" >&2
cmd=("$bin" diff "$a" "$b" --json)
AIRBACK_LOG="warn,airback::airtable=debug" /usr/bin/time -v -o "$work/time" "${cmd[@]}" \
    > "$work/diff.json" 2> "$work/diff.log"
requests="$(grep -c 'airtable request' "$work/diff.log" || true)"
wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time")"
rss_kb="$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$work/time")"
found="$(jq '.summary.changed' "$work/diff.json")"
echo
echo "| records | changed (PATCHed) | changed (found by diff) | wall time | peak RSS | API requests |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
echo "| $records | $changed | $found | $wall | $(( rss_kb / 1024 )) MiB | $requests |"
echo
echo "command: airback diff A B --json  (summary: $(jq -c .summary "$work/diff.json"))"
