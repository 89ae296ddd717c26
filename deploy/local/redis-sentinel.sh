#!/usr/bin/env bash
# Opt-in: a Redis primary with two replicas and three Sentinels on 127.0.0.1 (AOF on).
#
#   deploy/local/redis-sentinel.sh up          start whatever is not running, wait until the Sentinels agree
#   deploy/local/redis-sentinel.sh down        stop Sentinels and servers (SIGTERM, SIGKILL after a timeout)
#   deploy/local/redis-sentinel.sh status      exit 0 when every process answers and a primary is known
#   deploy/local/redis-sentinel.sh url         print STREAMER_REDIS_URL (redis+sentinel://...)
#   deploy/local/redis-sentinel.sh primary     print the port of the primary the Sentinels name
#   deploy/local/redis-sentinel.sh kill PORT   SIGKILL the server on PORT (a crash; `up` restarts it)
#
# The first `up` writes the configuration (the first port is the primary); after that
# Redis and the Sentinels own it (a failover rewrites `replicaof` and the Sentinels'
# state), so a later `up` brings back the topology as it is now, e.g. a killed old
# primary rejoins as a replica of the promoted one. Independent of stack.sh's Redis.
# Data in $STREAMER_LOCAL_DIR/redis-sentinel/<port>/.
# Env: STREAMER_LOCAL_SENTINEL_REDIS_PORTS ("6380 6381 6382"),
#      STREAMER_LOCAL_SENTINEL_PORTS ("26379 26380 26381"),
#      STREAMER_LOCAL_SENTINEL_SERVICE (streamer), STREAMER_LOCAL_SENTINEL_DOWN_AFTER_MS (5000),
#      STREAMER_LOCAL_SENTINEL_FAILOVER_TIMEOUT_MS (60000),
#      STREAMER_LOCAL_REDIS_APPENDFSYNC (always; everysec to lose up to a second on a crash).
# shellcheck source=deploy/local/lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

