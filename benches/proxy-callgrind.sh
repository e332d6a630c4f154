#!/usr/bin/env bash
# Instructions per request of cutover's proxy and of nginx (same 90/10 split, loopback),
# counted by valgrind's callgrind: repeatable where CPU time on a shared machine is not.
# Installs nginx and valgrind from Debian packages if missing (needs root), then runs
# `cargo bench --bench proxy_callgrind`.
#
#   benches/proxy-callgrind.sh      # CG_REQUESTS=20000 CG_WARMUP=2000 CG_CONNECTIONS=50
#   CG_OUT=/tmp/cg benches/proxy-callgrind.sh && callgrind_annotate /tmp/cg/cutover/callgrind.out.*
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
NGINX_BIN="${NGINX_BIN:-$(command -v nginx || true)}"
[ -n "$NGINX_BIN" ] || NGINX_BIN=/usr/sbin/nginx
[ -x "$NGINX_BIN" ] || need+=(nginx-light)
command -v valgrind >/dev/null || need+=(valgrind)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing: ${need[*]}; run 'apt-get install ${need[*]}' first (this script is not root)" >&2
        exit 1
    fi
    echo "installing ${need[*]} from Debian packages" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    NGINX_BIN=/usr/sbin/nginx
fi
echo "nginx: $("$NGINX_BIN" -v 2>&1); $(valgrind --version)" >&2
NGINX_BIN="$NGINX_BIN" exec cargo bench --bench proxy_callgrind
