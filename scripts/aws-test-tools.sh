#!/usr/bin/env bash
# Installs the AWS-API servers the adapter tests (tests/tests/integration/aws_adapters.rs)
# start on free loopback ports, pinned, into the tools folder:
#   - moto's server (PyPI `moto[server]`) in a venv: Secrets Manager, DynamoDB, S3
#   - s3rver (npm), a second S3 server, because moto does not refuse a
#     presigned link after its expiry and s3rver does
#   - aiosmtpd (PyPI) in a venv of its own: the SMTP server the mail tests
#     (tests/tests/integration/mail.rs) run tests/smtp/smtp_sink.py with
#   scripts/aws-test-tools.sh      install what is missing
set -euo pipefail
TOOLS=${ENGAGETRACK_TOOLS:-$HOME/.cache/engagetrack-tools}
VENV=$TOOLS/moto-venv
MOTO_VERSION=5.2.5
S3RVER_VERSION=3.7.1
SMTP_VENV=$TOOLS/smtp-venv
AIOSMTPD_VERSION=1.4.6
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if [[ ! -x $VENV/bin/moto_server ]] || [[ $("$VENV/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null) != "$MOTO_VERSION" ]]; then
  say "installing moto[server] $MOTO_VERSION into $VENV"
  mkdir -p "$TOOLS"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

if [[ $(node -p "require('$TOOLS/s3rver/node_modules/s3rver/package.json').version" 2>/dev/null) != "$S3RVER_VERSION" ]]; then
  say "installing s3rver $S3RVER_VERSION into $TOOLS/s3rver"
  mkdir -p "$TOOLS/s3rver"
  npm install -s --no-audit --no-fund --prefix "$TOOLS/s3rver" "s3rver@$S3RVER_VERSION" >/dev/null
fi

if [[ $("$SMTP_VENV/bin/python" -c 'from importlib.metadata import version; print(version("aiosmtpd"))' 2>/dev/null) != "$AIOSMTPD_VERSION" ]]; then
  say "installing aiosmtpd $AIOSMTPD_VERSION into $SMTP_VENV"
  mkdir -p "$TOOLS"
  python3 -m venv "$SMTP_VENV"
  "$SMTP_VENV/bin/pip" install -q --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
fi
