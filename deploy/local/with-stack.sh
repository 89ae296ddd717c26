#!/usr/bin/env bash
# Run one command against the local stack, starting only what is not running yet
# and stopping afterwards only what this call started:
#
#   deploy/local/with-stack.sh COMMAND [ARGS...]
#
# The command gets STREAMER_KAFKA_BOOTSTRAP and STREAMER_REDIS_URL for the local
# stack; its exit code is returned. Used by `make test`.
# shellcheck source=deploy/local/lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# > 0)) || die "usage: $0 COMMAND [ARGS...]"

started=()
# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
  local rc=$? svc
  trap - EXIT INT TERM
  for svc in "${started[@]}"; do
    "$LOCAL_SCRIPTS_DIR/$svc.sh" down || rc=1
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for svc in kafka redis; do
  status=0
  "$LOCAL_SCRIPTS_DIR/$svc.sh" status >/dev/null 2>&1 || status=$?
  if ((status == 3)); then # stopped: ours to start and to stop
    started+=("$svc")
  else
    log "$svc already running, leaving it running afterwards"
  fi
  "$LOCAL_SCRIPTS_DIR/$svc.sh" up
done

export STREAMER_KAFKA_BOOTSTRAP="$BIND_HOST:$KAFKA_PORT"
export STREAMER_REDIS_URL="redis://$BIND_HOST:$REDIS_PORT/0"
log "running: $* (STREAMER_KAFKA_BOOTSTRAP=$STREAMER_KAFKA_BOOTSTRAP STREAMER_REDIS_URL=$STREAMER_REDIS_URL)"
set +e
"$@"
rc=$?
set -e
exit "$rc"
