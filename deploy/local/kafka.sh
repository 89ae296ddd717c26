#!/usr/bin/env bash
# The local single-node Kafka (KRaft broker+controller in one JVM) on 127.0.0.1.
#
#   deploy/local/kafka.sh fetch     download the pinned Kafka jars with Maven (cached)
#   deploy/local/kafka.sh up        fetch, format storage once, start, wait until ready
#   deploy/local/kafka.sh down      SIGTERM (controlled shutdown), SIGKILL after a timeout
#   deploy/local/kafka.sh restart   down + up, data kept
#   deploy/local/kafka.sh kill      SIGKILL, no shutdown (crash for fault tests)
#   deploy/local/kafka.sh status    exit 0 running and ready, 1 running but not ready, 3 stopped
#   deploy/local/kafka.sh logs      last lines of the broker log
#
# up and down are idempotent. Layout (STREAMER_LOCAL_DIR, default <repo>/.local):
#   kafka/server.properties  written on every `up` from the env below
#   kafka/data/              KRaft metadata and topic data (formatted once)
#   kafka/logs/server.log    broker log (log4j2, deploy/local/log4j2.yaml)
#   kafka/stdout.log         JVM stdout/stderr
#   kafka/kafka.pid
# Jars: STREAMER_LOCAL_CACHE_DIR (default <repo>/.cache)/kafka-4.1.1/libs.
#
# Env: STREAMER_LOCAL_KAFKA_PORT (9092), STREAMER_LOCAL_KAFKA_CONTROLLER_PORT (9093),
#      STREAMER_LOCAL_KAFKA_HEAP (768m), STREAMER_LOCAL_KAFKA_START_TIMEOUT (120 s),
#      STREAMER_LOCAL_KAFKA_STOP_TIMEOUT (60 s), STREAMER_LOCAL_KAFKA_EXTRA_PROPERTIES
#      (extra server.properties lines, appended last so they win).
# shellcheck source=deploy/local/lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_DIR="$LOCAL_DIR/kafka"
KAFKA_CONF="$KAFKA_DIR/server.properties"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOGS="$KAFKA_DIR/logs"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_POM="$LOCAL_SCRIPTS_DIR/kafka-pom.xml"
KAFKA_LOG4J="$LOCAL_SCRIPTS_DIR/log4j2.yaml"
KAFKA_BOOTSTRAP="$BIND_HOST:$KAFKA_PORT"
# The command line of our broker contains this; it tells it apart from any other
# Kafka on the machine.
KAFKA_MATCH="kafka.Kafka $KAFKA_CONF"
HEAP="${STREAMER_LOCAL_KAFKA_HEAP:-768m}"
START_TIMEOUT="${STREAMER_LOCAL_KAFKA_START_TIMEOUT:-120}"
STOP_TIMEOUT="${STREAMER_LOCAL_KAFKA_STOP_TIMEOUT:-60}"

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  else
    need java "Kafka $KAFKA_VERSION needs Java 17+: apt-get install openjdk-17-jre-headless (or run deploy/local/install-deps.sh java)"
    command -v java
  fi
}

check_java() {
  local version major
  version="$("$(java_bin)" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
  major="${version%%.*}"
  [[ "$major" == 1 ]] && major="$(cut -d. -f2 <<<"$version")"
  [[ "$major" =~ ^[0-9]+$ ]] || die "cannot read the Java version ('$version')"
  ((major >= 17)) || die "Kafka $KAFKA_VERSION needs Java 17+, found $version"
}

pom_sum() { sha256sum "$KAFKA_POM" | cut -d' ' -f1; }

cmd_fetch() {
  local marker="$KAFKA_HOME/.complete" tmp
  if [[ -f "$marker" && "$(cat "$marker")" == "$(pom_sum)" ]] && compgen -G "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null; then
    return 0
  fi
  need mvn "apt-get install maven (or run deploy/local/install-deps.sh maven)"
  mkdir -p "$KAFKA_HOME"
  tmp="$KAFKA_HOME/libs.tmp.$$"
  rm -rf "$tmp"
  log "fetching Kafka $KAFKA_VERSION jars with Maven into $KAFKA_LIBS"
  if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_HOME/mvn.log" 2>&1; then
    tail -n 40 "$KAFKA_HOME/mvn.log" >&2
    rm -rf "$tmp"
    die "Maven could not fetch Kafka $KAFKA_VERSION (full log: $KAFKA_HOME/mvn.log)"
  fi
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after Maven fetch"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  pom_sum >"$marker"
  log "fetched $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars"
}

write_config() {
  mkdir -p "$KAFKA_DATA" "$KAFKA_LOGS"
  cat >"$KAFKA_CONF.tmp" <<EOF
# Written by deploy/local/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$BIND_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$BIND_HOST:$KAFKA_PORT,CONTROLLER://$BIND_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$BIND_HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DATA

# Topics are created explicitly (aiokafka admin), never by a producer's typo.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1

# Single node: internal topics with one replica and fewer partitions.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# After a crash (kafka.sh kill) the restarted node waits for its old broker
# session to expire before it can register again: 5 s instead of the default 9 s.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=5000

# Two cores shared with workers and load generators.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4

# Benchmarks write a lot: keep at most ~1 GiB or 24 h per partition.
log.retention.hours=24
log.retention.bytes=1073741824
log.segment.bytes=134217728
log.retention.check.interval.ms=60000
EOF
  if [[ -n "${STREAMER_LOCAL_KAFKA_EXTRA_PROPERTIES:-}" ]]; then
    printf '\n# STREAMER_LOCAL_KAFKA_EXTRA_PROPERTIES\n%s\n' "$STREAMER_LOCAL_KAFKA_EXTRA_PROPERTIES" >>"$KAFKA_CONF.tmp"
  fi
  mv "$KAFKA_CONF.tmp" "$KAFKA_CONF"
}

