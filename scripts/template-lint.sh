#!/usr/bin/env bash
# Checks the deployment templates, offline:
#   1. cfn-lint template.yaml                       (errors, warnings and informational findings all fail)
#   2. sam validate --lint --region eu-central-1    (the SAM transform, then cfn-lint on its output)
#   3. the stack's own promises, read from template.yaml (least privilege, TTLs,
#      salts without backups, private bucket, eu-central-1 only, job names = jobs.rs)
#   4. infra/wrangler.toml: its bindings are the ones edge-worker/src reads, and
#      `wrangler deploy --dry-run` accepts it (when edge-worker/node_modules exists,
#      i.e. after scripts/build-worker.sh; skipped otherwise)
#   scripts/template-lint.sh
# cfn-lint and aws-sam-cli (PyPI, pinned) go into a venv under
# ${ENGAGETRACK_TOOLS:-~/.cache/engagetrack-tools}. Nothing here needs AWS or
# Cloudflare credentials or any network once installed: every check runs with
# credentials, profiles, telemetry and update checks switched off and, where
# `unshare -n` works (root, CI), inside a network namespace of its own that
# has no interface but loopback, so a tool that tried to call out would fail.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=${ENGAGETRACK_TOOLS:-$HOME/.cache/engagetrack-tools}
VENV=$TOOLS/sam-venv
SAM_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { echo "template-lint: $*" >&2; exit 1; }

installed() { # package version
  "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version(sys.argv[1]) != sys.argv[2])' "$1" "$2" 2>/dev/null
}
if ! installed aws-sam-cli "$SAM_VERSION" || ! installed cfn-lint "$CFN_LINT_VERSION"; then
  say "installing aws-sam-cli $SAM_VERSION and cfn-lint $CFN_LINT_VERSION into $VENV"
  mkdir -p "$TOOLS"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "aws-sam-cli==$SAM_VERSION" "cfn-lint==$CFN_LINT_VERSION"
fi

# --- offline -------------------------------------------------------------
# No credentials, no profile, no instance metadata: nothing for boto3 to sign
# a call with (sam validate makes none; this makes sure of it).
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN \
  AWS_ENDPOINT_URL AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_WEB_IDENTITY_TOKEN_FILE
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
export AWS_REGION=eu-central-1 AWS_DEFAULT_REGION=eu-central-1
# SAM CLI: no telemetry, and its weekly "newer version?" request to PyPI is
# never due: its config dir (SAM's own override variable) is ours, with the
# last check stamped now (a float: SAM ignores an integer there).
export SAM_CLI_TELEMETRY=0
export __SAM_CLI_APP_DIR=$TOOLS/sam-cli-config
mkdir -p "$__SAM_CLI_APP_DIR"
printf '{"telemetryEnabled": false, "lastVersionCheck": %s.0}\n' "$(date +%s)" >"$__SAM_CLI_APP_DIR/metadata.json"
# wrangler: no metrics, no banner (the banner is what asks npm for a newer version).
export WRANGLER_SEND_METRICS=false WRANGLER_HIDE_BANNER=true CLOUDFLARE_CF_FETCH_ENABLED=false
unset CLOUDFLARE_API_TOKEN CLOUDFLARE_ACCOUNT_ID

if unshare -n true 2>/dev/null; then
  offline() { unshare -n -- "$@"; }
  say "checks run in a network namespace without network"
else
  offline() { "$@"; }
  say "unshare -n is not available here: checks run in this network namespace (they make no calls, but nothing enforces it)"
fi

status=0
fail() { echo "template-lint: FAIL: $*" >&2; status=1; }

# --- 1, 2: the linters -----------------------------------------------------
say "cfn-lint $CFN_LINT_VERSION template.yaml"
offline "$VENV/bin/cfn-lint" --include-checks I -- template.yaml || fail "cfn-lint found problems in template.yaml"

say "sam validate --lint (SAM CLI $SAM_VERSION)"
offline "$VENV/bin/sam" validate --lint --region eu-central-1 --template template.yaml || fail "sam validate --lint"

