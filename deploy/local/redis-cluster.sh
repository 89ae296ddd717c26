#!/usr/bin/env bash
# A local 3-master Redis Cluster on 127.0.0.1:7001-7003 (no replicas), AOF on; opt-in
# with a replica per primary (STREAMER_LOCAL_REDIS_CLUSTER_REPLICAS=1, six nodes on
# 7001-7006 unless the ports are given).
#
#   deploy/local/redis-cluster.sh up       start the nodes, create the cluster once, wait for cluster_state:ok
#   deploy/local/redis-cluster.sh down     stop all nodes (SIGTERM, SIGKILL after a timeout)
#   deploy/local/redis-cluster.sh status   exit 0 when every node answers and the cluster is ok
#   deploy/local/redis-cluster.sh url      print the seed URL for STREAMER_REDIS_URL (redis+cluster://)
#   deploy/local/redis-cluster.sh kill PORT  SIGKILL the node on PORT (a crash; `up` restarts it,
#                                            and a primary's replica takes over in the meantime)
#
# Data stays in $STREAMER_LOCAL_DIR/redis-cluster/<port>/ (nodes.conf + AOF), so a
# later `up` brings the same cluster back (a restarted old primary rejoins as the
# replica of the node that took over). Independent of the single Redis of stack.sh.
# Env: STREAMER_LOCAL_REDIS_CLUSTER_PORTS ("7001 7002 7003", with replicas "7001 ... 7006"),
#      STREAMER_LOCAL_REDIS_CLUSTER_REPLICAS (0; 1 = a replica per primary, ports x 2),
#      STREAMER_LOCAL_REDIS_CLUSTER_NODE_TIMEOUT_MS (5000: how long until a replica takes over).
# shellcheck source=deploy/local/lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPLICAS="${STREAMER_LOCAL_REDIS_CLUSTER_REPLICAS:-0}"
[[ "$REPLICAS" =~ ^[0-9]+$ ]] || die "STREAMER_LOCAL_REDIS_CLUSTER_REPLICAS must be a number, got '$REPLICAS'"
DEFAULT_PORTS="7001 7002 7003"
((REPLICAS > 0)) && DEFAULT_PORTS="$(seq -s ' ' 7001 $((7000 + 3 * (REPLICAS + 1))))"
read -r -a PORTS <<<"${STREAMER_LOCAL_REDIS_CLUSTER_PORTS:-$DEFAULT_PORTS}"
((${#PORTS[@]} >= 3 * (REPLICAS + 1))) || die "${#PORTS[@]} ports for 3 primaries with $REPLICAS replicas each"
NODE_TIMEOUT_MS="${STREAMER_LOCAL_REDIS_CLUSTER_NODE_TIMEOUT_MS:-5000}"
CLUSTER_DIR="$LOCAL_DIR/redis-cluster"

node_dir() { printf '%s/%s\n' "$CLUSTER_DIR" "$1"; }
node_pid() { redis_node_pid "$(node_dir "$1")" "$1"; }
cluster_field() { redis_cli "$1" cluster info 2>/dev/null | tr -d '\r' | awk -F: -v k="$2" '$1 == k {print $2}'; }

start_node() {
  local port="$1" dir
  dir="$(node_dir "$port")"
  node_pid "$port" >/dev/null && return 0
  mkdir -p "$dir"
  cat >"$dir/redis.conf" <<EOF
# Written by deploy/local/redis-cluster.sh on every start.
bind $BIND_HOST
port $port
protected-mode yes
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout $NODE_TIMEOUT_MS
appendonly yes
appendfsync always
save ""
EOF
  start_redis_node redis-server "$dir/redis.conf" "$port" "$dir/redis.log"
}

all_ok() {
  # Every node sees the whole cluster ok; with replicas, each one is in sync.
  local port info replicas=0
  for port in "${PORTS[@]}"; do
    [[ "$(cluster_field "$port" cluster_state)" == ok ]] || return 1
    [[ "$(cluster_field "$port" cluster_known_nodes)" == "${#PORTS[@]}" ]] || return 1
    info="$(redis_cli "$port" info replication 2>/dev/null | tr -d '\r')"
    if grep -qx 'role:slave' <<<"$info"; then
      grep -qx 'master_link_status:up' <<<"$info" || return 1
      replicas=$((replicas + 1))
    fi
  done
  ((replicas == 3 * REPLICAS))
}

cmd_up() {
  with_lock redis-cluster
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    "$LOCAL_SCRIPTS_DIR/install-deps.sh" redis redis-cli
  fi
  local port start=$SECONDS
  for port in "${PORTS[@]}"; do start_node "$port"; done
  wait_until 60 "all cluster nodes to answer PING" all_pong "${PORTS[@]}"
  if [[ "$(cluster_field "${PORTS[0]}" cluster_known_nodes)" == 1 &&
    "$(cluster_field "${PORTS[0]}" cluster_slots_assigned)" == 0 ]]; then
    local seeds=()
    for port in "${PORTS[@]}"; do seeds+=("$BIND_HOST:$port"); done
    log "creating cluster ${seeds[*]}"
    redis-cli --cluster create "${seeds[@]}" --cluster-replicas "$REPLICAS" --cluster-yes </dev/null >"$CLUSTER_DIR/create.log" 2>&1 ||
      { cat "$CLUSTER_DIR/create.log" >&2; die "redis-cli --cluster create failed"; }
  fi
  wait_until 60 "cluster_state:ok on all nodes" all_ok
  log "cluster ok on ports ${PORTS[*]} in $((SECONDS - start))s; data in $CLUSTER_DIR"
}

cmd_down() {
  with_lock redis-cluster
  local port any=0
  for port in "${PORTS[@]}"; do
    stop_redis_node "$(node_dir "$port")" "$port" "redis-cluster node $port" && any=1
  done
  if ((any)); then log "stopped"; else log "not running"; fi
}

cmd_kill() {
  local port="${1:?usage: redis-cluster.sh kill PORT}"
  kill_redis_node "$(node_dir "$port")" "$port" "cluster node"
}

cmd_status() {
  local port pid rc=0
  for port in "${PORTS[@]}"; do
    if pid="$(node_pid "$port")"; then
      log "node $port: pid $pid, cluster_state $(cluster_field "$port" cluster_state || true)"
    else
      log "node $port: stopped"
      rc=3
    fi
  done
  ((rc == 0)) && ! all_ok && rc=1
  return "$rc"
}

case "${1:-}" in
  up | start) cmd_up ;;
  down | stop) cmd_down ;;
  status) cmd_status ;;
  kill) cmd_kill "${2:-}" ;;
  # redis+cluster:// makes the worker use redis-py's cluster client (streamer/state/store.py).
  url) printf 'redis+cluster://%s:%s/0\n' "$BIND_HOST" "${PORTS[0]}" ;;
  *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
