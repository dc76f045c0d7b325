#!/usr/bin/env bash
# Benchmarks deployer-proxy against nginx, all on 127.0.0.1, in one run:
#   (a) wrk -> nginx (static file)                      direct
#   (b) wrk -> deployer-proxy -> nginx                  this crate, workers = PROXY_THREADS
#   (b') the same, served on a multi-threaded Tokio runtime (workers = 0)
#   (c) wrk -> nginx reverse proxy (upstream keepalive) -> nginx
#   (d) wrk -> `deployer proxy run` -> nginx           the daemon's default: the proxy process,
#       its route set over the control socket
#   TLS: wrk over HTTPS to nginx and to the proxy process, same certificate and backend, on
#       keep-alive connections and with a new connection (a full handshake) per request
# plus the proxy's RSS idle and under 1,000 connections, and errors seen by wrk while the
# proxy switches 50 times between two nginx backends.
#
# Usage: crates/deployer-proxy/bench/run.sh
# Knobs (environment): DURATION=10s REPEAT=3 WRK_THREADS=2 CONNS=50 PROXY_THREADS=2
#                      SWITCHES=50 SWITCH_INTERVAL_MS=150
# Installs wrk and nginx with apt-get if missing. Uses free ports and a temp dir, both
# cleaned up on exit. Prints a Markdown table; copy it into ../README.md.
set -euo pipefail

DURATION=${DURATION:-10s}
REPEAT=${REPEAT:-3}
WRK_THREADS=${WRK_THREADS:-2}
CONNS=${CONNS:-50}
PROXY_THREADS=${PROXY_THREADS:-2}
SWITCHES=${SWITCHES:-50}
SWITCH_INTERVAL_MS=${SWITCH_INTERVAL_MS:-150}
MANY_CONNS=1000

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)

# --- tools -------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]})); then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# wrk -c1000 plus the proxy's 1,000 client and up to 1,000 backend sockets.
ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < 4 * MANY_CONNS)); then
    echo "warning: ulimit -n is $(ulimit -n); the $MANY_CONNS-connection step may fail" >&2
fi

echo "building the bench binary and deployer (release)" >&2
(cd "$repo" && cargo build --release --quiet -p deployer-proxy --example bench_proxy && cargo build --release --quiet -p deployer-bin)
PROXY_BIN=${CARGO_TARGET_DIR:-$repo/target}/release/examples/bench_proxy
DEPLOYER_BIN=${CARGO_TARGET_DIR:-$repo/target}/release/deployer

# --- scratch space and cleanup -------------------------------------------------------------
work=$(mktemp -d)
chmod 755 "$work" # nginx workers run as nobody and must read the static file
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

used_ports=" "
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 10000))
        [[ $used_ports == *" $port "* ]] && continue
        if ! ss -Hltn "sport = :$port" | grep -q .; then
            used_ports+="$port "
            echo "$port"
            return
        fi
    done
}

wait_for_port() {
    local port=$1 tries=200
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        ((--tries)) || { echo "nothing listens on $port" >&2; exit 1; }
        sleep 0.05
    done
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
BACKEND_A=$(free_port)
BACKEND_B=$(free_port)
NGINX_PROXY=$(free_port)
OUR_PROXY=$(free_port)
OUR_PROXY_RT=$(free_port)
OUR_PROCESS=$(free_port)
NGINX_TLS=$(free_port)
OUR_TLS=$(free_port)

mkdir -p "$work/www" "$work/tmp"
# One self-signed P-256 certificate for both TLS servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=bench.test -addext "subjectAltName=DNS:bench.test" \
    -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
chmod 644 "$work/tls.key"
head -c 256 /dev/zero | tr '\0' 'x' >"$work/www/index.html"
chmod -R a+rX "$work/www"

nginx_common="
daemon off;
events { worker_connections 8192; }
"
http_common="
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $work/tmp/body;
    proxy_temp_path $work/tmp/proxy;
    fastcgi_temp_path $work/tmp/fastcgi;
    uwsgi_temp_path $work/tmp/uwsgi;
    scgi_temp_path $work/tmp/scgi;
"

# Two backends (two server blocks of one single-worker nginx) serving the same small file.
cat >"$work/backend.conf" <<EOF
worker_processes 1;
pid $work/backend.pid;
$nginx_common
http {
    $http_common
    server { listen 127.0.0.1:$BACKEND_A; root $work/www; }
    server { listen 127.0.0.1:$BACKEND_B; root $work/www; }
}
EOF

# What nginx does with a request, on its plain and its TLS server alike.
proxy_location='
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }'