# The linter must be able to fail: a template whose role names a table that
# does not exist has to be refused (else the checks above prove nothing).
broken=$(mktemp --suffix=.yaml)
trap 'rm -f "$broken"; rm -rf "${WRANGLER_TMP:-}"' EXIT
sed 's/Resource: !GetAtt SaltsTable.Arn/Resource: !GetAtt SaltTable.Arn/' template.yaml >"$broken"
if offline "$VENV/bin/cfn-lint" -- "$broken" >/dev/null 2>&1; then
  fail "cfn-lint accepted a template that names a missing resource: it is not checking anything"
fi

# --- 3: what the stack promises --------------------------------------------
say "the stack's promises (least privilege, TTL, no salt backups, private bucket, region, job names)"
offline "$VENV/bin/python" - template.yaml functions/server/src/jobs.rs <<'PY' || fail "template.yaml breaks a promise (above)"
import re, sys
from samtranslator.yaml_helper import yaml_parse

template = yaml_parse(open(sys.argv[1]).read())
jobs_rs = open(sys.argv[2]).read()
R = template["Resources"]
problems = []
def check(ok, what):
    if not ok:
        problems.append(what)

# Region pinned by a rule on AWS::Region.
asserts = [a["Assert"] for rule in template.get("Rules", {}).values() for a in rule.get("Assertions", [])]
check({"Fn::Equals": [{"Ref": "AWS::Region"}, "eu-central-1"]} in asserts, "no rule asserts AWS::Region == eu-central-1")

# Tables: on demand, TTL on expires_at; the salts never backed up.
for name in ("SaltsTable", "RateLimitsTable"):
    p = R[name]["Properties"]
    check(p.get("BillingMode") == "PAY_PER_REQUEST", f"{name} is not PAY_PER_REQUEST")
    check(p.get("TimeToLiveSpecification") == {"AttributeName": "expires_at", "Enabled": True}, f"{name} has no TTL on expires_at")
check(R["SaltsTable"]["Properties"].get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is False,
      "SaltsTable must have point-in-time recovery explicitly off (a salt must die)")
check(R["SaltsTable"].get("DeletionPolicy") == "Delete", "SaltsTable must be deleted with the stack, never retained")

