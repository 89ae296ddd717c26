#!/usr/bin/env bash
# Opt-in: a three-node KRaft Kafka cluster on 127.0.0.1 (each node broker and controller),
# replication factor 3 and min.insync.replicas=2 by default, with the jars kafka.sh fetches.
#
#   deploy/local/kafka-cluster.sh up           start the nodes not running (formats storage once), wait
#                                              until every broker lists all three
#   deploy/local/kafka-cluster.sh down         controlled shutdown of every node (SIGKILL after a timeout)
#   deploy/local/kafka-cluster.sh status       exit 0 all ready, 1 some not ready, 3 some stopped
#   deploy/local/kafka-cluster.sh bootstrap    print the bootstrap list for STREAMER_KAFKA_BOOTSTRAP
#   deploy/local/kafka-cluster.sh kill N       SIGKILL node N (1-3): a crash; `up` restarts it
#   deploy/local/kafka-cluster.sh stop N       controlled shutdown of node N
#   deploy/local/kafka-cluster.sh controller   print the node id of the active controller (quorum leader)
#
# Layout: $STREAMER_LOCAL_DIR/kafka-cluster/node<N>/{server.properties,data,logs,kafka.pid}.
# Independent of stack.sh's single broker.
# Env: STREAMER_LOCAL_KAFKA_CLUSTER_PORTS ("9192 9193 9194", brokers),
#      STREAMER_LOCAL_KAFKA_CLUSTER_CONTROLLER_PORTS ("9195 9196 9197"),
#      STREAMER_LOCAL_KAFKA_HEAP (512m each), STREAMER_LOCAL_KAFKA_START_TIMEOUT (180 s),
#      STREAMER_LOCAL_KAFKA_EXTRA_PROPERTIES (appended to every node's properties).
# shellcheck source=deploy/local/lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

read -r -a BROKER_PORTS <<<"${STREAMER_LOCAL_KAFKA_CLUSTER_PORTS:-9192 9193 9194}"
read -r -a CONTROLLER_PORTS <<<"${STREAMER_LOCAL_KAFKA_CLUSTER_CONTROLLER_PORTS:-9195 9196 9197}"
((${#BROKER_PORTS[@]} == 3 && ${#CONTROLLER_PORTS[@]} == 3)) || die "three broker and three controller ports, please"
CLUSTER_DIR="$LOCAL_DIR/kafka-cluster"
KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_LOG4J="$LOCAL_SCRIPTS_DIR/log4j2.yaml"
HEAP="${STREAMER_LOCAL_KAFKA_HEAP:-512m}"
START_TIMEOUT="${STREAMER_LOCAL_KAFKA_START_TIMEOUT:-180}"
NODES=(1 2 3)

node_dir() { printf '%s/node%s\n' "$CLUSTER_DIR" "$1"; }
broker_port() { printf '%s\n' "${BROKER_PORTS[$(($1 - 1))]}"; }
node_match() { printf 'kafka.Kafka %s/server.properties\n' "$(node_dir "$1")"; }
node_pid() {
  local pid
  pid="$(pid_from_file "$(node_dir "$1")/kafka.pid" "$(node_match "$1")")" ||
    pid="$(find_pids "$(node_match "$1")" 2>/dev/null | head -n1)"
  [[ -n "$pid" ]] || return 1
  printf '%s\n' "$pid"
}

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  else
    need java "Kafka $KAFKA_VERSION needs Java 17+ (deploy/local/install-deps.sh java)"
    command -v java
  fi
}

java_opts() {
  printf '%s\n' -Xms128m "-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$KAFKA_LOG4J" "-Dkafka.logs.dir=$(node_dir "$1")/logs"
}

voters() {
  local n out=()
  for n in "${NODES[@]}"; do out+=("$n@$BIND_HOST:${CONTROLLER_PORTS[$((n - 1))]}"); done
  (
    IFS=,
    echo "${out[*]}"
  )
}

write_config() {
  local n="$1" dir
  dir="$(node_dir "$n")"
  mkdir -p "$dir/data" "$dir/logs"
  cat >"$dir/server.properties.tmp" <<EOF
# Written by deploy/local/kafka-cluster.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://$BIND_HOST:$(broker_port "$n"),CONTROLLER://$BIND_HOST:${CONTROLLER_PORTS[$((n - 1))]}
advertised.listeners=PLAINTEXT://$BIND_HOST:$(broker_port "$n")
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data

auto.create.topics.enable=false
num.partitions=1
# What production runs: three copies, a write needs two of them (acks=all).
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0

# A killed node's session expires after 5 s (default 9 s), so its partitions move on
# and it can register again soon after a restart.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=5000

# Three JVMs on a small machine.
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.retention.hours=24
log.segment.bytes=134217728
EOF
  if [[ -n "${STREAMER_LOCAL_KAFKA_EXTRA_PROPERTIES:-}" ]]; then
    printf '\n# STREAMER_LOCAL_KAFKA_EXTRA_PROPERTIES\n%s\n' "$STREAMER_LOCAL_KAFKA_EXTRA_PROPERTIES" >>"$dir/server.properties.tmp"
  fi
  mv "$dir/server.properties.tmp" "$dir/server.properties"
}

format_storage() {
  local n="$1" dir cluster_id opts
  dir="$(node_dir "$n")"
  [[ -f "$dir/data/meta.properties" ]] && return 0
  mkdir -p "$CLUSTER_DIR"
  if [[ ! -s "$CLUSTER_DIR/cluster.id" ]]; then
    "$(python_bin)" -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))' >"$CLUSTER_DIR/cluster.id"
  fi
  cluster_id="$(cat "$CLUSTER_DIR/cluster.id")"
  mapfile -t opts < <(java_opts "$n")
  "$(java_bin)" "${opts[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format \
    --cluster-id="$cluster_id" --config="$dir/server.properties" >"$dir/format.log" 2>&1 ||
    { cat "$dir/format.log" >&2; die "formatting node $n failed"; }
}

