#!/usr/bin/env bash
# Property-based API test: schemathesis (PyPI) reads /api/openapi.json from a
# running `engagetrack serve` and sends generated requests to every
# operation, signed in as the demo user. It fails on any 5xx or on a response
# that does not match the documented schema.
#   scripts/api-schema-test.sh [path/to/engagetrack]   (DATABASE_URL: a superuser URL)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/engagetrack}
TOOLS=${ENGAGETRACK_TOOLS:-$HOME/.cache/engagetrack-tools}
VENV=$TOOLS/schemathesis-venv
ST_VERSION=4.32.5
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if [[ ! -x $VENV/bin/st ]] || ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$ST_VERSION"; then
  say "installing schemathesis $ST_VERSION into $VENV"
  mkdir -p "$TOOLS"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

ADMIN_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=et_schema_$$
psql "$ADMIN_URL" -qc "CREATE DATABASE $DB"
DB_URL=${ADMIN_URL%/*}/$DB
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [[ -n ${SERVER:-} ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

export DATABASE_URL=$DB_URL ENGAGETRACK_SECRETS_FILE=$WORK/secrets.json RUST_LOG=warn
demo=$("$BIN" seed-demo --days 3 --visitors 60 | tail -n 1)
password=$(sed -E 's/.*"password":"([^"]+)".*/\1/' <<<"$demo")
"$BIN" serve --addr "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
token=$(curl -fs "http://127.0.0.1:$PORT/api/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"demo@engagetrack.test\",\"password\":\"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

say "schemathesis against http://127.0.0.1:$PORT/api/openapi.json"
# Sign-out and ending a session (schemathesis reuses ids it saw in answers,
# so it finds this session's id) would end the session the run is signed in
# with; tests/tests/integration/accounts.rs covers both.
status=0
"$VENV/bin/st" run "http://127.0.0.1:$PORT/api/openapi.json" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance \
  --exclude-path /api/auth/logout --exclude-path '/api/me/sessions/{session_id}' \
  --phases examples,coverage,fuzzing --max-examples "${ST_MAX_EXAMPLES:-30}" \
  --header "Authorization: Bearer $token" --workers 2 --no-color || status=$?
# The run must have stayed signed in, or it only tested 401s.
if ! curl -fsS "http://127.0.0.1:$PORT/api/me" -H "Authorization: Bearer $token" -o /dev/null -w "%{http_code}\n"; then
  curl -s "http://127.0.0.1:$PORT/api/me" -H "Authorization: Bearer $token" >&2
  say "the demo session did not survive the run; the demo user's last actions:"
  psql "$DB_URL" -Atc "select a.action, a.details from audit_log a join users u on u.id = a.actor_user_id
                       where u.email = 'demo@engagetrack.test' order by a.id desc limit 5; select u.locked_at, u.deleted_at, r.revoked_at, r.rotated_at from users u left join refresh_tokens r on r.user_id = u.id where u.email = 'demo@engagetrack.test'" >&2 || true
  status=1
fi
if grep -q 'panicked' "$WORK/server.log"; then
  say "the server panicked:"; grep -A5 panicked "$WORK/server.log"; status=1
fi
exit $status
