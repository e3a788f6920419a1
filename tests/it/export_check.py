#!/usr/bin/env python3
"""Reads an airback export package with Python's own tarfile or zipfile and checks it
against what the fake Airtable holds (used by tests/it/export.rs).

Usage: export_check.py tar|zip PACKAGE EXPECTED_DIR

EXPECTED_DIR holds records.json ({table id: [record ids]}) and attachments/<attachment id>
(each attachment's bytes). Prints a JSON summary; exits non-zero with a message on any
failure.
"""

import csv
import hashlib
import io
import json
import os
import sys
import tarfile
import zipfile

FORBIDDEN = set('/\\:*?"<>|')
RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{p}{n}" for p in ("COM", "LPT") for n in "0123456789¹²³"
}


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def check_name(path):
    if path.startswith("/") or "\\" in path or ".." in path:
        fail(f"unsafe entry {path!r}")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            fail(f"empty, . or .. segment in {path!r}")
        if any(ord(c) < 32 or c == "\x7f" or c in FORBIDDEN for c in part):
            fail(f"forbidden character in {path!r}")
        if part.endswith((".", " ")) or part.startswith((".", " ")):
            fail(f"leading or trailing dot or space in {path!r}")
        if len(part.encode()) > 255:
            fail(f"segment over 255 bytes in {path!r}")
        if part.split(".")[0].rstrip(" ").upper() in RESERVED:
            fail(f"Windows device name in {path!r}")


def read_package(kind, path):
    files = {}
    if kind == "tar":
        with tarfile.open(path, "r:") as archive:
            for member in archive.getmembers():
                if not member.isfile():
                    fail(f"{member.name!r} is not a regular file")
                if member.mode != 0o644 or member.uid != 0 or member.gid != 0:
                    fail(f"{member.name!r} has mode {member.mode:o}, owner {member.uid}")
                if member.name in files:
                    fail(f"{member.name!r} twice")
                files[member.name] = archive.extractfile(member).read()
    else:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                fail(f"zip CRC error in {bad!r}")
            for info in archive.infolist():
                if info.is_dir():
                    fail(f"unexpected folder entry {info.filename!r}")
                if info.filename in files:
                    fail(f"{info.filename!r} twice")
                files[info.filename] = archive.read(info)
    return files


def attachment_objects(value):
    if isinstance(value, dict):
        if str(value.get("id", "")).startswith("att") and "filename" in value:
            yield value
            return
        for v in value.values():
            yield from attachment_objects(v)
    elif isinstance(value, list):
        for v in value:
            yield from attachment_objects(v)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def main():
    kind, package, expected_dir = sys.argv[1:4]
    files = read_package(kind, package)
    for name in files:
        check_name(name)
    folded = {}
    for name in files:
        key = name.lower()
        if key in folded:
            fail(f"{name!r} and {folded[key]!r} collide on a case-insensitive file system")
        folded[key] = name

    with open(os.path.join(expected_dir, "records.json")) as f:
        expected_records = json.load(f)
    attachments_dir = os.path.join(expected_dir, "attachments")
    expected_attachments = {
        name: sha256(open(os.path.join(attachments_dir, name), "rb").read())
        for name in os.listdir(attachments_dir)
    }

    manifest = json.loads(files["manifest.json"])
    if manifest["format"] != "airback-export" or manifest["version"] != 1:
        fail(f"unexpected manifest {manifest}")
    schema = json.loads(files["schema.json"])
    if [t["id"] for t in schema["tables"]] != [t["id"] for t in manifest["tables"]]:
        fail("the manifest's tables are not the schema's")

    records = 0
    seen = {}
    for table in manifest["tables"]:
        doc = json.loads(files[table["json"]])
        ids = [r["id"] for r in doc["records"]]
        if sorted(ids) != sorted(expected_records[table["id"]]):
            fail(f"table {table['name']!r}: records {sorted(ids)} != {sorted(expected_records[table['id']])}")
        if len(ids) != table["records"]:
            fail(f"table {table['name']!r}: manifest says {table['records']} records")
        records += len(ids)
        keys = {f["key"] for f in doc["fields"]}
        rows = list(csv.reader(io.StringIO(files[table["csv"]].decode("utf-8"), newline="")))
        header = rows[0]
        if header[:2] != ["id", "createdTime"] or header[2:] != [f["key"] for f in doc["fields"]]:
            fail(f"table {table['name']!r}: CSV header {header}")
        if [row[0] for row in rows[1:]] != ids:
            fail(f"table {table['name']!r}: CSV rows are not the JSON's records")
        for row in rows[1:]:
            if len(row) != len(header):
                fail(f"table {table['name']!r}: a CSV row has {len(row)} cells, not {len(header)}")
        for record in doc["records"]:
            for key in record["fields"]:
                if key not in keys:
                    fail(f"record {record['id']}: cell {key!r} not in the table's fields")
            for obj in attachment_objects(record["fields"]):
                if "url" in obj:
                    fail(f"attachment {obj['id']} still has a URL")
                path = obj.get("path")
                if path is None:
                    fail(f"attachment {obj['id']} ({obj['filename']!r}) has no path")
                if path not in files:
                    fail(f"attachment {obj['id']}: {path!r} is not in the package")
                if sha256(files[path]) != expected_attachments.get(obj["id"]):
                    fail(f"attachment {obj['id']}: {path!r} does not hold its bytes")
                if seen.setdefault(obj["id"], path) != path:
                    fail(f"attachment {obj['id']} has two paths")

    # Comments: comments/<table>.json for each table with some, one record per item, sorted by
    # record id, each comment as the API gave it, oldest first.
    comments_file = os.path.join(expected_dir, "comments.json")
    expected_comments = json.load(open(comments_file)) if os.path.exists(comments_file) else {}
    comments = 0
    for table in manifest["tables"]:
        expected = expected_comments.get(table["id"], {})
        path = table.get("comments")
        if not expected:
            if path is not None:
                fail(f"table {table['name']!r} has no comments but the manifest names {path!r}")
            continue
        if path not in files:
            fail(f"table {table['name']!r}: comments file {path!r} is not in the package")
        doc = json.loads(files[path])
        commented = [item["record"] for item in doc]
        if commented != sorted(commented):
            fail(f"table {table['name']!r}: comments are not sorted by record id")
        got = {item["record"]: item["comments"] for item in doc}
        if got != expected:
            fail(f"table {table['name']!r}: comments {got} != {expected}")
        comments += sum(len(c) for c in got.values())
    if expected_comments and manifest["comments"]["count"] != comments:
        fail(f"the manifest counts {manifest['comments']['count']} comments, not {comments}")

    if set(seen) != set(expected_attachments):
        fail(f"attachments {sorted(set(expected_attachments) - set(seen))} are missing")
    unreferenced = [n for n in files if n.startswith("attachments/") and n not in seen.values()]
    if unreferenced:
        fail(f"files no record points to: {unreferenced}")
    print(json.dumps({"entries": len(files), "records": records, "attachments": len(seen),
                      "comments": comments}))


if __name__ == "__main__":
    main()
