#!/usr/bin/env bash
# A Docker engine that takes the compose files as they are, on a Debian 12 machine with no image
# registry: Debian 13's engine (26.1: Debian 12's 20.10 refuses `cap_add: [BPF, PERFMON]` as an
# unknown capability), compose v2 and buildx (BuildKit: build secrets, additional contexts), run
# with Debian 12's runc; and `debian:bookworm-slim` made with debootstrap when no registry can
# provide it. Idempotent: a second run takes a second. Called by `xtask/setup.sh`.
#
# Debian 13's packages are fetched with apt under a private state directory, so the system's
# sources stay Debian 12's.
set -euo pipefail

log() { printf '\033[1mdocker-setup:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31mdocker-setup failed:\033[0m %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root: it installs the engine and starts dockerd"

ENGINE_DIR=/usr/local/lib/nodescope-docker
PLUGINS=/usr/local/lib/docker/cli-plugins
STATE=/var/lib/nodescope-docker-apt
ENGINE_VERSION=26.1

engine_installed() {
  [ -x "$ENGINE_DIR/bin/dockerd" ] && "$ENGINE_DIR/bin/dockerd" --version 2>/dev/null | grep -q "version $ENGINE_VERSION" \
    && [ -x "$PLUGINS/docker-compose" ] && [ -x "$PLUGINS/docker-buildx" ] && command -v docker >/dev/null
}

# The mirror the system already uses (a deb822 or a one-line source), for suite trixie.
mirror() {
  local uri
  uri=$(grep -rhoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 | awk '{print $2}')
  [ -n "$uri" ] || uri=$(grep -rhoE '^deb +(\[[^]]*\] +)?\S+' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | grep -v security | head -n 1 | awk '{print $NF}')
  [ -n "$uri" ] || die "cannot find the Debian mirror in /etc/apt/sources.list(.d)"
  echo "$uri"
}

install_engine() {
  log "installing Docker $ENGINE_VERSION (Debian 13's engine, compose and buildx) with Debian 12's runc"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends runc iptables debootstrap ca-certificates >/dev/null \
    || die "apt-get install runc iptables debootstrap failed"
  mkdir -p "$STATE/lists/partial" "$STATE/cache/archives/partial" "$STATE/debs" "$STATE/root"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(mirror) trixie main" >"$STATE/sources.list"
  local apt=(-o "Dir::Etc::SourceList=$STATE/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State::Lists=$STATE/lists" -o "Dir::Cache=$STATE/cache" -o APT::Sandbox::User=root)
  apt-get "${apt[@]}" update -qq || die "cannot read Debian 13's package lists from $(mirror)"
  (cd "$STATE/debs" && apt-get "${apt[@]}" download -qq docker.io docker-cli containerd docker-compose docker-buildx tini) \
    || die "cannot download Debian 13's docker.io, docker-cli, containerd, docker-compose, docker-buildx, tini"
  for deb in "$STATE"/debs/*.deb; do dpkg-deb -x "$deb" "$STATE/root"; done
  mkdir -p "$ENGINE_DIR/bin" "$PLUGINS"
  local r="$STATE/root"
  install -m 0755 "$r/usr/sbin/dockerd" "$r/usr/sbin/docker-proxy" "$r/usr/bin/containerd" \
    "$r/usr/bin/containerd-shim-runc-v2" "$ENGINE_DIR/bin/"
  # dockerd looks for its init (`init: true`) as docker-init.
  install -m 0755 "$r/usr/bin/tini-static" "$ENGINE_DIR/bin/docker-init"
  install -m 0755 "$r/usr/libexec/docker/cli-plugins/docker-compose" "$r/usr/libexec/docker/cli-plugins/docker-buildx" "$PLUGINS/"
  command -v docker >/dev/null || install -m 0755 "$r/usr/bin/docker" /usr/local/bin/docker
  rm -rf "$STATE/root" "$STATE/debs"
}

engine_installed || install_engine

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: /var/log/nodescope-dockerd.log)"
  PATH="$ENGINE_DIR/bin:$PATH" nohup "$ENGINE_DIR/bin/dockerd" >/var/log/nodescope-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || die "dockerd did not come up: see /var/log/nodescope-dockerd.log"
fi

# The base image the Dockerfiles name. A registry provides it where there is one; here it is
# made from the Debian mirror, under the same tag, so the Dockerfiles build unchanged.
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  if ! docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    log "no registry: making debian:bookworm-slim with debootstrap (about a minute)"
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$rootfs" "$(mirror)" >/dev/null \
      || die "debootstrap bookworm from $(mirror) failed"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    # The sources of the official image: the release, its updates and its security archive.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $(mirror)
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $(mirror | sed 's|/debian/*$|/debian-security|')
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    tar -C "$rootfs" -c . | docker import - debian:bookworm-slim >/dev/null \
      || die "docker import of the debootstrapped bookworm failed"
    rm -rf "$rootfs"
  fi
fi

log "ready: $(docker version --format 'engine {{.Server.Version}}') , $(docker compose version --short | sed 's/^/compose /'), $(docker buildx version | awk '{print "buildx " $2}')"
