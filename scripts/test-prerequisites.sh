#!/usr/bin/env bash
# The system programs the test suite runs for real, checked (and installed where we can) before it starts:
#   redis-server  the distributed tests start their own on a free port ($REDIS_SERVER_BIN, if set, is used
#                 instead, as test/utils/redisServer.ts does)
#   promtool      the alert rules and the metrics exposition are checked with it
#   prometheus    the Prometheus server: test/telemetry/AlertsEndToEnd.test.ts starts one on a free port to
#                 scrape the stack's /metrics and raise the generated alerts (Debian's prometheus package
#                 ships both programs; its service is kept from starting, see below)
#   chromium      the HTML report is rendered headless and its charts checked (Debian's chromium)
# As root with apt-get (a fresh machine of this project's kind, or CI) the missing Debian packages are
# installed, then checked again; anywhere else the script stops with one line naming what to install.
# Nothing is installed when everything is already there.
set -euo pipefail

# A redis-server of the caller's: nothing to install for it, but it must run.
if [ -n "${REDIS_SERVER_BIN:-}" ] && ! "$REDIS_SERVER_BIN" --version >/dev/null 2>&1; then
  echo "npm test: REDIS_SERVER_BIN=$REDIS_SERVER_BIN does not run; point it at a redis-server, or unset it" >&2
  exit 1
fi

# The Debian packages of the programs that are missing, on one line.
missing_packages() {
  local missing=()
  [ -n "${REDIS_SERVER_BIN:-}" ] || command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  { command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } || missing+=(prometheus)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  echo "${missing[@]}"
}

read -r -a missing <<<"$(missing_packages)"
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "npm test needs the Debian packages ${missing[*]}: run 'sudo apt-get install -y ${missing[*]}', then npm test again" >&2
  exit 1
fi

echo "test prerequisites: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp "${TMPDIR:-/tmp}/test-prerequisites.XXXXXX.log")
# Keep the packages' services from starting (the prometheus package would take port 9090, redis 6379),
# without disturbing a policy the machine already has.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  trap 'rm -f "$policy"' EXIT
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
fi
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  echo "npm test could not install ${missing[*]} with apt-get (see $log): install them, then npm test again" >&2
  exit 1
fi

# The packages installed: are the programs there now?
read -r -a still <<<"$(missing_packages)"
if [ "${#still[@]}" -ne 0 ]; then
  echo "npm test: apt-get installed ${missing[*]}, but the programs of ${still[*]} are still not found (see $log); install them, then npm test again" >&2
  exit 1
fi
rm -f "$log"
