#!/usr/bin/env bash
# The local redis-server on 127.0.0.1 with AOF persistence (appendfsync always).
#
#   deploy/local/redis.sh up        start (daemonized, pidfile) and wait for PONG
#   deploy/local/redis.sh down      SIGTERM (redis fsyncs the AOF), SIGKILL after a timeout
#   deploy/local/redis.sh restart   down + up, data kept (reloaded from the AOF)
#   deploy/local/redis.sh kill      SIGKILL, no shutdown (crash for fault tests)
#   deploy/local/redis.sh status    exit 0 running and answering, 1 not answering, 3 stopped
#   deploy/local/redis.sh cli ...   redis-cli against this server
#
# up and down are idempotent. Layout (STREAMER_LOCAL_DIR, default <repo>/.local):
#   redis/redis.conf  written on every `up`;  redis/data/  AOF files;
#   redis/redis.log;  redis/redis.pid
# Env: STREAMER_LOCAL_REDIS_PORT (6379), STREAMER_LOCAL_REDIS_STOP_TIMEOUT (30 s).
# shellcheck source=deploy/local/lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REDIS_DIR="$LOCAL_DIR/redis"
REDIS_CONF="$REDIS_DIR/redis.conf"
REDIS_PIDFILE="$REDIS_DIR/redis.pid"
STOP_TIMEOUT="${STREAMER_LOCAL_REDIS_STOP_TIMEOUT:-30}"

ensure_redis() {
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    "$LOCAL_SCRIPTS_DIR/install-deps.sh" redis redis-cli
  fi
}

rcli() { redis-cli -h "$BIND_HOST" -p "$REDIS_PORT" "$@"; }

running_pid() {
  # redis-server renames its process to "redis-server 127.0.0.1:PORT".
  pid_from_file "$REDIS_PIDFILE" "redis-server $BIND_HOST:$REDIS_PORT"
}

write_config() {
  mkdir -p "$REDIS_DIR/data"
  cat >"$REDIS_CONF" <<EOF
# Written by deploy/local/redis.sh on every start; edit the script, not this file.
bind $BIND_HOST
port $REDIS_PORT
protected-mode yes
daemonize yes
pidfile $REDIS_PIDFILE
logfile $REDIS_DIR/redis.log
loglevel notice
dir $REDIS_DIR/data

# Durability: AOF, fsync at every write (docs/ARCHITECTURE.md, exactly-once point 7).
# RDB snapshots off (the AOF is the source).
appendonly yes
appendfsync always
appenddirname appendonlydir
aof-use-rdb-preamble yes
save ""
# A rewrite writes the whole dataset while every write still waits for its fsync, which
# stalls Redis for seconds (measured: docs/BENCHMARKS.md, "Method and caveats"). Rewrite
# only once the AOF has grown by 1 GB and doubled, rather than at every doubling from 64 MB.
auto-aof-rewrite-min-size 1gb
EOF
}

wait_pong() {
  local deadline=$((SECONDS + ${1:-30}))
  while ((SECONDS < deadline)); do
    [[ "$(rcli ping 2>/dev/null)" == PONG ]] && return 0
    sleep 0.2
  done
  return 1
}

cmd_up() {
  with_lock redis
  ensure_redis
  local pid start=$SECONDS
  if pid="$(running_pid)"; then
    wait_pong 30 || die "redis (pid $pid) does not answer PING on $BIND_HOST:$REDIS_PORT"
    log "already running (pid $pid) on $BIND_HOST:$REDIS_PORT"
    return 0
  fi
  rm -f "$REDIS_PIDFILE"
  if port_open "$REDIS_PORT"; then
    die "port $BIND_HOST:$REDIS_PORT is already in use by another process ($(port_owner "$REDIS_PORT")); stop it or set STREAMER_LOCAL_REDIS_PORT"
  fi
  write_config
  # Daemonizes itself (stdio to /dev/null) and writes the pidfile.
  redis-server "$REDIS_CONF" </dev/null >>"$REDIS_DIR/redis.log" 2>&1 9>&- ||
    { tail -n 20 "$REDIS_DIR/redis.log" >&2; die "redis-server failed to start"; }
  if ! wait_pong 60; then
    tail -n 20 "$REDIS_DIR/redis.log" >&2
    die "redis not answering on $BIND_HOST:$REDIS_PORT; log: $REDIS_DIR/redis.log"
  fi
  pid="$(running_pid)" || die "redis answers but $REDIS_PIDFILE names no redis-server process"
  log "started (pid $pid) on $BIND_HOST:$REDIS_PORT in $((SECONDS - start))s; AOF in $REDIS_DIR/data"
}

cmd_down() {
  with_lock redis
  local pid
  if pid="$(running_pid)"; then
    log "stopping (pid $pid)"
    stop_pid "$pid" redis "$STOP_TIMEOUT"
    rm -f "$REDIS_PIDFILE"
    log "stopped"
  else
    rm -f "$REDIS_PIDFILE"
    log "not running"
  fi
}

cmd_kill() {
  with_lock redis
  local pid
  if pid="$(running_pid)"; then
    log "killing (SIGKILL, pid $pid)"
    kill_pid "$pid" redis
    rm -f "$REDIS_PIDFILE"
  else
    log "not running"
  fi
}

cmd_status() {
  local pid
  if ! pid="$(running_pid)"; then
    log "stopped"
    return 3
  fi
  if [[ "$(rcli ping 2>/dev/null)" == PONG ]]; then
    log "running (pid $pid) on $BIND_HOST:$REDIS_PORT; data $REDIS_DIR/data; log $REDIS_DIR/redis.log"
    return 0
  fi
  log "running (pid $pid) but not answering on $BIND_HOST:$REDIS_PORT"
  return 1
}

case "${1:-}" in
  up | start) cmd_up ;;
  down | stop) cmd_down ;;
  restart) cmd_down && cmd_up ;;
  kill) cmd_kill ;;
  status) cmd_status ;;
  cli)
    shift
    rcli "$@"
    ;;
  *)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
