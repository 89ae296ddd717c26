# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this
# Shared settings and helpers of the deploy/local scripts. Sourced, not run.
#
# Environment (all optional):
#   STREAMER_LOCAL_DIR                    logs, data, pidfiles   (default: <repo>/.local)
#   STREAMER_LOCAL_CACHE_DIR              downloaded Kafka jars  (default: <repo>/.cache)
#   STREAMER_LOCAL_KAFKA_PORT             broker listener        (default: 9092)
#   STREAMER_LOCAL_KAFKA_CONTROLLER_PORT  KRaft controller       (default: 9093)
#   STREAMER_LOCAL_REDIS_PORT             redis-server           (default: 6379)

set -euo pipefail

LOCAL_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$LOCAL_SCRIPTS_DIR/../.." && pwd)"

# Keep in step with deploy/local/kafka-pom.xml.
KAFKA_VERSION=4.1.1

_abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }

LOCAL_DIR="$(_abs "${STREAMER_LOCAL_DIR:-$REPO_ROOT/.local}")"
CACHE_DIR="$(_abs "${STREAMER_LOCAL_CACHE_DIR:-$REPO_ROOT/.cache}")"
KAFKA_PORT="${STREAMER_LOCAL_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${STREAMER_LOCAL_KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${STREAMER_LOCAL_REDIS_PORT:-6379}"
BIND_HOST=127.0.0.1

SCRIPT_NAME="$(basename "${BASH_SOURCE[1]:-$0}" .sh)"

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*"; }
warn() { printf '[%s] WARNING: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
  printf '[%s] ERROR: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 1
}

need() {
  # need COMMAND "how to get it"
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found. $2"
}

# Python used for small stdlib-only helpers (readiness probe, cluster id).
python_bin() {
  local p
  for p in python3 python; do
    if command -v "$p" >/dev/null 2>&1; then
      printf '%s\n' "$p"
      return 0
    fi
  done
  die "python3 not found (needed for the Kafka readiness probe)"
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  (exec 3<>"/dev/tcp/$BIND_HOST/$1") 2>/dev/null
}

# port_owner PORT: best-effort description of who listens on PORT.
port_owner() {
  if command -v ss >/dev/null 2>&1; then
    ss -ltnpH "sport = :$1" 2>/dev/null | awk '{print $NF}' | head -n1
  fi
}

# proc_alive PID: the process exists and is not a zombie.
proc_alive() {
  local pid="$1" state
  [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

# proc_cmdline PID: the command line with NULs turned into spaces.
proc_cmdline() {
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
}

# pid_from_file PIDFILE PATTERN: print the pid recorded in PIDFILE if that process
# is alive and its command line contains PATTERN (guards against pid reuse).
pid_from_file() {
  local pidfile="$1" pattern="$2" pid
  [[ -s "$pidfile" ]] || return 1
  pid="$(tr -dc '0-9' <"$pidfile")"
  proc_alive "$pid" || return 1
  [[ "$(proc_cmdline "$pid")" == *"$pattern"* ]] || return 1
  printf '%s\n' "$pid"
}

# stop_pid PID NAME TIMEOUT_SECONDS: SIGTERM, wait, then SIGKILL.
stop_pid() {
  local pid="$1" name="$2" timeout="$3" waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while proc_alive "$pid"; do
    if ((waited >= timeout * 10)); then
      warn "$name (pid $pid) still running after ${timeout}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_killed "$pid" "$name"
      return 0
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

# wait_killed PID NAME: wait up to 10 s for a SIGKILLed process to be gone; die if not.
wait_killed() {
  local pid="$1" name="$2" waited=0
  while proc_alive "$pid" && ((waited < 100)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  if proc_alive "$pid"; then die "$name (pid $pid) survived SIGKILL"; fi
}

# kill_pid PID NAME: SIGKILL (a crash, no shutdown) and wait until it is gone.
kill_pid() {
  kill -KILL "$1" 2>/dev/null || return 0
  wait_killed "$1" "$2"
}

# with_lock NAME: serialise up/down of one service between concurrent callers.
with_lock() {
  mkdir -p "$LOCAL_DIR"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$LOCAL_DIR/.$1.lock"
    flock -w 300 9 || die "timed out waiting for $LOCAL_DIR/.$1.lock"
  fi
}

# Run as root on Debian/Ubuntu with apt-get available.
can_apt_install() {
  [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1
}

# find_pids PATTERN: pids of live processes whose command line contains PATTERN
# (fallback for a lost or stale pidfile).
find_pids() {
  local dir pid
  for dir in /proc/[0-9]*; do
    pid="${dir#/proc/}"
    [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
    if [[ "$(proc_cmdline "$pid")" == *"$1"* ]] && proc_alive "$pid"; then
      printf '%s\n' "$pid"
    fi
  done
}

# -- helpers of the replicated Redis scripts (redis-sentinel.sh, redis-cluster.sh) --

# redis_cli PORT ARGS...: redis-cli against the node on 127.0.0.1:PORT.
redis_cli() {
  local port="$1"
  shift
  redis-cli -h "$BIND_HOST" -p "$port" "$@"
}

# wait_until SECONDS DESCRIPTION COMMAND...: run COMMAND every 0.2 s until it succeeds;
# die after SECONDS.
wait_until() {
  local deadline=$((SECONDS + $1)) what="$2"
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || die "timed out waiting for $what"
    sleep 0.2
  done
}

# all_pong PORT...: every Redis server or Sentinel on these ports answers PING.
all_pong() {
  local port
  for port in "$@"; do
    [[ "$(redis_cli "$port" ping 2>/dev/null)" == PONG ]] || return 1
  done
}

# redis_node_pid DIR PORT [PROCESS]: the pid of the redis-server (or PROCESS, e.g.
# sentinel) on PORT whose pidfile is DIR/redis.pid (DIR/sentinel.pid for a Sentinel).
redis_node_pid() {
  local dir="$1" port="$2" process="${3:-redis}"
  if [[ "$process" == sentinel ]]; then
    pid_from_file "$dir/sentinel.pid" "$BIND_HOST:$port [sentinel]"
  else
    pid_from_file "$dir/redis.pid" "redis-server $BIND_HOST:$port"
  fi
}

# start_redis_node PROGRAM CONF PORT LOG: start a daemonizing Redis program
# (redis-server, redis-sentinel) with CONF on PORT, which must be free; early errors to LOG.
start_redis_node() {
  local program="$1" conf="$2" port="$3" logfile="$4"
  port_open "$port" && die "port $BIND_HOST:$port is already in use ($(port_owner "$port"))"
  "$program" "$conf" </dev/null >>"$logfile" 2>&1 9>&- ||
    die "$program on port $port failed to start; log: $logfile"
}

# stop_redis_node DIR PORT NAME [PROCESS]: stop that node if it runs (SIGTERM, SIGKILL
# after 30 s) and remove its pidfile; returns 1 if it was not running.
stop_redis_node() {
  local dir="$1" port="$2" name="$3" process="${4:-redis}" pid rc=1
  if pid="$(redis_node_pid "$dir" "$port" "$process")"; then
    stop_pid "$pid" "$name" 30
    rc=0
  fi
  rm -f "$dir/$process.pid"
  return "$rc"
}

# kill_redis_node DIR PORT NAME: SIGKILL the redis-server on PORT (a crash).
kill_redis_node() {
  local dir="$1" port="$2" name="$3" pid
  pid="$(redis_node_pid "$dir" "$port")" || die "no $name of ours runs on port $port"
  log "killing $name $port (SIGKILL, pid $pid)"
  kill_pid "$pid" "$name $port"
}
