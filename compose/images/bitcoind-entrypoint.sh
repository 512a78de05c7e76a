#!/bin/sh
# Runs bitcoind from the volume /opt/bitcoin that the extractor reads: the image's binary is
# copied there (a new file, by rename, when it changed: the running one stays intact for the
# extractor to finish with) and executed from there.
set -eu
if ! cmp -s /usr/local/bin/bitcoind /opt/bitcoin/bitcoind 2>/dev/null; then
  cp /usr/local/bin/bitcoind /opt/bitcoin/.bitcoind.new
  mv -f /opt/bitcoin/.bitcoind.new /opt/bitcoin/bitcoind
fi
exec /opt/bitcoin/bitcoind "$@"