read -r -a REDIS_PORTS <<<"${STREAMER_LOCAL_SENTINEL_REDIS_PORTS:-6380 6381 6382}"
read -r -a SENTINEL_PORTS <<<"${STREAMER_LOCAL_SENTINEL_PORTS:-26379 26380 26381}"
SERVICE="${STREAMER_LOCAL_SENTINEL_SERVICE:-streamer}"
DOWN_AFTER_MS="${STREAMER_LOCAL_SENTINEL_DOWN_AFTER_MS:-5000}"
FAILOVER_TIMEOUT_MS="${STREAMER_LOCAL_SENTINEL_FAILOVER_TIMEOUT_MS:-60000}"
APPENDFSYNC="${STREAMER_LOCAL_REDIS_APPENDFSYNC:-always}"
SENTINEL_DIR="$LOCAL_DIR/redis-sentinel"
QUORUM=$(((${#SENTINEL_PORTS[@]} / 2) + 1))

node_dir() { printf '%s/%s\n' "$SENTINEL_DIR" "$1"; }
server_pid() { redis_node_pid "$(node_dir "$1")" "$1"; }

write_server_config() {
  local port="$1" dir
  dir="$(node_dir "$port")"
  [[ -f "$dir/redis.conf" ]] && return 0
  mkdir -p "$dir"
  {
    cat <<EOF
# Written once by deploy/local/redis-sentinel.sh; Redis rewrites it on a failover.
bind $BIND_HOST
port $port
protected-mode yes
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
appendonly yes
appendfsync $APPENDFSYNC
appenddirname appendonlydir
save ""
replica-announce-ip $BIND_HOST
EOF
    if [[ "$port" != "${REDIS_PORTS[0]}" ]]; then
      printf 'replicaof %s %s\n' "$BIND_HOST" "${REDIS_PORTS[0]}"
    fi
  } >"$dir/redis.conf"
}

write_sentinel_config() {
  local port="$1" dir
  dir="$(node_dir "$port")"
  [[ -f "$dir/sentinel.conf" ]] && return 0
  mkdir -p "$dir"
  cat >"$dir/sentinel.conf" <<EOF
# Written once by deploy/local/redis-sentinel.sh; the Sentinel rewrites it (its state).
bind $BIND_HOST
port $port
protected-mode no
daemonize yes
pidfile $dir/sentinel.pid
logfile $dir/sentinel.log
dir $dir
sentinel announce-ip $BIND_HOST
sentinel monitor $SERVICE $BIND_HOST ${REDIS_PORTS[0]} $QUORUM
sentinel down-after-milliseconds $SERVICE $DOWN_AFTER_MS
sentinel failover-timeout $SERVICE $FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $SERVICE 1
EOF
}

primary_port() {
  # The primary a majority of the Sentinels name, as PORT.
  local port answer
  declare -A votes=()
  for port in "${SENTINEL_PORTS[@]}"; do
    answer="$(redis_cli "$port" sentinel get-master-addr-by-name "$SERVICE" 2>/dev/null | tr -d '\r' | sed -n 2p)"
    [[ -n "$answer" ]] && votes[$answer]=$((${votes[$answer]:-0} + 1))
  done
  for answer in "${!votes[@]}"; do
    if ((votes[$answer] >= QUORUM)); then
      printf '%s\n' "$answer"
      return 0
    fi
  done
  return 1
}

settled() {
  # The Sentinels agree on a primary that says it is one, every other running server
  # replicates from it with the link up, and each Sentinel sees the others and replicas.
  local primary port info
  primary="$(primary_port)" || return 1
  [[ "$(redis_cli "$primary" role 2>/dev/null | head -n1)" == master ]] || return 1
  for port in "${REDIS_PORTS[@]}"; do
    [[ "$port" == "$primary" ]] && continue
    server_pid "$port" >/dev/null || continue
    info="$(redis_cli "$port" info replication 2>/dev/null | tr -d '\r')"
    grep -qx "master_port:$primary" <<<"$info" || return 1
    grep -qx 'master_link_status:up' <<<"$info" || return 1
  done
  for port in "${SENTINEL_PORTS[@]}"; do
    info="$(redis_cli "$port" sentinel master "$SERVICE" 2>/dev/null | tr -d '\r')"
    [[ "$(awk 'p {print; exit} $0 == "num-other-sentinels" {p=1}' <<<"$info")" == $((${#SENTINEL_PORTS[@]} - 1)) ]] || return 1
    [[ "$(awk 'p {print; exit} $0 == "flags" {p=1}' <<<"$info")" == master ]] || return 1
  done
}

cmd_up() {
  with_lock redis-sentinel
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-sentinel >/dev/null 2>&1; then
    "$LOCAL_SCRIPTS_DIR/install-deps.sh" redis redis-cli redis-sentinel
  fi
  local port start=$SECONDS dir
  for port in "${REDIS_PORTS[@]}"; do
    server_pid "$port" >/dev/null && continue
    write_server_config "$port"
    dir="$(node_dir "$port")"
    start_redis_node redis-server "$dir/redis.conf" "$port" "$dir/redis.log"
  done
  for port in "${SENTINEL_PORTS[@]}"; do
    redis_node_pid "$(node_dir "$port")" "$port" sentinel >/dev/null && continue
    write_sentinel_config "$port"
    dir="$(node_dir "$port")"
    start_redis_node redis-sentinel "$dir/sentinel.conf" "$port" "$dir/sentinel.log"
  done
  wait_until 60 "every server and Sentinel to answer PING" all_pong "${REDIS_PORTS[@]}" "${SENTINEL_PORTS[@]}"
  wait_until 120 "the Sentinels to agree on a primary with its replicas in sync" settled
  log "primary on port $(primary_port), replicas and Sentinels ${SENTINEL_PORTS[*]} up in $((SECONDS - start))s; data in $SENTINEL_DIR"
}

cmd_down() {
  with_lock redis-sentinel
  local port any=0
  for port in "${SENTINEL_PORTS[@]}"; do
    stop_redis_node "$(node_dir "$port")" "$port" "sentinel $port" sentinel && any=1
  done
  for port in "${REDIS_PORTS[@]}"; do
    stop_redis_node "$(node_dir "$port")" "$port" "redis $port" && any=1
  done
  if ((any)); then log "stopped"; else log "not running"; fi
}

cmd_kill() {
  local port="${1:?usage: redis-sentinel.sh kill PORT}"
  kill_redis_node "$(node_dir "$port")" "$port" redis-server
}

cmd_status() {
  local port pid rc=0
  for port in "${REDIS_PORTS[@]}"; do
    if pid="$(server_pid "$port")"; then
      log "redis $port: pid $pid, role $(redis_cli "$port" role 2>/dev/null | head -n1 || true)"
    else
      log "redis $port: stopped"
      rc=3
    fi
  done
  for port in "${SENTINEL_PORTS[@]}"; do
    if pid="$(redis_node_pid "$(node_dir "$port")" "$port" sentinel)"; then
      log "sentinel $port: pid $pid"
    else
      log "sentinel $port: stopped"
      rc=3
    fi
  done
  if ((rc == 0)) && ! primary_port >/dev/null; then rc=1; fi
  return "$rc"
}

url() {
  local port hosts=()
  for port in "${SENTINEL_PORTS[@]}"; do hosts+=("$BIND_HOST:$port"); done
  printf 'redis+sentinel://%s/%s/0\n' "$(
    IFS=,
    echo "${hosts[*]}"
  )" "$SERVICE"
}

case "${1:-}" in
  up | start) cmd_up ;;
  down | stop) cmd_down ;;
  status) cmd_status ;;
  url) url ;;
  primary) primary_port || die "the Sentinels do not agree on a primary" ;;
  kill) cmd_kill "${2:-}" ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
