#!/usr/bin/env bash
# The main job, on a fresh machine: build deployer, create two versions of a web app from
# nothing (FROM scratch + static busybox), start a local registry whose push notifications
# reach `deployer run`, then push v2 while a client loop counts failed requests. Then, still
# under a client loop, the daemon is SIGKILLed and started again, the proxy process is upgraded
# to a new process, and the config is reloaded with a changed service. Cleans up.
#
# MEASURE=wrk runs wrk (installed if missing) through each of those three events instead of
# the curl loop, and prints its requests, non-2xx answers and socket errors.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# protobuf-compiler: the etcd client crate runs protoc in its build script.
scripts/install-deps.sh protobuf-compiler docker-registry busybox-static curl
docker info >/dev/null 2>&1 || { echo "The Docker engine is not reachable (DOCKER_HOST or /var/run/docker.sock)." >&2; exit 1; }

ports=(14500 14501 15000 18080)
for port in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port 127.0.0.1:$port is in use; the demo needs ${ports[*]}" >&2; exit 1
  fi
done

echo "==> building deployer (release)"
cargo build --release --locked -p deployer-bin
deployer="$root/target/release/deployer"

work=/tmp/deployer-demo
# The proxy runs as a process of its own that outlives the daemon: stop the demo's, also one a
# previous run left behind.
stop_proxy() {
  if [ -f "$work/proxy.sock.lock" ]; then kill -TERM "$(cat "$work/proxy.sock.lock")" 2>/dev/null; fi
  return 0
}
stop_proxy
rm -rf "$work"; mkdir -p "$work"
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
pids=()
cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  stop_proxy
  docker ps -aq --filter label=deployer.demo | xargs -r docker rm -f -v >/dev/null 2>&1
  docker images -q --filter label=deployer.demo | sort -u | xargs -r docker rmi -f >/dev/null 2>&1
  docker images --format '{{.Repository}}:{{.Tag}}' | grep '^127.0.0.1:15000/demo/app' | xargs -r docker rmi -f >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

build_image() { # version
  local ctx="$work/image-$1"
  mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/www"
  cp /bin/busybox "$ctx/rootfs/bin/busybox"
  echo "$1" > "$ctx/rootfs/www/index.html"
  echo ok > "$ctx/rootfs/www/health"
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
LABEL deployer.demo=1
EXPOSE 8080
CMD ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
DOCKERFILE
  docker build -q -t "deployer-demo/app:$1" "$ctx" >/dev/null
}

echo "==> building demo images v1 and v2 from scratch + busybox"
build_image v1
build_image v2

echo "==> starting a local registry on 127.0.0.1:15000 (notifications -> deployer)"
cat > "$work/registry.yml" <<REGISTRY
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $work/registry } }
http: { addr: 127.0.0.1:15000, secret: demo }
notifications:
  endpoints:
    - name: deployer
      url: http://127.0.0.1:14500/hooks/registry
      headers: { Authorization: ["Bearer $token"] }
      timeout: 1s
      threshold: 5
      backoff: 1s
REGISTRY
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
until curl -fsS -o /dev/null http://127.0.0.1:15000/v2/; do sleep 0.1; done

push() { # version
  docker tag "deployer-demo/app:$1" 127.0.0.1:15000/demo/app:latest
  docker push -q 127.0.0.1:15000/demo/app:latest >/dev/null
}

echo "==> pushing v1 and starting deployer"
push v1
# A copy, so the reload below can change it.
cp examples/demo.toml "$work/demo.toml"
start_daemon() {
  DEMO_REGISTRY_TOKEN="$token" "$deployer" run --config "$work/demo.toml" >>"$work/deployer.log" 2>&1 &
  daemon=$!
  pids+=("$daemon")
}
start_daemon
for _ in $(seq 1 300); do
  [ "$(curl -fsS --max-time 1 http://127.0.0.1:18080/ 2>/dev/null)" = v1 ] && break
  sleep 0.1
done
[ "$(curl -fsS http://127.0.0.1:18080/)" = v1 ] || { echo "v1 never came up; deployer log:" >&2; cat "$work/deployer.log" >&2; exit 1; }
echo "    v1 serves on http://127.0.0.1:18080"

