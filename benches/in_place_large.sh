#!/usr/bin/env bash
# Issue #14's undo figure: `airback restore SNAPSHOT --in-place` after 1 % of the records of
# the large bench base were deleted, with the fake's real rate limit (5 requests/s per base).
#
#   benches/in_place_large.sh                 # 10,000 records in 4 tables, 1 % deleted
#   AIRBACK_BENCH_RECORDS=2000 benches/in_place_large.sh
#
# Steps: the release binary; `airback fake-airtable --preset large --rate 5` as a child; init
# and snapshot; 1 % of each table's records deleted through the API (curl, 10 per request);
# then `airback restore <snapshot> --in-place --json` under /usr/bin/time -v. Its report gives
# the write requests (create, update, upload, delete) and all requests (the safety snapshot's
# listing included); the floor is ⌈deleted/10⌉ creations plus one upload per file. Deleting a
# record also removes the links other records had to it (the tables are linked in a chain);
# records are created again with their links to existing records, so Airtable mirrors those,
# and only links between two recreated records take a second write (a `PATCH`).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/tools.sh
need_tools jq time curl
cargo build --release
bin="${CARGO_TARGET_DIR:-target}/release/airback"
records="${AIRBACK_BENCH_RECORDS:-10000}"
tables=4
per_table=$(( records / tables ))
delete_per_table=$(( per_table / 100 ))
attachments=$(( records / 50 ))
work="$(mktemp -d)"
trap 'kill "$fake_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" fake-airtable --preset large --rate 5 \
    --large "tables=$tables,records=$per_table,attachments=$attachments,min=10000,max=5000000" \
    > "$work/banner" 2> "$work/fake.log" &
fake_pid=$!
for _ in $(seq 100); do [ -s "$work/banner" ] && break; sleep 0.1; done
url="$(jq -r .url "$work/banner")"
export AIRTABLE_API_URL="$url" AIRTABLE_CONTENT_URL="$url"
export AIRTABLE_TOKEN="$(jq -r .token "$work/banner")"
export AIRBACK_CACHE_DIR="$work/cache" AIRBACK_REPO="$work/repo" AIRBACK_PASSWORD=bench-password
base="$(jq -r '.bases[0].id' "$work/banner")"

"$bin" init --quiet
echo "snapshot of $records records…" >&2
snapshot="$("$bin" snapshot --base "$base" --json | jq -r .snapshot_id)"

echo "deleting $delete_per_table records in each of $tables tables…" >&2
sleep 1.2 # the snapshot's last second of requests
api() { curl -sf -H "Authorization: Bearer $AIRTABLE_TOKEN" "$@"; sleep 0.25; }
deleted=0
for table in $(api "$url/v0/meta/bases/$base/tables" | jq -r '.tables[].id'); do
    ids="$(api "$url/v0/$base/$table?pageSize=100" | jq -r '.records[].id' | head -n "$delete_per_table")"
    batch=()
    for id in $ids; do
        batch+=("records[]=$id")
        if [ "${#batch[@]}" -eq 10 ]; then
            api -X DELETE "$url/v0/$base/$table?$(IFS='&'; echo "${batch[*]}")" > /dev/null
            deleted=$(( deleted + 10 )); batch=()
        fi
    done
    if [ "${#batch[@]}" -gt 0 ]; then
        api -X DELETE "$url/v0/$base/$table?$(IFS='&'; echo "${batch[*]}")" > /dev/null
        deleted=$(( deleted + ${#batch[@]} ))
    fi
done
sleep 1.2

echo "restore --in-place…" >&2
/usr/bin/time -v -o "$work/time" "$bin" restore "$snapshot" --in-place --json > "$work/report.json" || true
rss_kb="$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$work/time")"
jq --arg rss "$rss_kb" --arg deleted "$deleted" -r '
  ((($deleted | tonumber) / 10 | ceil) + .attachments_uploaded) as $floor
  | "| records deleted | created again | records patched | files uploaded | write requests | floor ⌈deleted/10⌉ + files | all requests | 429s | seconds | verified | peak RSS |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    "| \($deleted) | \(.records_created) | \(.records_updated) | \(.attachments_uploaded) | \(.write_requests) | \($floor) | \(.requests) | \(.rate_limited) | \(.seconds | . * 10 | round / 10) | \(.verified.records) records, \(.verified.cells_differing) cells differ | \(($rss | tonumber) / 1024 | round) MiB |"
' "$work/report.json"
