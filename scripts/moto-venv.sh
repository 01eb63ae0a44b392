#!/usr/bin/env bash
# Installs moto's server (PyPI `moto[server]`, pinned) into the tools venv and
# prints the path of its `moto_server`. The AWS adapter tests
# (tests/tests/aws_adapters.rs) start it on a free loopback port; they find it
# through ENGAGETRACK_MOTO_SERVER or this venv.
#   scripts/moto-venv.sh          install if missing, print the binary's path
set -euo pipefail
TOOLS=${ENGAGETRACK_TOOLS:-$HOME/.cache/engagetrack-tools}
VENV=$TOOLS/moto-venv
MOTO_VERSION=5.2.5
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if [[ ! -x $VENV/bin/moto_server ]] || [[ $("$VENV/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null) != "$MOTO_VERSION" ]]; then
  say "installing moto[server] $MOTO_VERSION into $VENV"
  mkdir -p "$TOOLS"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi
echo "$VENV/bin/moto_server"