# nginx as a reverse proxy, as fair as we can make it: same worker count as the proxy's
# threads, keep-alive to the upstream, and the same X-Forwarded-* work.
cat >"$work/nginx-proxy.conf" <<EOF
worker_processes $PROXY_THREADS;
pid $work/nginx-proxy.pid;
$nginx_common
http {
    $http_common
    upstream app {
        server 127.0.0.1:$BACKEND_A;
        keepalive 1024;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_TLS ssl;
        ssl_certificate $work/tls.crt;
        ssl_certificate_key $work/tls.key;
        $proxy_location
    }
    server {
        listen 127.0.0.1:$NGINX_PROXY;
        $proxy_location
    }
}
EOF

"$NGINX" -e "$work/backend.err" -p "$work" -c "$work/backend.conf" &
pids+=($!)
"$NGINX" -e "$work/nginx-proxy.err" -p "$work" -c "$work/nginx-proxy.conf" &
pids+=($!)
"$PROXY_BIN" --listen "127.0.0.1:$OUR_PROXY_RT" --backend "127.0.0.1:$BACKEND_A" \
    --threads "$PROXY_THREADS" >"$work/proxy-rt.out" &
pids+=($!)
"$PROXY_BIN" --listen "127.0.0.1:$OUR_PROXY" --backend "127.0.0.1:$BACKEND_A" \
    --alt "127.0.0.1:$BACKEND_B" --workers "$PROXY_THREADS" --threads 1 \
    --switches "$SWITCHES" --interval-ms "$SWITCH_INTERVAL_MS" >"$work/proxy.out" &
proxy_pid=$!
pids+=("$proxy_pid")
# (d): the proxy process as `deployer run` starts it, driven over its control socket.
"$DEPLOYER_BIN" proxy run --socket "$work/proxy.sock" --state "$work/proxy-state.json" \
    >"$work/proxy-process.log" 2>&1 &
process_pid=$!
pids+=("$process_pid")
control() { "$DEPLOYER_BIN" proxy call --socket "$work/proxy.sock" "$1" >/dev/null; }
for _ in $(seq 1 200); do control '{"v":1,"op":"hello"}' 2>/dev/null && break; sleep 0.05; done
control "{\"v\":1,\"op\":\"set_route\",\"service\":\"bench\",\"route\":{\"listen\":\"127.0.0.1:$OUR_PROCESS\"}}"
control "{\"v\":1,\"op\":\"add_backend\",\"service\":\"bench\",\"backend\":{\"addr\":\"127.0.0.1:$BACKEND_A\"}}"
control "{\"v\":1,\"op\":\"set_route\",\"service\":\"bench-tls\",\"route\":{\"listen\":\"127.0.0.1:$OUR_TLS\",\"tls\":{\"cert\":\"$work/tls.crt\",\"key\":\"$work/tls.key\"}}}"
control "{\"v\":1,\"op\":\"add_backend\",\"service\":\"bench-tls\",\"backend\":{\"addr\":\"127.0.0.1:$BACKEND_A\"}}"

for port in "$BACKEND_A" "$BACKEND_B" "$NGINX_PROXY" "$OUR_PROXY" "$OUR_PROXY_RT" "$OUR_PROCESS" "$NGINX_TLS" "$OUR_TLS"; do
    wait_for_port "$port"
done

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/${1:-$proxy_pid}/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/${1:-$proxy_pid}/status"; }
rss_idle_kb=$(rss_kb)

# --- helpers -------------------------------------------------------------------------------
# wrk latency ("812.00us", "1.20ms", "2.01s") -> microseconds
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n
    }'
}
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
non2xx() { awk -F': *' '/Non-2xx or 3xx responses/ { print $2; f = 1 } END { if (!f) print 0 }' "$1"; }
socket_errors() {
    # "Socket errors: connect 0, read 0, write 0, timeout 0" -> sum (0 when wrk prints none)
    awk '/Socket errors/ { gsub(/,/, ""); s = $4 + $6 + $8 + $10 } END { print s + 0 }' "$1"
}

declare -A rps p50 p99 errs
run_wrk() { # label url round
    local out="$work/wrk-$1-$3.txt"
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency "$2/index.html" >"$out"
    rps[$1]+="$(awk '/^Requests\/sec:/ { print $2 }' "$out") "
    p50[$1]+="$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")") "
    p99[$1]+="$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")") "
    errs[$1]=$((${errs[$1]:-0} + $(non2xx "$out") + $(socket_errors "$out")))
    echo "  $1 round $3: $(awk '/^Requests\/sec:/ { print $2 }' "$out") req/s" >&2
}

