#!/usr/bin/env bash
# The system programs the test suite runs for real, checked (and installed where we can) before it starts:
#   redis-server  the distributed tests start their own on a free port
#   promtool      the alert rules and the metrics exposition are checked with it (Debian's prometheus)
#   prometheus    a real server scrapes a running stack in the alert tests (Debian's prometheus)
#   chromium      the HTML report is rendered headless and its charts checked (Debian's chromium)
# As root with apt-get (a fresh machine of this project's kind, or CI) the missing Debian packages are
# installed; anywhere else the script stops with one line naming what to install. Nothing is installed
# when everything is already there.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then missing+=(prometheus); fi
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "npm test needs ${missing[*]} (Debian packages): run 'sudo apt-get install -y ${missing[*]}', then npm test again" >&2
  exit 1
fi

echo "test prerequisites: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
# Keep the packages' services from starting (the prometheus package would take port 9090, redis 6379),
# without disturbing a policy the machine already has.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  trap 'rm -f "$policy"' EXIT
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
fi
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/tmp/test-prerequisites.log 2>&1; then
  echo "npm test could not install ${missing[*]} with apt-get (see /tmp/test-prerequisites.log): install them, then npm test again" >&2
  exit 1
fi
