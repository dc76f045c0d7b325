#!/usr/bin/env bash
# Checks the admin API against its own OpenAPI document with schemathesis: every operation,
# positive and negative inputs, every check. The API is served by
# crates/deployer-http/examples/admin_fake_server.rs (a real driver over the core's fakes), so
# no Docker is needed.
#
# Usage: scripts/schemathesis.sh [extra schemathesis run options]
# Environment: VENV (default /tmp/deployer-schemathesis-venv), CARGO_TARGET_DIR (cargo's default
# otherwise), MAX_EXAMPLES (default 50).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-/tmp/deployer-schemathesis-venv}
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet schemathesis
fi

cargo build --quiet -p deployer-http --example admin_fake_server
target=${CARGO_TARGET_DIR:-target}
token=admin-token-0123456789
log=$(mktemp)
TOKEN=$token "$target/debug/examples/admin_fake_server" 127.0.0.1:0 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q '^listening on ' "$log" && break
  sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$log")
[ -n "$addr" ] || { echo "the fake admin server did not start:" >&2; cat "$log" >&2; exit 1; }
# Let the driver recover its services (readyz) and deploy the first builds.
sleep 1

# One exception, for one operation: a deploy's `image` must be a reference of the repository
# the service in the path tracks, which no schema can say. A string the document allows may
# therefore be refused with 400 (`wrong_repository`, or not a reference at all), and that
# refusal is right.
config=$(mktemp --suffix=.toml)
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$log" "$config"' EXIT
cat >"$config" <<'TOML'
[[operations]]
include-path = "/api/v1/services/{name}/deploy"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]
TOML

# From a scratch directory: schemathesis leaves a .schemathesis cache where it runs.
cd "$(dirname "$config")"
"$venv/bin/schemathesis" --config-file "$config" run "http://$addr/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "${MAX_EXAMPLES:-50}" \
  --workers 1 \
  --generation-database none \
  "$@"
