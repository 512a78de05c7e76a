#!/bin/sh
# Runs bitcoind from the volume /opt/bitcoin that the extractor reads: the image's binary is
# copied there (a new file, by rename, when it changed: the running one stays intact for the
# extractor to finish with) and executed from there.
set -eu
if ! cmp -s /usr/local/bin/bitcoind /opt/bitcoin/bitcoind 2>/dev/null; then
  cp /usr/local/bin/bitcoind /opt/bitcoin/.bitcoind.new
  mv -f /opt/bitcoin/.bitcoind.new /opt/bitcoin/bitcoind
fi
# The way to the RPC cookie, traversable by bitcoind's group but not listable (0710): extractor
# rpc, given that group, opens the cookie (readable by the group with -rpccookieperms=group)
# and nothing else (bitcoind creates everything else 0600 or 0700). Not fatal: a datadir owned
# by someone else stays as it is (extractor rpc then says it cannot read the cookie).
datadir=/home/bitcoin/.bitcoin
case "${BITCOIN_CHAIN:-main}" in
  main) chain_dir=$datadir ;;
  test) chain_dir=$datadir/testnet3 ;;
  *) chain_dir=$datadir/$BITCOIN_CHAIN ;;
esac
mkdir -p -m 0710 "$chain_dir" 2>/dev/null || true
chmod 0710 "$datadir" "$chain_dir" 2>/dev/null \
  || echo "bitcoind-entrypoint: cannot make $chain_dir traversable by group bitcoin: extractor rpc cannot read the cookie" >&2
exec /opt/bitcoin/bitcoind "$@"
