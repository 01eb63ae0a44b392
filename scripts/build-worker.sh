#!/usr/bin/env bash
# Builds the Cloudflare Worker (edge-worker/) for wasm32 into edge-worker/build/:
#   index.js (the JS shim worker-build writes) + the wasm it loads.
# Idempotent; installed tools are cached in $ENGAGETRACK_TOOLS (default
# ~/.cache/engagetrack-tools), so a second run only rebuilds what changed.
#   scripts/build-worker.sh              install what is missing, then build (release)
#   scripts/build-worker.sh --tools-only install what is missing, do not build
# Only crates.io, npm and Debian are reachable from CI machines: worker-build
# is pointed at wasm-bindgen (cargo install), esbuild and wasm-opt (npm) so it
# downloads nothing from GitHub.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=${ENGAGETRACK_TOOLS:-$HOME/.cache/engagetrack-tools}
WORKER=$ROOT/edge-worker
OUT=$WORKER/build
mkdir -p "$TOOLS"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { echo "build-worker: $*" >&2; exit 1; }
[[ -x $HOME/.cargo/bin/cargo ]] && export PATH=$HOME/.cargo/bin:$PATH
command -v cargo >/dev/null || die "cargo is missing: run ./dev setup"
command -v npm >/dev/null || die "npm is missing: run ./dev setup"

# The version of a package in Cargo.lock (the first entry of that name).
locked_version() {
  awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

# cargo install into a directory of its own per version: a second run finds it.
cargo_tool() { # crate version binary
  local crate=$1 version=$2 bin=$3 root=$TOOLS/$1-$2
  if [[ ! -x $root/bin/$bin ]]; then
    say "installing $crate $version (cached in $root; takes minutes once)"
    local started=$SECONDS
    # no --locked: the crates' own lockfiles pin versions that no longer build
    cargo install -q "$crate" --version "=$version" --root "$root" >&2
    say "$crate $version installed in $((SECONDS - started)) s"
  fi
  echo "$root/bin/$bin"
}

# wasm32-unknown-unknown: rustup's target, else Debian's rustc-web with
# -Zbuild-std (see shared/recipes/wasm32-toolchain-fallback.sh in the project notes).
wasm32_toolchain() {
  # ENGAGETRACK_WASM_FALLBACK=1 takes the fallback even where rustup works (to test it)
  if command -v rustup >/dev/null && [[ ${ENGAGETRACK_WASM_FALLBACK:-0} != 1 ]]; then
    rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown && return 0
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown >&2 && return 0
    say "rustup could not add wasm32-unknown-unknown; falling back to Debian's rustc-web + -Zbuild-std"
  fi
  local w=$TOOLS/wasm32-fallback
  local src; src=$(ls -d /usr/src/rustc-* 2>/dev/null | sort -V | tail -n 1 || true)
  if ! dpkg -s rustc-web cargo-web rust-web-src lld-22 >/dev/null 2>&1 || [[ -z $src ]]; then
    local sudo=(); [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq rustc-web cargo-web rust-web-src lld-22 >/dev/null
    src=$(ls -d /usr/src/rustc-* | sort -V | tail -n 1)
  fi
  mkdir -p "$w/sysroot/lib/rustlib/src" "$w/sysroot/lib/rustlib/wasm32-unknown-unknown/lib" "$w/bin"
  ln -sfn /usr/lib/rustlib/x86_64-unknown-linux-gnu "$w/sysroot/lib/rustlib/x86_64-unknown-linux-gnu"
  ln -sfn /usr/lib/rustlib/etc "$w/sysroot/lib/rustlib/etc"
  ln -sfn "$src" "$w/sysroot/lib/rustlib/src/rust"
  printf '#!/bin/sh\nexec /usr/bin/rustc --sysroot %s/sysroot "$@"\n' "$w" >"$w/bin/rustc"
  printf '#!/bin/sh\nexport RUSTC=%s/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort\nexec /usr/bin/cargo "$@"\n' "$w" >"$w/bin/cargo"
  chmod +x "$w/bin/rustc" "$w/bin/cargo"
  # rustup's cargo is first on PATH: the wrappers must come before it, but only
  # for the wasm build (cargo install of the host tools must not use build-std)
  WASM_PATH_PREFIX=$w/bin
  # another rustc: keep its artifacts apart from rustup's
  export CARGO_TARGET_DIR=$ROOT/target/wasm32-fallback
}

npm_tools() {
  if [[ ! -f $WORKER/node_modules/.package-lock.json || $WORKER/package-lock.json -nt $WORKER/node_modules/.package-lock.json ]]; then
    say "installing the worker's npm tools (wrangler, workerd, esbuild, binaryen)"
    (cd "$WORKER" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
}

WASM_PATH_PREFIX=
wasm32_toolchain
WASM_BINDGEN_VERSION=$(locked_version wasm-bindgen)
WORKER_VERSION=$(locked_version worker)
[[ -n $WASM_BINDGEN_VERSION && -n $WORKER_VERSION ]] || die "wasm-bindgen/worker not in Cargo.lock"
WASM_BINDGEN_BIN=$(cargo_tool wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen)
WORKER_BUILD_BIN=$(cargo_tool worker-build "$WORKER_VERSION" worker-build)
npm_tools
export WASM_BINDGEN_BIN
export ESBUILD_BIN=$WORKER/node_modules/.bin/esbuild
export WASM_OPT_BIN=$WORKER/node_modules/.bin/wasm-opt
[[ ${1:-} == --tools-only ]] && { say "worker build tools ready"; exit 0; }

say "building the worker (release, wasm32)"
started=$SECONDS
# no DWARF in the shipped wasm (the workspace's release profile keeps line tables for native backtraces)
(cd "$WORKER" && PATH=${WASM_PATH_PREFIX:+$WASM_PATH_PREFIX:}$PATH CARGO_PROFILE_RELEASE_DEBUG=false \
  "$WORKER_BUILD_BIN" --release >&2)
wasm=$(ls "$OUT"/*.wasm 2>/dev/null | head -n 1)
[[ -f $OUT/index.js && -n $wasm ]] || die "worker-build wrote no index.js + .wasm into $OUT"
# wasm-opt here, not in worker-build (see edge-worker/Cargo.toml): only the
# features the module declares, so workerd's V8 can compile the result
# (about a minute on 2 cores, so its output is cached by the input's hash)
opt_cache=$ROOT/target/edge-worker-wasm-opt
key=$(sha256sum "$wasm" | cut -c1-32)
if [[ ! -f $opt_cache/$key.wasm ]]; then
  rm -rf "$opt_cache" && mkdir -p "$opt_cache"
  "$WASM_OPT_BIN" -O "$wasm" -o "$opt_cache/$key.wasm.tmp" && mv "$opt_cache/$key.wasm.tmp" "$opt_cache/$key.wasm"
fi
cp "$opt_cache/$key.wasm" "$wasm"
node -e 'new WebAssembly.Module(require("fs").readFileSync(process.argv[1]))' "$wasm" \
  || die "$wasm does not compile in V8"
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
say "worker built in $((SECONDS - started)) s: $OUT"
printf 'wasm %s: %d bytes raw (%d KiB), %d bytes gzipped (%d KiB)\n' \
  "${wasm#"$ROOT"/}" "$raw" $((raw / 1024)) "$gz" $((gz / 1024))
