#!/usr/bin/env bash
# A local Redis Cluster for trying the chat on it and for the tests:
# 3 masters and 3 replicas of redis-server on free ports of 127.0.0.1,
# keeping nothing on disk, failing over after a short node timeout.
#
#   scripts/redis-cluster.sh start [DIR]   starts it; prints REDIS_URL=redis://127.0.0.1:<port>
#   scripts/redis-cluster.sh stop [DIR]    stops every node started in DIR
#
# DIR (default /tmp/chat-redis-cluster) holds each node's log, config and pid,
# and `ports`, the six ports (the first three were made masters).
# NODE_TIMEOUT (ms, default 2000) is the cluster-node-timeout: how long a
# silent master has before its replica takes over.
set -euo pipefail

command=${1:-}
dir=${2:-/tmp/chat-redis-cluster}
node_timeout=${NODE_TIMEOUT:-2000}

free_ports() {
  # Six ports P, each free with its cluster bus port P + 10000 (never 6379).
  python3 - <<'EOF'
import random, socket
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
ports = []
while len(ports) < 6:
    port = random.randint(20000, 29999)
    if port not in ports and port != 6379 and free(port) and free(port + 10000):
        ports.append(port)
print(" ".join(map(str, ports)))
EOF
}

cluster_ok() {
  # Every node sees the slots covered and three replicas, each in sync with its master.
  local synced=0
  for port in "$@"; do
    redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    [ "$(redis-cli -p "$port" cluster nodes | awk '$3 ~ /slave/' | wc -l)" = 3 ] || return 1
    if redis-cli -p "$port" info replication | grep -q '^master_link_status:up'; then
      synced=$((synced + 1))
    fi
  done
  [ "$synced" = 3 ]
}

start() {
  if [ -f "$dir/ports" ]; then
    echo "a cluster already runs in $dir (stop it first)" >&2
    exit 1
  fi
  mkdir -p "$dir"
  read -r -a ports <<<"$(free_ports)"
  for port in "${ports[@]}"; do
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
      --cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" \
      --cluster-node-timeout "$node_timeout" --save "" --appendonly no \
      --dir "$dir" --logfile "$dir/redis-$port.log" --pidfile "$dir/redis-$port.pid"
  done
  echo "${ports[*]}" >"$dir/ports"
  for port in "${ports[@]}"; do
    until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
  done
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") \
    --cluster-replicas 1 --cluster-yes >"$dir/create.log"
  for _ in $(seq 400); do
    cluster_ok "${ports[@]}" && break
    sleep 0.05
  done
  cluster_ok "${ports[@]}" || { echo "the cluster did not reach cluster_state:ok" >&2; exit 1; }
  echo "REDIS_URL=redis://127.0.0.1:${ports[0]}"
}

stop() {
  [ -f "$dir/ports" ] || return 0
  for port in $(cat "$dir/ports"); do
    pidfile="$dir/redis-$port.pid"
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  rm -f "$dir/ports" "$dir"/nodes-*.conf "$dir"/redis-*.pid
}

case "$command" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac
