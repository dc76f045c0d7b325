#!/usr/bin/env bash
# The one command that runs every test of deployer on a fresh machine:
# formatting, lints (warnings are errors), and all unit, property and integration tests,
# including those against the real Docker engine, a real registry and real etcd (each test
# starts what it needs on free loopback ports and removes what it created).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh protobuf-compiler etcd-server docker-registry busybox-static curl

if ! docker info >/dev/null 2>&1; then
  echo "The Docker engine is not reachable: the integration tests need it (DOCKER_HOST or /var/run/docker.sock)." >&2
  exit 1
fi

# Everything tests create carries the label deployer.test; sweep leftovers before and after.
sweep() {
  docker ps -aq --filter label=deployer.test | xargs -r docker rm -f -v >/dev/null 2>&1 || true
  docker images -q --filter label=deployer.test | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true
  docker network ls -q --filter label=deployer.test | xargs -r docker network rm >/dev/null 2>&1 || true
  docker volume ls -q --filter label=deployer.test | xargs -r docker volume rm >/dev/null 2>&1 || true
}
sweep
trap sweep EXIT

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast
