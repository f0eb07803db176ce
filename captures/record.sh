#!/usr/bin/env bash
# Records every session in captures/ again (README.md, "`meshprov replay`"). Run from the
# repository root after `cargo build`:
#
#   bash captures/record.sh            # all of them
#   MESHD=0 bash captures/record.sh    # without the bluetooth-meshd sessions
#
# MESHPROV names the binary (default target/debug/meshprov). The bluetooth-meshd sessions need
# ../shared/peers/bluez-meshd (Debian's bluez-meshd and the shim described there).
set -euo pipefail
cd "$(dirname "$0")/.."
MESHPROV=${MESHPROV:-target/debug/meshprov}
SHARED=${MESHPROV_SHARED:-../shared}
out=captures
b=sim:tests/data/building.toml

rec() { # NAME ARGS...: one simulated provisioning, recorded with its secrets
  local name=$1; shift
  "$MESHPROV" provision "$@" --capture "$out/$name.pcapng" --capture-secrets >/dev/null
  echo "recorded $out/$name.pcapng"
}

rec adv-static-hmac    7b2c1a90-0000-4000-8000-000000000001 --radio $b --bearer adv
rec adv-output-cmac    7b2c1a90-0000-4000-8000-000000000002 --radio $b --bearer adv --auth output --algorithm cmac
rec adv-input-hmac     7b2c1a90-0000-4000-8000-000000000003 --radio $b --bearer adv --auth input --algorithm hmac
rec adv-oob-public-key 7b2c1a90-0000-4000-8000-000000000004 --radio $b --bearer adv \
  --auth oob-public-key:f465e43ff23d3f1b9dc7dfc04da8758184dbc966204796eccf0d6cf5e16500cc0201d048bcbbd899eeefc424164e33c201c2b010ca6b4d43a8a155cad8ecb279
rec adv-no-oob-cmac    7b2c1a90-0000-4000-8000-000000000005 --radio $b --bearer adv --auth none
rec gatt-static-hmac   7b2c1a90-0000-4000-8000-000000000006 --radio $b --bearer gatt
rec gatt-static-cmac   7b2c1a90-0000-4000-8000-000000000001 --radio $b --bearer gatt --algorithm cmac
rec gatt-output-cmac   7b2c1a90-0000-4000-8000-000000000002 --radio $b --bearer gatt --auth output
rec adv-lossy-output   7b2c1a90-0000-4000-8000-000000000002 --radio $b --bearer adv --auth output --loss 0.3 --seed 7
rec adv-cert           7b2c1a90-0000-4000-8000-0000000000c1 --radio sim:tests/data/captures/cert.toml \
  --bearer adv --auth cert --trust tests/data/captures/trust
"$MESHPROV" provision --all --radio sim:tests/data/captures/floor8.toml --bearer adv --concurrency 8 \
  --capture $out/adv-concurrent-8.pcapng --capture-secrets >/dev/null
echo "recorded $out/adv-concurrent-8.pcapng"

# bluetooth-meshd (a real, independently written node) over its unit socket, in real time.
if [ "${MESHD:-1}" != 0 ]; then
  meshd() { # NAME UUID JOIN_ARGS -- PROVISION_ARGS
    local name=$1 uuid=$2; shift 2
    local join=() prov=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do join+=("$1"); shift; done
    shift
    prov=("$@")
    local dir
    dir=$(mktemp -d)
    timeout 30 "$SHARED/peers/bluez-meshd/run_meshd_device.sh" "$dir" "$uuid" "${join[@]}" >"$dir/start.log" 2>&1
    local rc=0
    timeout 120 "$MESHPROV" provision "$uuid" --radio "meshd-unit:$dir" --bearer adv "${prov[@]}" \
      --capture "$out/$name.pcapng" --capture-secrets >/dev/null || rc=$?
    # shellcheck disable=SC2046
    kill $(cat "$dir/pids") 2>/dev/null || true
    rm -rf "$dir"
    [ $rc = 0 ] || { echo "meshd session $name failed ($rc)" >&2; exit 1; }
    echo "recorded $out/$name.pcapng"
  }
  meshd meshd-adv-no-oob 5a1d3c4e9b2f4a7c8d6e0f1a2b3c4d01 -- --auth none
  meshd meshd-adv-static 5a1d3c4e9b2f4a7c8d6e0f1a2b3c4d02 --caps static-oob --static-oob 00112233445566778899aabbccddeeff \
    -- --auth static:00112233445566778899aabbccddeeff
fi
# The sidecars are written 0600; in git they are 0644 (test-only keys).
chmod 0644 $out/*.keys.json
du -sh $out