# Bucket: encrypted, every public access blocked, TLS only, exports/ gone after 7 days, geo/ kept.
b = R["DataBucket"]["Properties"]
check("BucketEncryption" in b, "DataBucket is not encrypted")
check(all(b.get("PublicAccessBlockConfiguration", {}).get(k) is True for k in
          ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")), "DataBucket does not block all public access")
rules = b.get("LifecycleConfiguration", {}).get("Rules", [])
check(any(r.get("Prefix") == "exports/" and r.get("ExpirationInDays") == 7 and r.get("Status") == "Enabled" for r in rules),
      "exports/ does not expire after 7 days")
check(not any(str(r.get("Prefix", "")).startswith("geo") or ("ExpirationInDays" in r and not r.get("Prefix")) for r in rules),
      "a lifecycle rule would expire geo/")
deny = R["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
check(any(s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false" for s in deny),
      "the bucket policy does not deny plain HTTP")

# Least privilege: each function has its own role, no wildcard action or
# resource, and touches exactly the resources it is meant to.
allowed = {  # function -> the resources (logical ids) its role may name
    "IngestFunction": {"IngestLogGroup", "IngestDeadLetterQueue", "SaltsTable", "AppSecret", "DataBucket"},
    "ApiFunction": {"ApiLogGroup", "RateLimitsTable", "AppSecret", "DataBucket"},
    "WebhooksFunction": {"WebhooksLogGroup", "AppSecret"},
    "SchedulerFunction": {"SchedulerLogGroup", "SchedulerDeadLetterQueue", "SaltsTable", "AppSecret", "DataBucket"},
}
prefixes = {"IngestFunction": {"geo/*"}, "ApiFunction": {"exports/*"}, "SchedulerFunction": {"exports/*", "geo/*"}}
def refs(node):
    """Logical ids a resource expression names (Ref, GetAtt, ${X} / ${X.Attr} in Sub)."""
    if isinstance(node, dict):
        if "Ref" in node:
            return {node["Ref"]}
        if "Fn::GetAtt" in node:
            g = node["Fn::GetAtt"]
            return {g[0] if isinstance(g, list) else g.split(".")[0]}
        if "Fn::Sub" in node:
            return {m.split(".")[0] for m in re.findall(r"\$\{([^}]+)\}", node["Fn::Sub"])}
        return set().union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node)) if node else set()
    return set()
for fn, ids in allowed.items():
    props = R[fn]["Properties"]
    check("Policies" not in props, f"{fn}: policies belong in its role, not to SAM")
    role = refs(props.get("Role"))
    check(len(role) == 1, f"{fn} has no role of its own")
    if len(role) != 1:
        continue
    rp = R[role.pop()]["Properties"]
    for policy in rp.get("Policies", []):
        for st in policy["PolicyDocument"]["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            check(st["Effect"] == "Allow", f"{fn}: unexpected {st['Effect']}")
            check(not any(a == "*" or a.endswith(":*") for a in actions), f"{fn}: wildcard action in {st.get('Sid')}")
            check("*" not in resources, f"{fn}: Resource * in {st.get('Sid')}")
            named = refs(resources)
            check(named <= ids, f"{fn}: {st.get('Sid')} names {sorted(named - ids)}, which {fn} does not use")
            for r in resources:
                if isinstance(r, dict) and "Fn::Sub" in r and "DataBucket.Arn}/" in r["Fn::Sub"]:
                    prefix = r["Fn::Sub"].split("}/", 1)[1]
                    check(prefix in prefixes.get(fn, set()), f"{fn}: bucket prefix {prefix} is not one it uses")
    mp = rp.get("ManagedPolicyArns")
    check(mp is None or (isinstance(mp, dict) and mp.get("Fn::If", [None])[0] == "InVpc"),
          f"{fn}: managed policies other than the VPC one, or that one without the InVpc condition")

# The configuration contract.
env = template["Globals"]["Function"]["Environment"]["Variables"]
check(env.get("ENGAGETRACK_CLIENT_IP") == "api-gateway", "ENGAGETRACK_CLIENT_IP is not api-gateway")
for var in ("DATABASE_URL", "ENGAGETRACK_SECRET_ID", "ENGAGETRACK_REDIS_URL"):
    check(var in env, f"{var} is not set for the functions")
check("AWS_REGION" not in env, "AWS_REGION is Lambda's own (reserved); the Rules pin the region")
check(template["Parameters"]["DatabaseUrl"].get("NoEcho") is True, "DatabaseUrl must be NoEcho")
for fn, var, table in (("IngestFunction", "ENGAGETRACK_SALTS_TABLE", "SaltsTable"),
                       ("SchedulerFunction", "ENGAGETRACK_SALTS_TABLE", "SaltsTable"),
                       ("ApiFunction", "ENGAGETRACK_RATE_LIMITS_TABLE", "RateLimitsTable")):
    check(R[fn]["Properties"]["Environment"]["Variables"].get(var) == {"Ref": table}, f"{fn}: {var} is not its table")

# Every scheduled job exists in jobs.rs, and every job in jobs.rs is scheduled.
known = set(re.findall(r'Job::\w+ => "([a-z-]+)"', jobs_rs))
scheduled = set()
for ev in R["SchedulerFunction"]["Properties"]["Events"].values():
    if ev["Type"] == "ScheduleV2":
        scheduled.add(re.search(r'"job":\s*"([a-z-]+)"', ev["Properties"]["Input"]).group(1))
check(known and scheduled == known, f"scheduled jobs {sorted(scheduled)} != jobs.rs {sorted(known)}")

# Each function has a log group with a retention, and an error-rate alarm.
for fn in allowed:
    lg = refs(R[fn]["Properties"].get("LoggingConfig", {}).get("LogGroup"))
    check(len(lg) == 1 and "RetentionInDays" in R[next(iter(lg))]["Properties"], f"{fn} has no log group with a retention")
    check(any(r["Type"] == "AWS::CloudWatch::Alarm" and fn in str(r["Properties"].get("Metrics", "")) for r in R.values()),
          f"{fn} has no error-rate alarm")
for q in ("IngestDeadLetterQueue", "SchedulerDeadLetterQueue"):
    check(any(r["Type"] == "AWS::CloudWatch::Alarm" and q in str(r["Properties"].get("Dimensions", "")) for r in R.values()),
          f"no alarm on the depth of {q}")

for p in problems:
    print("  -", p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY

# --- 4: the worker's configuration -----------------------------------------
say "infra/wrangler.toml: bindings match edge-worker/src"
offline "$VENV/bin/python" - infra/wrangler.toml edge-worker/src <<'PY' || fail "infra/wrangler.toml does not match the worker (above)"
import pathlib, re, sys, tomllib
conf = tomllib.load(open(sys.argv[1], "rb"))
src = "\n".join(p.read_text() for p in pathlib.Path(sys.argv[2]).rglob("*.rs"))
kv = {n["binding"] for n in conf.get("kv_namespaces", [])}
queues = {q["binding"] for q in conf.get("queues", {}).get("producers", [])}
consumed = {q["queue"] for q in conf.get("queues", {}).get("consumers", [])}
produced = {q["queue"] for q in conf.get("queues", {}).get("producers", [])}
vars_ = set(conf.get("vars", {}))
problems = []
# The worker names its bindings in constants: const SALTS: &str = "SALTS";
for name in re.findall(r'const \w+: &str = "([A-Z][A-Z0-9_]*)";', src):
    if name.endswith("_KEY"):  # secrets (wrangler secret put), not config
        continue
    if name not in kv | queues | vars_:
        problems.append(f"the worker reads {name}, which infra/wrangler.toml does not bind")
for need in ("SALTS", "SITES", "GEO"):
    if need not in kv:
        problems.append(f"no {need} KV namespace")
if not (produced & consumed):
    problems.append("the retry queue is not consumed by the worker")
if not all(c.get("dead_letter_queue") for c in conf.get("queues", {}).get("consumers", [])):
    problems.append("a queue consumer has no dead-letter queue")
if "INGEST_URL" not in vars_:
    problems.append("no INGEST_URL var")
if not conf.get("observability", {}).get("enabled"):
    problems.append("observability is off")
if "crons" not in conf.get("triggers", {}):
    problems.append("no [triggers] crons list")
elif conf["triggers"]["crons"] and not re.search(r"#\[event\(scheduled\)\]", src):
    problems.append("crons are set but the worker has no #[event(scheduled)] handler")
for p in problems:
    print("  -", p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY

WRANGLER=$ROOT/edge-worker/node_modules/.bin/wrangler
if [[ -x $WRANGLER ]]; then
  say "wrangler deploy --dry-run --config infra/wrangler.toml"
  # The dry run must not build (that compiles Rust for minutes): a copy of the
  # config without [build], whose main is the built worker when there is one,
  # else a stub with the same handlers (the config is what is checked here).
  WRANGLER_TMP=$(mktemp -d)
  main=$ROOT/edge-worker/build/index.js
  if [[ ! -f $main ]]; then
    main=$WRANGLER_TMP/index.js
    echo 'export default { async fetch() { return new Response(null, { status: 204 }) }, async queue() {} };' >"$main"
  fi
  awk -v main="$main" '/^\[build\]/ { skip = 1; next } /^\[/ { skip = 0 } skip { next }
    /^main = / { print "main = \"" main "\""; next } { print }' infra/wrangler.toml >"$WRANGLER_TMP/wrangler.toml"
  (cd "$ROOT/edge-worker" && offline "$WRANGLER" deploy --dry-run --config "$WRANGLER_TMP/wrangler.toml" \
    --outdir "$WRANGLER_TMP/out") || fail "wrangler deploy --dry-run refused infra/wrangler.toml"
else
  say "skipped wrangler deploy --dry-run: edge-worker/node_modules is missing (scripts/build-worker.sh --tools-only installs it)"
fi

if [[ $status -eq 0 ]]; then say "templates OK"; else say "templates: problems above"; fi
exit $status
