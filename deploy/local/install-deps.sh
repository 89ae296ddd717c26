#!/usr/bin/env bash
# Install the system programs the local stack needs, when they are missing.
#
#   deploy/local/install-deps.sh [redis] [redis-cli] [redis-sentinel] [prometheus] [java] [maven] [make]
#                                [chromium] [chromedriver]   (no argument: all of them)
#
# chromium and chromedriver (Debian's chromium-driver) run the web page's browser tests
# (tests/integration/test_web_page.py) headless.
#
# Runs `apt-get install` only as root on a machine with apt-get; otherwise it
# prints what to install and fails. Services that Debian packages would start
# on install (redis-server on 6379, redis-sentinel on 26379, prometheus on 9090) are kept from starting
# with a temporary /usr/sbin/policy-rc.d, so they don't take the stack's ports.
# shellcheck source=deploy/local/lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# component -> "command package"
declare -A CMD=([redis]=redis-server [redis-cli]=redis-cli [redis-sentinel]=redis-sentinel
  [prometheus]=promtool [java]=java [maven]=mvn [make]=make [chromium]=chromium
  [chromedriver]=chromedriver)
declare -A PKG=([redis]=redis-server [redis-cli]=redis-tools [redis-sentinel]=redis-sentinel
  [prometheus]=prometheus [java]=openjdk-17-jre-headless [maven]=maven [make]=make
  [chromium]=chromium [chromedriver]=chromium-driver)

components=("$@")
if ((${#components[@]} == 0)); then
  components=(redis redis-cli redis-sentinel prometheus java maven make chromium chromedriver)
fi

missing=()
for c in "${components[@]}"; do
  [[ -n "${CMD[$c]:-}" ]] || die "unknown component '$c' (known: ${!CMD[*]})"
  command -v "${CMD[$c]}" >/dev/null 2>&1 || missing+=("${PKG[$c]}")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if ! can_apt_install; then
  die "missing: ${missing[*]}. Install them, e.g. 'sudo apt-get install -y ${missing[*]}' (Debian/Ubuntu)."
fi

log "installing with apt-get: ${missing[*]}"
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\n# temporary, written by streamer deploy/local/install-deps.sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  created_policy=1
fi
cleanup() { if ((created_policy)); then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null

for c in "${components[@]}"; do
  command -v "${CMD[$c]}" >/dev/null 2>&1 || die "'${CMD[$c]}' still missing after installing ${PKG[$c]}"
done
log "installed: ${missing[*]}"
