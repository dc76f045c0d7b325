#!/usr/bin/env bash
# Webhook throughput: deployer-http's registry endpoint against Debian's `webhook`
# (adnanh/webhook) running `true`, both on loopback, driven by wrk with the same authenticated
# registry push envelope. Prints one table row per server; see ../README.md for the results.
#
#   crates/deployer-http/bench/run.sh          # 10 s per server, 2 wrk threads, 32 connections
#   DURATION=30s CONNECTIONS=64 THREADS=1 crates/deployer-http/bench/run.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
export TOKEN=bench-token-0123456789
export BODY="$here/../tests/fixtures/registry_push_reference.json"

need() {
    command -v "$1" >/dev/null && return
    echo "installing $2" >&2
    apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
}
need wrk wrk
need webhook webhook

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A loopback port nothing answers on.
free_port() {
    local port
    while :; do
        port=$(( (RANDOM % 20000) + 30000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# run NAME PID URL: prints "NAME | req/s | p50 | p99 | errors | idle RSS | peak RSS"
run() {
    local name=$1 pid=$2 url=$3 out="$work/wrk.$2"
    sleep 1
    local idle
    idle=$(rss_kb "$pid")
    # One short warm-up so first-connection costs stay out of the numbers.
    wrk -t1 -c4 -d1s -s "$here/post.lua" "$url" >/dev/null
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$here/post.lua" "$url" >"$out"
    local rps p50 p99 non2xx sockerr
    rps=$(awk '/^Requests\/sec/ {print $2}' "$out")
    p50=$(awk '$1 == "50%" {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$out")
    sockerr=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")
    printf '| %s | %s | %s | %s | %s non-2xx, %s socket | %s MB | %s MB |\n' \
        "$name" "$rps" "$p50" "$p99" "${non2xx:-0}" "${sockerr:-0}" \
        "$(awk -v k="$idle" 'BEGIN {printf "%.1f", k / 1024}')" \
        "$(awk -v k="$(hwm_kb "$pid")" 'BEGIN {printf "%.1f", k / 1024}')"
    cat "$out" >&2
}

(cd "$root" && cargo build --release -q -p deployer-http --example webhook_bench_server)

echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency -s bench/post.lua (body: $(wc -c <"$BODY") bytes)"
echo
echo "| server | requests/s | p50 | p99 | errors | RSS idle | RSS peak |"
echo "|---|---|---|---|---|---|---|"

"$root/target/release/examples/webhook_bench_server" 127.0.0.1:0 >"$work/deployer.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    addr=$(awk '/^listening on/ {print $3}' "$work/deployer.log")
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { echo "the bench server did not start" >&2; cat "$work/deployer.log" >&2; exit 1; }
run "deployer-http (registry endpoint)" "${pids[-1]}" "http://$addr/hooks/registry"
kill -INT "${pids[-1]}"
wait "${pids[-1]}" 2>/dev/null || true
events=$(grep '^queued' "$work/deployer.log" || echo "no summary")

cat >"$work/hooks.json" <<JSON
[{"id": "registry", "execute-command": "/bin/true", "response-message": "ok",
  "trigger-rule": {"match": {"type": "value", "value": "Bearer $TOKEN",
                             "parameter": {"source": "header", "name": "Authorization"}}}}]
JSON
port=$(free_port)
webhook -hooks "$work/hooks.json" -ip 127.0.0.1 -port "$port" -http-methods POST >"$work/webhook.log" 2>&1 &
pids+=($!)
wait_port "$port"
run "adnanh/webhook $(webhook -version | awk '{print $3}') running true" "${pids[-1]}" "http://127.0.0.1:$port/hooks/registry"
echo
echo "deployer-http events: $events"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
