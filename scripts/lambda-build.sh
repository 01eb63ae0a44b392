#!/usr/bin/env bash
# Builds the four Lambdas (ingest, api, webhooks, scheduler) for the
# provided.al2023 runtime on arm64 (Graviton) with cargo-lambda, and prints
# the size of each bootstrap. Output: $CARGO_TARGET_DIR/lambda/<function>/bootstrap
# (target/lambda/<function>/bootstrap by default,
# the layout cargo-lambda and `sam build` use).
#   scripts/lambda-build.sh               install what is missing, then build (release, arm64)
#   scripts/lambda-build.sh --tools-only  install what is missing, do not build
# cargo-lambda comes from PyPI (a prebuilt binary in a wheel; it pulls in
# ziglang, the cross linker), installed into a venv under $ENGAGETRACK_TOOLS.
# Nothing is downloaded from GitHub: only PyPI and rustup's own target.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=${ENGAGETRACK_TOOLS:-$HOME/.cache/engagetrack-tools}
CARGO_LAMBDA_VERSION=1.9.2
VENV=$TOOLS/cargo-lambda-$CARGO_LAMBDA_VERSION
TARGET=aarch64-unknown-linux-gnu
FUNCTIONS=(ingest api webhooks scheduler)
LAMBDA_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/lambda

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { echo "lambda-build: $*" >&2; exit 1; }
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH=$HOME/.cargo/bin:$PATH
command -v cargo >/dev/null || die "cargo is missing: run ./dev setup"
command -v python3 >/dev/null || die "python3 is missing: run ./dev setup"

if [[ ! -x $VENV/bin/cargo-lambda ]]; then
  say "installing cargo-lambda $CARGO_LAMBDA_VERSION from PyPI into $VENV"
  mkdir -p "$TOOLS"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi
# cargo finds `cargo lambda` as cargo-lambda on PATH; cargo-lambda finds zig
# through the ziglang package of the same venv (python -m ziglang).
export PATH=$VENV/bin:$PATH
cargo lambda --version >&2

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$TARGET"; then
  say "adding the rustup target $TARGET"
  rustup target add "$TARGET" >&2
fi

[[ ${1:-} == --tools-only ]] && exit 0

say "cargo lambda build --release --arm64 (${FUNCTIONS[*]})"
started=$SECONDS
packages=()
for f in "${FUNCTIONS[@]}"; do packages+=(-p "engagetrack-$f"); done
cargo lambda build --release --arm64 "${packages[@]}" --lambda-dir "$LAMBDA_DIR" >&2
say "built in $((SECONDS - started)) s"

# The bootstrap of each function: its size, and that it is an arm64 ELF.
for f in "${FUNCTIONS[@]}"; do
  bin=$LAMBDA_DIR/$f/bootstrap
  [[ -f $bin ]] || die "$bin is missing after the build"
  if command -v file >/dev/null; then
    file -b "$bin" | grep -q "ARM aarch64" || die "$bin is not an arm64 binary: $(file -b "$bin")"
  fi
  printf '%-10s %8s KiB  %s\n' "$f" "$(( $(stat -c %s "$bin") / 1024 ))" "$bin"
done