java_opts() {
  printf '%s\n' -Xms256m "-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$KAFKA_LOG4J" "-Dkafka.logs.dir=$KAFKA_LOGS"
}

format_storage() {
  [[ -f "$KAFKA_DATA/meta.properties" ]] && return 0
  local cluster_id
  # Kafka's own format (22 url-safe base64 characters); one starting with "-" would be
  # read as an option by the formatter's argument parser, hence --cluster-id=.
  cluster_id="$("$(python_bin)" -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
  log "formatting KRaft storage in $KAFKA_DATA (cluster id $cluster_id)"
  local opts
  mapfile -t opts < <(java_opts)
  if ! "$(java_bin)" "${opts[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format \
    --cluster-id="$cluster_id" --config="$KAFKA_CONF" >"$KAFKA_DIR/format.log" 2>&1; then
    cat "$KAFKA_DIR/format.log" >&2
    die "formatting KRaft storage failed"
  fi
}

running_pid() {
  local pid
  if pid="$(pid_from_file "$KAFKA_PIDFILE" "$KAFKA_MATCH")"; then
    printf '%s\n' "$pid"
    return 0
  fi
  pid="$(find_pids "$KAFKA_MATCH" | head -n1)"
  [[ -n "$pid" ]] || return 1
  printf '%s\n' "$pid" >"$KAFKA_PIDFILE"
  printf '%s\n' "$pid"
}

ready() { "$(python_bin)" "$LOCAL_SCRIPTS_DIR/kafka-ready.py" --bootstrap "$KAFKA_BOOTSTRAP" "$@"; }

wait_ready() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! proc_alive "$pid"; then
      tail -n 30 "$KAFKA_DIR/stdout.log" "$KAFKA_LOGS/server.log" >&2 2>/dev/null || true
      die "Kafka (pid $pid) exited during startup; logs in $KAFKA_DIR"
    fi
    if ready --quiet; then
      return 0
    fi
    sleep 0.5
  done
  tail -n 30 "$KAFKA_LOGS/server.log" >&2 2>/dev/null || true
  die "Kafka not ready on $KAFKA_BOOTSTRAP after ${START_TIMEOUT}s; logs in $KAFKA_LOGS"
}

cmd_up() {
  with_lock kafka
  local pid start=$SECONDS
  if pid="$(running_pid)"; then
    wait_ready "$pid"
    log "already running (pid $pid) on $KAFKA_BOOTSTRAP"
    return 0
  fi
  rm -f "$KAFKA_PIDFILE"
  check_java
  cmd_fetch
  local port
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$port"; then
      die "port $BIND_HOST:$port is already in use by another process ($(port_owner "$port")); stop it or set STREAMER_LOCAL_KAFKA_PORT / STREAMER_LOCAL_KAFKA_CONTROLLER_PORT"
    fi
  done
  write_config
  format_storage
  local opts
  mapfile -t opts < <(java_opts)
  printf '\n===== %s starting Kafka %s =====\n' "$(date -Is)" "$KAFKA_VERSION" >>"$KAFKA_DIR/stdout.log"
  # setsid: own session, so Ctrl-C in the calling terminal does not reach it; all
  # fds redirected so no caller's pipe (make, CI) is held open by the broker.
  setsid "$(java_bin)" "${opts[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF" \
    </dev/null >>"$KAFKA_DIR/stdout.log" 2>&1 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$KAFKA_PIDFILE"
  wait_ready "$pid"
  log "started (pid $pid) on $KAFKA_BOOTSTRAP in $((SECONDS - start))s; logs: $KAFKA_LOGS/server.log"
}

cmd_down() {
  with_lock kafka
  local pid stopped=0
  while pid="$(running_pid)"; do
    log "stopping (pid $pid)"
    stop_pid "$pid" kafka "$STOP_TIMEOUT"
    stopped=1
  done
  rm -f "$KAFKA_PIDFILE"
  if ((stopped)); then log "stopped"; else log "not running"; fi
}

cmd_kill() {
  with_lock kafka
  local pid
  if pid="$(running_pid)"; then
    log "killing (SIGKILL, pid $pid)"
    kill_pid "$pid" kafka
    rm -f "$KAFKA_PIDFILE"
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
  if ready --quiet; then
    log "running (pid $pid), ready on $KAFKA_BOOTSTRAP; data $KAFKA_DATA; logs $KAFKA_LOGS"
    return 0
  fi
  log "running (pid $pid) but not answering on $KAFKA_BOOTSTRAP"
  return 1
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  up | start) cmd_up ;;
  down | stop) cmd_down ;;
  restart) cmd_down && cmd_up ;;
  kill) cmd_kill ;;
  status) cmd_status ;;
  logs) tail -n "${2:-50}" "$KAFKA_LOGS/server.log" ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