# --- RSS with 1,000 idle keep-alive connections, on the fresh proxy (one request each) ------
# hold_connections MODE: "one-by-one" waits for each response before opening the next
# connection (the proxy needs one backend connection); "burst" sends all requests without
# waiting (the proxy opens as many backend connections as requests overlap).
hold_connections() {
    local held=() fd status answered
    for ((i = 0; i < MANY_CONNS; i++)); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$OUR_PROXY"
        printf 'GET /index.html HTTP/1.1\r\nHost: bench\r\n\r\n' >&"$fd"
        [[ $1 == one-by-one ]] && read -r -t 5 -u "$fd" status
        held+=("$fd")
    done
    for _ in $(seq 1 100); do # until every response waits in its client socket
        answered=$(ss -Htn state established "dport = :$OUR_PROXY" | awk '$1 > 0' | wc -l)
        ((answered >= MANY_CONNS)) && break
        sleep 0.1
    done
    sleep 0.5
    echo "$(rss_kb) $(ss -Htn state established "dport = :$OUR_PROXY" | wc -l) $(ls "/proc/$proxy_pid/fd" | wc -l)"
    for fd in "${held[@]}"; do exec {fd}>&-; done
}
echo "RSS with $MANY_CONNS held connections" >&2
read -r rss_held_kb held_open held_fds <<<"$(hold_connections one-by-one)"
sleep 1
read -r rss_burst_kb burst_open burst_fds <<<"$(hold_connections burst)"

# --- (a), (b), (c), interleaved so drift hits all three alike -----------------------------
labels=(direct deployer-proxy deployer-proxy-rt nginx-proxy deployer-process)
declare -A url=(
    [direct]="http://127.0.0.1:$BACKEND_A"
    [deployer-proxy]="http://127.0.0.1:$OUR_PROXY"
    [deployer-proxy-rt]="http://127.0.0.1:$OUR_PROXY_RT"
    [nginx-proxy]="http://127.0.0.1:$NGINX_PROXY"
    [deployer-process]="http://127.0.0.1:$OUR_PROCESS"
)
echo "throughput and latency: $REPEAT rounds x ${#labels[@]} targets x $DURATION" >&2
for label in "${labels[@]}"; do # warm-up: pools, caches
    wrk -t1 -c"$CONNS" -d1s "${url[$label]}/index.html" >/dev/null
done
for round in $(seq 1 "$REPEAT"); do
    for label in "${labels[@]}"; do run_wrk "$label" "${url[$label]}" "$round"; done
done

# --- TLS: keep-alive requests, and a handshake per request --------------------------------
declare -A tls_url=([nginx-tls]="https://127.0.0.1:$NGINX_TLS" [deployer-tls]="https://127.0.0.1:$OUR_TLS")
declare -A tls_rps tls_p99 tls_hs tls_errs
echo "TLS: $REPEAT rounds x 2 targets x 2 modes x $DURATION" >&2
for round in $(seq 1 "$REPEAT"); do
    for label in nginx-tls deployer-tls; do
        out="$work/wrk-$label-$round.txt"
        wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency "${tls_url[$label]}/index.html" >"$out"
        tls_rps[$label]+="$(awk '/^Requests\/sec:/ { print $2 }' "$out") "
        tls_p99[$label]+="$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")") "
        hs="$work/wrk-$label-hs-$round.txt"
        wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" -H "Connection: close" "${tls_url[$label]}/index.html" >"$hs"
        tls_hs[$label]+="$(awk '/^Requests\/sec:/ { print $2 }' "$hs") "
        tls_errs[$label]=$((${tls_errs[$label]:-0} + $(non2xx "$out") + $(non2xx "$hs")))
        echo "  $label round $round: $(awk '/^Requests\/sec:/ { print $2 }' "$out") req/s keep-alive, $(awk '/^Requests\/sec:/ { print $2 }' "$hs") handshakes/s" >&2
    done
done

# --- RSS under load from 1,000 connections ---------------------------------------------------
echo "RSS with $MANY_CONNS busy connections" >&2
many_out="$work/wrk-many.txt"
wrk -t"$WRK_THREADS" -c"$MANY_CONNS" -d"$DURATION" --latency "${url[deployer-proxy]}/index.html" >"$many_out" &
wrk_pid=$!
rss_many_kb=0
while kill -0 "$wrk_pid" 2>/dev/null; do
    sample=$(rss_kb)
    ((sample > rss_many_kb)) && rss_many_kb=$sample
    sleep 0.5
