#!/usr/bin/env bash
# The whole local stack: Kafka (deploy/local/kafka.sh) + Redis (deploy/local/redis.sh).
#
#   deploy/local/stack.sh up              start both (idempotent), wait until both answer
#   deploy/local/stack.sh down            stop both (idempotent); tries both even if one fails
#   deploy/local/stack.sh status          exit 0 only when both are up and answering
#   deploy/local/stack.sh env             print the STREAMER_* exports for this stack
#   deploy/local/stack.sh restart-kafka   controlled stop + start, data kept
#   deploy/local/stack.sh restart-redis   SIGTERM + start, data reloaded from the AOF
#   deploy/local/stack.sh kill-kafka      SIGKILL the broker (start again with `up`)
#   deploy/local/stack.sh kill-redis      SIGKILL redis (start again with `up`)
#
# Ports and folders: see deploy/local/lib.sh (STREAMER_LOCAL_* variables).
# shellcheck source=deploy/local/lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kafka() { "$LOCAL_SCRIPTS_DIR/kafka.sh" "$@"; }
redis() { "$LOCAL_SCRIPTS_DIR/redis.sh" "$@"; }

case "${1:-}" in
  up | start)
    kafka up
    redis up
    ;;
  down | stop)
    rc=0
    redis down || rc=$?
    kafka down || rc=$?
    exit "$rc"
    ;;
  status)
    rc=0
    kafka status || rc=1
    redis status || rc=1
    exit "$rc"
    ;;
  env)
    printf 'export STREAMER_KAFKA_BOOTSTRAP=%s\n' "$BIND_HOST:$KAFKA_PORT"
    printf 'export STREAMER_REDIS_URL=%s\n' "redis://$BIND_HOST:$REDIS_PORT/0"
    ;;
  restart-kafka) kafka restart ;;
  restart-redis) redis restart ;;
  kill-kafka) kafka kill ;;
  kill-redis) redis kill ;;
  *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
