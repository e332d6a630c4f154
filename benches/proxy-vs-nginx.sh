#!/usr/bin/env bash
# Proxy efficiency: cutover's proxy vs nginx (90/10 split, loopback), side by side.
# Installs nginx from Debian packages if missing (needs root), then runs the bench in
# release mode. The bench writes nginx's config into a temp dir, starts nginx on a free
# port, and stops it (SIGQUIT) at the end; it fails if nginx cannot be found.
#
#   benches/proxy-vs-nginx.sh            # BENCH_REPS=2 BENCH_SECS=8 BENCH_RATE=3000
set -euo pipefail
cd "$(dirname "$0")/.."

NGINX_BIN="${NGINX_BIN:-$(command -v nginx || true)}"
[ -n "$NGINX_BIN" ] || NGINX_BIN=/usr/sbin/nginx
if [ ! -x "$NGINX_BIN" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "nginx is missing and this script is not root: run 'apt-get install nginx-light' (or nginx) first" >&2
        exit 1
    fi
    echo "installing nginx from Debian packages" >&2
    apt-get update -qq
    # The package's service is not started (policy-rc.d in containers); the bench runs
    # its own nginx in a temp dir.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
    NGINX_BIN=/usr/sbin/nginx
fi
echo "nginx: $("$NGINX_BIN" -v 2>&1)" >&2
NGINX_BIN="$NGINX_BIN" exec cargo bench --bench proxy_efficiency
