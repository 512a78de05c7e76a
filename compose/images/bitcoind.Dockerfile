# A USDT-enabled bitcoind for nodescope, run as the unprivileged user `bitcoin`.
#
# BITCOIN_SOURCE chooses the release:
# - download (default): the official release of BITCOIN_VERSION, checked against the release's
#   SHA256SUMS and, when given, the pinned BITCOIN_SHA256;
# - local: a tarball from the build context `bitcoin-release` (a directory holding
#   bitcoin-<version>-*x86_64-linux-gnu.tar.gz and the SHA256SUMS that lists it), e.g.
#   `--build-context bitcoin-release=../shared/bitcoin-core`.
# Either way the build fails when the binary carries no USDT tracepoints.
#
# At start the binary is copied into the volume /opt/bitcoin (shared read-only with the
# extractor), then run from there: the extractor attaches to that file, and after an image
# upgrade it sees the new file appear beside the old one and follows it.
ARG BITCOIN_SOURCE=download

FROM debian:bookworm-slim AS fetch
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl binutils \
 && rm -rf /var/lib/apt/lists/*

FROM fetch AS download
ARG BITCOIN_VERSION=30.0
# The release's SHA256 to insist on (recommended: pin it from a SHA256SUMS you verified with the
# builders' signatures). Without it the tarball is checked against the SHA256SUMS published
# beside it, as xtask/setup.sh does.
ARG BITCOIN_SHA256=
WORKDIR /release
RUN set -eu; \
    tarball="bitcoin-$BITCOIN_VERSION-x86_64-linux-gnu.tar.gz"; \
    base="https://bitcoincore.org/bin/bitcoin-core-$BITCOIN_VERSION"; \
    curl -fsSLO "$base/$tarball"; \
    curl -fsSLO "$base/SHA256SUMS"; \
    grep " $tarball\$" SHA256SUMS | sha256sum -c -; \
    if [ -n "$BITCOIN_SHA256" ]; then echo "$BITCOIN_SHA256  $tarball" | sha256sum -c -; fi; \
    tar -xzf "$tarball" --strip-components=1; rm "$tarball" SHA256SUMS

FROM fetch AS local
ARG BITCOIN_VERSION=30.0
WORKDIR /release
RUN --mount=from=bitcoin-release,target=/context set -eu; \
    tarball=$(cd /context && ls bitcoin-"$BITCOIN_VERSION"-*x86_64-linux-gnu.tar.gz | head -n 1); \
    [ -n "$tarball" ] || { echo "no bitcoin-$BITCOIN_VERSION-*x86_64-linux-gnu.tar.gz in the bitcoin-release context" >&2; exit 1; }; \
    (cd /context && grep " $tarball\$" SHA256SUMS | sha256sum -c -); \
    tar -xzf "/context/$tarball" --strip-components=1

FROM ${BITCOIN_SOURCE} AS release
RUN set -eu; \
    notes=$(readelf -n bin/bitcoind | grep -c 'Provider:' || true); \
    [ "$notes" -gt 0 ] || { echo "bin/bitcoind has no USDT tracepoints: nodescope cannot trace it (build with -DWITH_USDT=ON)" >&2; exit 1; }; \
    echo "bitcoind carries $notes USDT tracepoints"

FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
# The libraries a dynamically linked build needs (the official release needs none of them); the
# user and its group, whose id is fixed: the RPC extractor's container is given it to read the
# cookie (-rpccookieperms=group).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libevent-2.1-7 libevent-extra-2.1-7 libevent-pthreads-2.1-7 \
      libsqlite3-0 libzmq5 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10002 bitcoin \
 && useradd --uid 10002 --gid bitcoin --create-home --shell /usr/sbin/nologin bitcoin \
 && mkdir -p /opt/bitcoin /home/bitcoin/.bitcoin && chown bitcoin:bitcoin /opt/bitcoin /home/bitcoin/.bitcoin
COPY --from=release /release/bin/bitcoind /release/bin/bitcoin-cli /usr/local/bin/
COPY --chmod=0755 compose/images/bitcoind-entrypoint.sh /usr/local/bin/bitcoind-entrypoint
USER bitcoin
VOLUME ["/home/bitcoin/.bitcoin", "/opt/bitcoin"]
ENTRYPOINT ["/usr/local/bin/bitcoind-entrypoint"]
CMD ["-regtest", "-printtoconsole"]
