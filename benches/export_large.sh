#!/usr/bin/env bash
# Issue #6's throughput figures: `airback export` of a snapshot of the fake's large preset to a
# local file (tar, zip, SQLite), a folder, and a pipe, each under GNU time for the wall time and
# the peak RSS. Throughput is attachment bytes over the export's whole wall time (process start,
# repository open and the records included). Prints a markdown table.
#
# Usage: benches/export_large.sh
#        AIRBACK_BENCH_LARGE=tables=4,records=5000,attachments=2000 benches/export_large.sh
#        AIRBACK_BIN=target/release/airback benches/export_large.sh   # skip the build
#        AIRBACK_BENCH_DIR=/var/tmp/x AIRBACK_BENCH_KEEP=1 ...         # keep the repository
#        AIRBACK_BENCH_COLD=1 ...      # drop the page cache before each export (needs root)
set -euo pipefail
cd "$(dirname "$0")/.."

. benches/tools.sh
need_tools time
if [ -z "${AIRBACK_BIN:-}" ]; then
    cargo build --release
    AIRBACK_BIN="${CARGO_TARGET_DIR:-target}/release/airback"
fi
bin="$(realpath "$AIRBACK_BIN")"
large="${AIRBACK_BENCH_LARGE:-tables=4,records=5000,attachments=2000}"
work="${AIRBACK_BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$work"
fake_pid=""
cleanup() {
    [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null || true
    [ -n "${AIRBACK_BENCH_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

export AIRBACK_REPO="$work/repo" AIRBACK_CACHE_DIR="$work/cache"
if [ ! -f "$work/repo/config" ]; then
    "$bin" fake-airtable --preset large --rate 0 --large "$large" >"$work/banner.json" &
    fake_pid=$!
    for _ in $(seq 600); do [ -s "$work/banner.json" ] && break; sleep 0.1; done
    field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$1)" "$work/banner.json"; }
    export AIRTABLE_API_URL="$(field "['url']")"
    export AIRTABLE_CONTENT_URL="$AIRTABLE_API_URL"
    export AIRTABLE_TOKEN="$(field "['token']")"
    base="$(field "['bases'][0]['id']")"
    "$bin" init --quiet
    echo "snapshot of the large preset ($large)..." >&2
    "$bin" snapshot --base "$base" --attachment-concurrency 16 --quiet
    kill "$fake_pid"
    fake_pid=""
fi

# `measure NAME ARGS...`: runs `airback export --json ARGS` under GNU time and appends a table
# row. With `-o -` the archive goes through a pipe to /dev/null and the summary to stderr.
measure() {
    local name="$1"
    shift
    if [ -n "${AIRBACK_BENCH_COLD:-}" ]; then
        sync
        echo 3 >/proc/sys/vm/drop_caches
    fi
    : >"$work/summary.json"
    if [ "${*: -1}" = "-" ]; then
        /usr/bin/time -v -o "$work/time.txt" "$bin" export latest --json "$@" 2>"$work/stderr.txt" | cat >/dev/null
    else
        /usr/bin/time -v -o "$work/time.txt" "$bin" export latest --json "$@" >"$work/summary.json" 2>"$work/stderr.txt"
    fi
    python3 - "$name" "$work" <<'EOF' >>"$work/rows.md"
import json, re, sys
name, work = sys.argv[1], sys.argv[2]
text = open(f"{work}/time.txt").read()
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
seconds = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.split(":"))))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
cpu = re.search(r"Percent of CPU this job got: (\d+)%", text).group(1)
lines = [l for l in open(f"{work}/summary.json").read().splitlines() + open(f"{work}/stderr.txt").read().splitlines() if l.startswith("{")]
s = json.loads(lines[-1])
mb = s["attachment_bytes"] / 1e6
print(f"| {name} | {s['records']:,} | {s['attachments']:,} | {mb:,.0f} MB | {s['bytes_written'] / 1e6:,.0f} MB "
      f"| {seconds:.1f} s | **{mb / seconds:,.0f} MB/s** | {rss / 1024:.0f} MiB | {cpu}% |")
EOF
}

: >"$work/rows.md"
measure "tar → file" --format tar -o "$work/out.tar"
rm -f "$work/out.tar"
measure "tar → pipe (\`-o - \| cat >/dev/null\`)" --format tar -o -
measure "zip → file" --format zip -o "$work/out.zip"
rm -f "$work/out.zip"
measure "dir → folder" --format dir -o "$work/out.d"
rm -rf "$work/out.d"
measure "sqlite → file" --format sqlite -o "$work/out.sqlite"
rm -f "$work/out.sqlite"

echo
echo "Large preset \`$large\`; $(nproc) cores; page cache $([ -n "${AIRBACK_BENCH_COLD:-}" ] && echo dropped before each export || echo warm)."
echo
echo "| export | records | attachments | attachment data | written | wall time | attachment throughput | peak RSS | CPU |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
cat "$work/rows.md"