done
wait "$wrk_pid"
hwm_many_kb=$(hwm_kb)
many_rps=$(awk '/^Requests\/sec:/ { print $2 }' "$many_out")
many_errors=$(($(non2xx "$many_out") + $(socket_errors "$many_out")))
rss_after_kb=$(rss_kb)

echo "RSS of the proxy process with $MANY_CONNS busy connections" >&2
process_many_out="$work/wrk-process-many.txt"
wrk -t"$WRK_THREADS" -c"$MANY_CONNS" -d"$DURATION" --latency "${url[deployer-process]}/index.html" >"$process_many_out" &
wrk_pid=$!
rss_process_kb=0
while kill -0 "$wrk_pid" 2>/dev/null; do
    sample=$(rss_kb "$process_pid")
    ((sample > rss_process_kb)) && rss_process_kb=$sample
    sleep 0.5
done
wait "$wrk_pid"
process_many_errors=$(($(non2xx "$process_many_out") + $(socket_errors "$process_many_out")))

# --- 50 switches under load -----------------------------------------------------------------
echo "$SWITCHES switches under load" >&2
switch_secs=$(((SWITCHES * SWITCH_INTERVAL_MS + 999) / 1000 + 4))
switch_out="$work/wrk-switch.txt"
wrk -t"$WRK_THREADS" -c"$CONNS" -d"${switch_secs}s" --latency "${url[deployer-proxy]}/index.html" >"$switch_out" &
wrk_pid=$!
sleep 1
kill -USR1 "$proxy_pid"
wait "$wrk_pid"
for _ in $(seq 1 100); do grep -q '^switches=' "$work/proxy.out" && break; sleep 0.1; done
switch_summary=$(grep '^switches=' "$work/proxy.out" || echo "switches=? (no summary)")
switch_requests=$(awk '/requests in/ { print $1 }' "$switch_out")
switch_non2xx=$(non2xx "$switch_out")
switch_sockerr=$(grep -o 'Socket errors:.*' "$switch_out" || echo "Socket errors: none")
switch_sockerr_sum=$(socket_errors "$switch_out")

