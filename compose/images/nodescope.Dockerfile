# The nodescope image: every binary (extractor, logger, metrics, websocket, connectivity-check)
# on debian:bookworm-slim, run as the unprivileged user `nodescope` (the extractor's service
# runs as root with its few capabilities: see docker-compose.yml).
#
# BINARIES chooses where the binaries come from:
# - source (default; `cargo xtask images`): built here, with the toolchain exactly as
#   xtask/setup.sh sets it up (Debian's rustc, which also compiles the eBPF side, and bpf-linker
#   against Debian's LLVM). Fetching crates needs a CA bundle your network accepts: pass it as
#   the build secret `cacert` (e.g. `--secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt`);
#   it is used for the build only, never stored in an image.
# - host: copied from target/release of the build context (built by `cargo build --release` on
#   a machine set up by xtask/setup.sh), which is how the tests build it in minutes.
ARG BINARIES=source

FROM debian:bookworm-slim AS source
ENV DEBIAN_FRONTEND=noninteractive CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends rustc-web cargo-web rust-web-src libstd-rust-web-dev \
      systemtap-sdt-dev binutils gcc libc6-dev pkg-config ca-certificates \
 && llvm=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p') \
 && apt-get install -y --no-install-recommends "llvm-$llvm-dev" libpolly-"$llvm"-dev zlib1g-dev libzstd-dev \
 && echo "$llvm" >/llvm-major \
 && rm -rf /var/lib/apt/lists/*
# extractor/build.rs runs the eBPF build as `rustup run debian-ebpf cargo ...`; Debian's compiler
# is the only one here, so the shim runs it directly.
RUN printf '#!/bin/sh\n[ "$1" = run ] && shift 2 && exec "$@"\necho "rustup shim: only \\"rustup run <toolchain> <command>\\"" >&2; exit 1\n' \
      >/usr/local/bin/rustup && chmod 0755 /usr/local/bin/rustup
RUN --mount=type=secret,id=cacert \
    CARGO_HTTP_CAINFO=$([ -s /run/secrets/cacert ] && echo /run/secrets/cacert || echo /etc/ssl/certs/ca-certificates.crt) \
    LLVM_PREFIX=/usr/lib/llvm-$(cat /llvm-major) \
    cargo install bpf-linker --version 0.13.0 --locked --no-default-features --features "llvm-$(cat /llvm-major)"
WORKDIR /src
COPY . .
RUN --mount=type=secret,id=cacert \
    --mount=type=cache,target=/src/target \
    CARGO_HTTP_CAINFO=$([ -s /run/secrets/cacert ] && echo /run/secrets/cacert || echo /etc/ssl/certs/ca-certificates.crt) \
    cargo build --release --locked -p extractor -p nodescope-logger -p nodescope-metrics \
      -p nodescope-websocket -p nodescope-connectivity -p nodescope-fleet --bins \
 && mkdir -p /out && cp target/release/extractor target/release/logger target/release/metrics \
      target/release/websocket target/release/connectivity-check target/release/fleet /out/

FROM debian:bookworm-slim AS host
COPY target/release/extractor target/release/logger target/release/metrics \
     target/release/websocket target/release/connectivity-check target/release/fleet /out/

FROM ${BINARIES} AS binaries

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin nodescope
COPY --from=binaries /out/ /usr/local/bin/
USER nodescope
# Tools listen on every interface inside their container; compose publishes them on 127.0.0.1.
ENV NODESCOPE_METRICS_LISTEN=0.0.0.0:8282 \
    NODESCOPE_WEBSOCKET_LISTEN=0.0.0.0:47482 \
    NODESCOPE_CONNECTIVITY_LISTEN=0.0.0.0:18282 \
    NODESCOPE_FLEET_LISTEN=0.0.0.0:9383
CMD ["logger"]
