#!/usr/bin/env bash
# Runs `systemd-analyze verify` on every unit in compose/systemd/ (and on the extractor with
# each of its drop-ins), against the real binaries.
#
# Usage: compose/systemd/verify.sh [BIN_DIR]
#   BIN_DIR  directory holding extractor, logger, metrics, websocket, connectivity-check and fleet
#            (default: target/release under the repository root)
#
# verify checks that ExecStart= names an existing executable, so the units are copied to a
# temporary directory with /usr/local/bin/ replaced by BIN_DIR. systemd-analyze verify exits 0
# on many problems it only warns about (unknown keys, bad values it ignores), so any output
# counts as a failure, except the lines matched by HARMLESS below.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin_dir=${1:-$root/target/release}

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "verify.sh: systemd-analyze not found (Debian/Ubuntu: apt-get install systemd)" >&2
    exit 1
fi
if [[ ! -d $bin_dir ]]; then
    echo "verify.sh: no such directory: $bin_dir" >&2
    exit 1
fi
bin_dir=$(cd "$bin_dir" && pwd)

# Lines systemd-analyze may print that say nothing about our units:
#  - running where systemd is not PID 1 (containers, CI), it cannot talk to the manager or
#    read the running system's state;
#  - warnings located in units of the host (/lib, /usr/lib, /etc, /run) that verify loads for
#    ordering dependencies (network-online.target, ...): not ours to fix.
HARMLESS=(
    '^(/usr)?/lib/systemd/'
    '^/etc/systemd/'
    '^/run/systemd/'
    'Failed to connect to (the )?bus'
    'System has not been booted with systemd'
)
harmless_re=$(IFS='|'; echo "${HARMLESS[*]}")

units=(
    nodescope-extractor.service
    nodescope-logger.service
    nodescope-metrics.service
    nodescope-websocket.service
    nodescope-connectivity-check.service
    nodescope-fleet.service
)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Copies unit or drop-in $1 to $2 with the binaries' directory rewritten.
stage() {
    mkdir -p "$(dirname "$2")"
    sed "s#/usr/local/bin/#$bin_dir/#g" "$1" >"$2"
}

# systemd (252 at least) drops capability names it does not know without a word, even from
# verify: check every name in AmbientCapabilities= and CapabilityBoundingSet= of file $1.
check_capabilities() {
    local file=$1 name
    for name in $(sed -n 's/^\(AmbientCapabilities\|CapabilityBoundingSet\)=~\{0,1\}//p' "$file"); do
        if ! systemd-analyze capability "$name" >/dev/null 2>&1; then
            echo "$file: capability $name unknown to systemd"
        fi
    done
}

failed=0

# Verifies the units staged in directory $1 ($2 names the check in the report).
check() {
    local dir=$1 label=$2 unit=$3
    local exe out rc=0 bad
    exe=$(sed -n 's#^ExecStart=\([^ ]*\).*#\1#p' "$dir/$unit")
    if [[ ! -x $exe ]]; then
        echo "FAIL $label: $exe is missing or not executable (build it, or pass the bin directory)"
        failed=1
        return
    fi
    # The staging directory first on the unit path: that is how verify finds drop-ins
    # (the trailing colon keeps the default path after it).
    out=$(SYSTEMD_UNIT_PATH="$dir:" SYSTEMD_LOG_COLOR=0 \
        systemd-analyze verify --man=no "$dir/$unit" 2>&1) || rc=$?
    bad=$(grep -Ev "$harmless_re" <<<"$out" | grep -v '^$' || true)
    local file unknown=
    for file in "$dir/$unit" "$dir/$unit.d"/*.conf; do
        [[ -f $file ]] && unknown+=$(check_capabilities "$file")$'\n'
    done
    bad=$(printf '%s\n%s' "$bad" "$unknown" | grep -v '^$' || true)
    if [[ $rc -ne 0 || -n $bad ]]; then
        echo "FAIL $label (exit $rc):"
        sed 's/^/    /' <<<"${bad:-$out}"
        failed=1
    else
        echo "ok   $label"
    fi
    if [[ -n $out && $out != "$bad" ]]; then
        grep -E "$harmless_re" <<<"$out" | sed 's/^/    (ignored) /'
    fi
}

for unit in "${units[@]}"; do
    if [[ ! -f $here/$unit ]]; then
        echo "FAIL $unit: not found in $here"
        failed=1
        continue
    fi
    dir=$tmp/plain
    stage "$here/$unit" "$dir/$unit"
    check "$dir" "$unit" "$unit"
    # Each drop-in on its own, on top of the unit.
    if [[ -d $here/$unit.d ]]; then
        for conf in "$here/$unit.d"/*.conf; do
            name=$(basename "$conf")
            dir=$tmp/$unit-$name
            stage "$here/$unit" "$dir/$unit"
            stage "$conf" "$dir/$unit.d/$name"
            check "$dir" "$unit + $unit.d/$name" "$unit"
        done
    fi
done

if [[ $failed -ne 0 ]]; then
    echo "verify.sh: some units failed" >&2
    exit 1
fi
echo "verify.sh: all units pass systemd-analyze verify (binaries from $bin_dir)"