# --- report ---------------------------------------------------------------------------------
med() { tr ' ' '\n' <<<"$1" | grep . | median; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f MB", kb / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v ok="$1" 'BEGIN { print (ok ? "met" : "**missed**") }'; }

for label in "${labels[@]}"; do
    declare "m_rps_${label//-/_}=$(med "${rps[$label]}")"
    declare "m_p50_${label//-/_}=$(med "${p50[$label]}")"
    declare "m_p99_${label//-/_}=$(med "${p99[$label]}")"
done
thr_ratio=$(ratio "$m_rps_deployer_proxy" "$m_rps_nginx_proxy")
p99_ratio=$(ratio "$m_p99_deployer_proxy" "$m_p99_nginx_proxy")
thr_ratio_rt=$(ratio "$m_rps_deployer_proxy_rt" "$m_rps_nginx_proxy")
p99_ratio_rt=$(ratio "$m_p99_deployer_proxy_rt" "$m_p99_nginx_proxy")
thr_ratio_process=$(ratio "$m_rps_deployer_process" "$m_rps_nginx_proxy")
p99_ratio_process=$(ratio "$m_p99_deployer_process" "$m_p99_nginx_proxy")

cat <<EOF

Machine: $(nproc) cores (load average before the run: $load_before), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), nginx $("$NGINX" -v 2>&1 | cut -d/ -f2).
Load: \`wrk -t$WRK_THREADS -c$CONNS -d$DURATION --latency\` per target, $REPEAT interleaved rounds, medians shown; 256-byte static file; deployer-proxy with \`--workers $PROXY_THREADS\` (b) or on a $PROXY_THREADS-thread Tokio runtime (b'), nginx reverse proxy with $PROXY_THREADS workers, backend nginx with 1 worker.

| target | requests/s | p50 | p99 | errors (non-2xx + socket) |
|---|---|---|---|---|
| (a) nginx direct | $m_rps_direct | $(ms "$m_p50_direct") | $(ms "$m_p99_direct") | ${errs[direct]} |
| (b) deployer-proxy, $PROXY_THREADS workers | $m_rps_deployer_proxy | $(ms "$m_p50_deployer_proxy") | $(ms "$m_p99_deployer_proxy") | ${errs[deployer-proxy]} |
| (b') deployer-proxy on a $PROXY_THREADS-thread runtime | $m_rps_deployer_proxy_rt | $(ms "$m_p50_deployer_proxy_rt") | $(ms "$m_p99_deployer_proxy_rt") | ${errs[deployer-proxy-rt]} |
| (c) nginx reverse proxy | $m_rps_nginx_proxy | $(ms "$m_p50_nginx_proxy") | $(ms "$m_p99_nginx_proxy") | ${errs[nginx-proxy]} |
| (d) \`deployer proxy run\` (the default) | $m_rps_deployer_process | $(ms "$m_p50_deployer_process") | $(ms "$m_p99_deployer_process") | ${errs[deployer-process]} |

Per-round requests/s: direct [${rps[direct]% }], (b) [${rps[deployer-proxy]% }], (b') [${rps[deployer-proxy-rt]% }], nginx-proxy [${rps[nginx-proxy]% }].

| goal | measured | result |
|---|---|---|
| (d) throughput >= 100 % of nginx reverse proxy | $(awk -v r="$thr_ratio_process" 'BEGIN { printf "%.0f %%", r * 100 }') | $(verdict "$(awk -v r="$thr_ratio_process" 'BEGIN { print (r >= 1.0) }')") |
| (d) p99 <= 1.1x nginx reverse proxy | ${p99_ratio_process}x | $(verdict "$(awk -v r="$p99_ratio_process" 'BEGIN { print (r <= 1.1) }')") |
| (d) RSS <= 32 MB with $MANY_CONNS busy connections | $(mb "$rss_process_kb") (max sampled VmRSS; $process_many_errors errors) | $(verdict "$((rss_process_kb <= 32768))") |
| (b) throughput >= 90 % of nginx reverse proxy | $(awk -v r="$thr_ratio" 'BEGIN { printf "%.0f %%", r * 100 }') | $(verdict "$(awk -v r="$thr_ratio" 'BEGIN { print (r >= 0.9) }')") |
| (b) p99 <= 1.2x nginx reverse proxy | ${p99_ratio}x | $(verdict "$(awk -v r="$p99_ratio" 'BEGIN { print (r <= 1.2) }')") |
| (b') throughput >= 90 % of nginx reverse proxy | $(awk -v r="$thr_ratio_rt" 'BEGIN { printf "%.0f %%", r * 100 }') | $(verdict "$(awk -v r="$thr_ratio_rt" 'BEGIN { print (r >= 0.9) }')") |
| (b') p99 <= 1.2x nginx reverse proxy | ${p99_ratio_rt}x | $(verdict "$(awk -v r="$p99_ratio_rt" 'BEGIN { print (r <= 1.2) }')") |
| (b) RSS < 20 MB with $MANY_CONNS idle keep-alive connections, opened one by one | $(mb "$rss_held_kb") ($held_open client connections, $held_fds proxy fds; $(mb "$rss_idle_kb") before any load) | $(verdict "$((rss_held_kb < 20480))") |
| (b) RSS < 20 MB with $MANY_CONNS idle keep-alive connections, opened in a burst | $(mb "$rss_burst_kb") ($burst_open client connections, $burst_fds proxy fds) | $(verdict "$((rss_burst_kb < 20480))") |
| (b) RSS < 20 MB with $MANY_CONNS busy connections | $(mb "$rss_many_kb") (max sampled VmRSS while \`wrk -c$MANY_CONNS\` runs, after the throughput runs; VmHWM $(mb "$hwm_many_kb"); $(mb "$rss_after_kb") after) | $(verdict "$((rss_many_kb < 20480))") |
| (b) zero non-2xx and socket errors across $SWITCHES switches | $switch_requests requests, $switch_non2xx non-2xx, $switch_sockerr ($switch_summary) | $(verdict "$((switch_non2xx == 0 && switch_sockerr_sum == 0))") |

With $MANY_CONNS connections (\`wrk -t$WRK_THREADS -c$MANY_CONNS -d$DURATION\`): $many_rps requests/s, $many_errors errors.

TLS (same P-256 certificate, same backend; \`wrk -t$WRK_THREADS -c$CONNS -d$DURATION\`, medians of $REPEAT rounds; handshakes: the same with \`Connection: close\`, a full handshake per request):

| target | keep-alive requests/s | keep-alive p99 | handshakes/s | non-2xx |
|---|---|---|---|---|
| nginx | $(med "${tls_rps[nginx-tls]}") | $(ms "$(med "${tls_p99[nginx-tls]}")") | $(med "${tls_hs[nginx-tls]}") | ${tls_errs[nginx-tls]} |
| \`deployer proxy run\` | $(med "${tls_rps[deployer-tls]}") | $(ms "$(med "${tls_p99[deployer-tls]}")") | $(med "${tls_hs[deployer-tls]}") | ${tls_errs[deployer-tls]} |
EOF