start_node() {
  local n="$1" dir opts pid port
  dir="$(node_dir "$n")"
  node_pid "$n" >/dev/null && return 0
  for port in "$(broker_port "$n")" "${CONTROLLER_PORTS[$((n - 1))]}"; do
    port_open "$port" && die "port $BIND_HOST:$port is already in use ($(port_owner "$port"))"
  done
  write_config "$n"
  format_storage "$n"
  mapfile -t opts < <(java_opts "$n")
  printf '\n===== %s starting node %s =====\n' "$(date -Is)" "$n" >>"$dir/stdout.log"
  setsid "$(java_bin)" "${opts[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/stdout.log" 2>&1 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$dir/kafka.pid"
}

all_ready() {
  local n
  for n in "${NODES[@]}"; do
    "$(python_bin)" "$LOCAL_SCRIPTS_DIR/kafka-ready.py" --quiet --min-brokers 3 \
      --bootstrap "$BIND_HOST:$(broker_port "$n")" || return 1
  done
}

cmd_up() {
  with_lock kafka-cluster
  local n start=$SECONDS deadline
  "$LOCAL_SCRIPTS_DIR/kafka.sh" fetch
  for n in "${NODES[@]}"; do start_node "$n"; done
  deadline=$((SECONDS + START_TIMEOUT))
  until all_ready; do
    for n in "${NODES[@]}"; do
      node_pid "$n" >/dev/null || {
        tail -n 30 "$(node_dir "$n")/stdout.log" "$(node_dir "$n")/logs/server.log" >&2 2>/dev/null || true
        die "node $n exited during startup; logs in $(node_dir "$n")"
      }
    done
    ((SECONDS < deadline)) || die "the cluster is not ready after ${START_TIMEOUT}s; logs in $CLUSTER_DIR"
    sleep 0.5
  done
  log "three nodes ready on $(cmd_bootstrap) in $((SECONDS - start))s; data in $CLUSTER_DIR"
}

cmd_down() {
  with_lock kafka-cluster
  local n pid any=0
  # Together, so no node waits for the others to move its partitions away.
  for n in "${NODES[@]}"; do
    if pid="$(node_pid "$n")"; then
      kill -TERM "$pid" 2>/dev/null || true
      any=1
    fi
  done
  for n in "${NODES[@]}"; do
    if pid="$(node_pid "$n")"; then stop_pid "$pid" "kafka node $n" 60; fi
    rm -f "$(node_dir "$n")/kafka.pid"
  done
  if ((any)); then log "stopped"; else log "not running"; fi
}

node_arg() {
  [[ "${1:-}" =~ ^[123]$ ]] || die "expected a node number 1-3, got '${1:-}'"
}

cmd_kill() {
  node_arg "$1"
  local pid
  pid="$(node_pid "$1")" || die "node $1 is not running"
  log "killing node $1 (SIGKILL, pid $pid)"
  kill_pid "$pid" "kafka node $1"
  rm -f "$(node_dir "$1")/kafka.pid"
}

cmd_stop() {
  node_arg "$1"
  local pid
  pid="$(node_pid "$1")" || die "node $1 is not running"
  log "stopping node $1 (controlled shutdown, pid $pid)"
  stop_pid "$pid" "kafka node $1" 60
  rm -f "$(node_dir "$1")/kafka.pid"
}

cmd_controller() {
  # The leader of the highest epoch any running node's log reports (Kafka's own tool for
  # this, kafka-metadata-quorum, lives in a jar the local stack does not fetch).
  local n best_epoch=-1 best_id="" line epoch id
  for n in "${NODES[@]}"; do
    node_pid "$n" >/dev/null || continue
    line="$(grep -h 'Completed transition to Leader' "$(node_dir "$n")"/logs/server.log* 2>/dev/null | tail -n1 || true)"
    [[ -n "$line" ]] || continue
    epoch="$(grep -o 'epoch=[0-9]*' <<<"$line" | tail -n1 | cut -d= -f2)"
    id="$(grep -o 'RaftManager id=[0-9]*' <<<"$line" | head -n1 | cut -d= -f2)"
    if [[ -n "$epoch" && -n "$id" ]] && ((epoch > best_epoch)); then
      best_epoch="$epoch"
      best_id="$id"
    fi
  done
  [[ -n "$best_id" ]] || die "no running node reports a quorum leader"
  printf '%s\n' "$best_id"
}

cmd_status() {
  local n pid rc=0
  for n in "${NODES[@]}"; do
    if pid="$(node_pid "$n")"; then log "node $n: pid $pid, broker $BIND_HOST:$(broker_port "$n")"; else
      log "node $n: stopped"
      rc=3
    fi
  done
  ((rc == 0)) && ! all_ready && rc=1
  return "$rc"
}

cmd_bootstrap() {
  local n out=()
  for n in "${NODES[@]}"; do out+=("$BIND_HOST:$(broker_port "$n")"); done
  (
    IFS=,
    echo "${out[*]}"
  )
}

case "${1:-}" in
  up | start) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  bootstrap) cmd_bootstrap ;;
  kill) cmd_kill "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  controller) cmd_controller ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