echo "==> client loop running; pushing v2 (the registry's notification triggers the deploy)"
: >"$work/responses"
( while [ ! -e "$work/stop" ]; do
    curl -sS --max-time 2 http://127.0.0.1:18080/ 2>/dev/null || echo FAILED
  done >>"$work/responses" ) &
loop=$!
sleep 1
push v2
for _ in $(seq 1 300); do
  grep -q '^v2$' "$work/responses" && break
  sleep 0.1
done
sleep 2
touch "$work/stop"; wait "$loop"

# Let the old generation finish draining, so status and history show the finished deploy.
for _ in $(seq 1 200); do
  "$deployer" status --admin 127.0.0.1:14501 --json | grep -q '"state":"idle"' && break
  sleep 0.1
done

total=$(wc -l <"$work/responses")
failed=$(grep -cv '^v[12]$' "$work/responses" || true)
sequence=$(uniq "$work/responses" | tr '\n' ' ')
echo
echo "==> deployer status"
"$deployer" status --admin 127.0.0.1:14501
echo
echo "==> deployer history"
"$deployer" history --admin 127.0.0.1:14501
echo
echo "requests: $total   failed: $failed   versions seen in order: $sequence"
if [ "$failed" -ne 0 ] || ! grep -q '^v2$' "$work/responses"; then
  echo "the switch was not clean; deployer log:" >&2; tail -50 "$work/deployer.log" >&2; exit 1
fi
echo "zero failed requests across the switch from v1 to v2"

# --- the daemon and the proxy themselves change, under load ------------------------------
if [ "${MEASURE:-}" = wrk ]; then scripts/install-deps.sh wrk; fi
admin_ready() {
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null --max-time 1 http://127.0.0.1:14501/readyz 2>/dev/null && return 0
    sleep 0.1
  done
  echo "the admin API did not come back; deployer log:" >&2; tail -50 "$work/deployer.log" >&2; exit 1
}
restart_daemon() {
  kill -KILL "$daemon"; wait "$daemon" 2>/dev/null || true
  start_daemon
  admin_ready
}
upgrade_proxy() { "$deployer" proxy upgrade --socket "$work/proxy.sock"; }
reload_changed() {
  sed -i 's/^interval = "200ms"/interval = "300ms"/' "$work/demo.toml"
  "$deployer" reload --admin 127.0.0.1:14501
}
under_load() { # name command
  local name=$1 failed
  shift
  if [ "${MEASURE:-}" = wrk ]; then
    wrk -t2 -c10 -d8s --latency http://127.0.0.1:18080/ >"$work/wrk-$name.txt" &
    local load=$!
    sleep 2; "$@" >/dev/null; wait "$load"
    local requests non2xx socket
    requests=$(awk '/requests in/ { print $1 }' "$work/wrk-$name.txt")
    non2xx=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2; f = 1 } END { if (!f) print 0 }' "$work/wrk-$name.txt")
    socket=$(grep -o 'Socket errors:.*' "$work/wrk-$name.txt" || echo "Socket errors: none")
    echo "    $name under wrk -t2 -c10 -d8s: $requests requests, $non2xx non-2xx, $socket"
    failed=$non2xx
    [[ $socket == "Socket errors: none" ]] || failed=$((failed + 1))
  else
    : >"$work/responses-$name"; rm -f "$work/stop"
    ( while [ ! -e "$work/stop" ]; do
        curl -sS --max-time 2 http://127.0.0.1:18080/ 2>/dev/null || echo FAILED
      done >>"$work/responses-$name" ) &
    local load=$!
    sleep 1; "$@" >/dev/null; sleep 2
    touch "$work/stop"; wait "$load"
    failed=$(grep -cv '^v2$' "$work/responses-$name" || true)
    echo "    $name: $(wc -l <"$work/responses-$name") requests, $failed failed"
  fi
  if [ "$failed" -ne 0 ]; then
    echo "requests failed during $name; deployer log:" >&2; tail -50 "$work/deployer.log" >&2; exit 1
  fi
}
echo
echo "==> SIGKILL the daemon and start it again, upgrade the proxy process, reload a changed service"
under_load "daemon-SIGKILL-and-restart" restart_daemon
under_load "proxy-upgrade" upgrade_proxy
under_load "reload-with-a-changed-service" reload_changed
echo "zero failed requests while the daemon was killed and restarted, the proxy upgraded and the config reloaded"
