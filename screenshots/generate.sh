#!/usr/bin/env bash
# Regenerate the README screenshots from a real `cutover demo` run and a real
# `cutover demo --fleet` run:
# tmux (fixed size) → capture-pane -e (ANSI) → aha (HTML) → headless Chromium (PNG).
# Needs the Debian packages tmux, aha and chromium (and a monospace font, fonts-dejavu-core).
#
#   screenshots/generate.sh            # uses target/release/cutover, else target/debug
#   screenshots/generate.sh demo       # only the `cutover demo` shots (and report.png)
#   screenshots/generate.sh fleet      # only the `cutover demo --fleet` shots
#   CUTOVER_BIN=path/to/cutover screenshots/generate.sh
set -euo pipefail
which="${1:-all}"
case "$which" in all | demo | fleet) ;; *) echo "usage: generate.sh [all|demo|fleet]" >&2; exit 2 ;; esac

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
bin="${CUTOVER_BIN:-}"
if [[ -z "$bin" ]]; then
  if [[ -x "$root/target/release/cutover" ]]; then bin="$root/target/release/cutover"; else bin="$root/target/debug/cutover"; fi
fi
for tool in tmux aha chromium; do
  command -v "$tool" >/dev/null || { echo "generate.sh: $tool is missing: apt-get install tmux aha chromium" >&2; exit 1; }
done
[[ -x "$bin" ]] || { echo "generate.sh: no cutover binary at $bin: run cargo build first" >&2; exit 1; }

cols=140 rows=42
work="$(mktemp -d)"
sock="cutover-shots-$$"
cleanup() { tmux -L "$sock" kill-server 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start() { # start SESSION ARGS...: `cutover ARGS` in a fixed-size terminal of its own
  local session="$1"
  shift
  tmux -L "$sock" -f /dev/null new-session -d -s "$session" -x "$cols" -y "$rows" \
    "TERM=xterm-256color COLORTERM=truecolor USER=oncall CUTOVER_STATE_DIR=$work/state-$session $bin $*; sleep 120"
  tmux -L "$sock" set -g default-terminal tmux-256color >/dev/null
  tmux -L "$sock" set -ga terminal-overrides ',*:RGB' >/dev/null
  pane="$session"
}
pane=demo # the tmux session the helpers below look at
screen() { tmux -L "$sock" capture-pane -p -t "$pane"; }
wait_for() { # wait_for DESCRIPTION REGEX [SECONDS]
  local end=$((SECONDS + ${3:-90}))
  until screen | grep -Eq "$2"; do
    if ((SECONDS > end)); then echo "generate.sh: timed out waiting for $1" >&2; screen >&2; exit 1; fi
    sleep 0.2
  done
}
shot() { # shot NAME
  local ans="$work/$1.ans" html="$work/$1.html"
  tmux -L "$sock" capture-pane -e -p -t "$pane" >"$ans"
  {
    echo '<!DOCTYPE html><html><head><meta charset="utf-8"><style>'
    echo 'body{margin:0;background:#1d2128;} pre{margin:0;padding:8px;font-family:"DejaVu Sans Mono",monospace;font-size:14px;line-height:1.15;color:#d8dee9;}'
    echo '</style></head><body><pre>'
    aha --no-header --black <"$ans"
    echo '</pre></body></html>'
  } >"$html"
  # 140 columns of 14 px DejaVu Sans Mono (8.43 px), 42 rows of 16.1 px, plus padding.
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
    --user-data-dir="$work/chromium-$1" --window-size=1220,694 \
    --screenshot="$here/$1.png" "file://$html" >/dev/null 2>&1
  echo "wrote $here/$1.png"
}

demo_shots() {
start demo demo
# 1. Mid-canary: payments' candidate takes 20 % while the judge compares it with v1.
wait_for "payments at 20 %" 'payments +ANALYSING +v1 80% · v2 20%'
sleep 5
shot mid-canary
# 2. Select orders (third row), whose v2 is broken; wait for the judge to catch it.
tmux -L "$sock" send-keys -t demo Down Down
wait_for "orders rolled back" 'orders +(ROLLING BACK|ROLLED BACK)'
sleep 1
shot regression-caught
# 3. The end: q leaves the console (nothing in flight any more) and the demo prints its
# closing summary with the time from the regression's first traffic to the rollback.
wait_for "the release to finish" 'FINISHED'
sleep 1
tmux -L "$sock" send-keys -t demo q
wait_for "the closing summary" '^exit [0-9]'
shot final-summary
# 4. The release report that run wrote (a real run with a rollback), as a browser draws it.
tmux -L "$sock" kill-server 2>/dev/null || true
report="$("$bin" history --state-dir "$work/state-demo" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["run_id"])')"
mkdir -p "$work/profile"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --window-size=1280,2000 \
  --screenshot="$here/report.png" "file://$work/state-demo/runs/$report/report.html"
}

fleet_shots() {
# 5. The fleet demo: eight tenants in three rings, initech broken by its configuration.
# The console shows the fleet as one tree: rings → tenants → services.
start fleet demo --fleet
# Mid-release: the canary ring promoted, the early ring under way; open initech (the fifth
# row: ring canary, acme, ring early, globex, initech), select its api and wait for its
# analysis to roll it back while the other tenants go on.
wait_for "the fleet's tree" 'ring canary'
tmux -L "$sock" send-keys -t fleet Down Down Down Down Space Down
wait_for "initech/api selected" 'Health: initech/api'
wait_for "initech rolled back" ' api +(ROLLING BACK|ROLLED BACK)' 120
wait_for "initech's verdict" 'FAIL \(threshold\)'
shot fleet-mid-release
# The last ring's tenants at their approval gates: 20 s for a person to approve, reject or
# exclude them (the console's command line), then they promote themselves.
wait_for "the last ring's approval gates" 'wayne +awaiting approval' 120
shot fleet-approval-gate
# The end: every other tenant promoted (the last ring after its approval gates timed out
# into promote), initech rolled back and its web skipped.
wait_for "the fleet to finish" 'FINISHED' 180
wait_for "wayne promoted" 'wayne +promoted'
shot fleet-end
# The closing summary: tenants, the budget, and whom the flags file turns new_checkout on for.
tmux -L "$sock" send-keys -t fleet q
wait_for "the fleet's closing summary" '^exit [0-9]'
shot fleet-final-summary
tmux -L "$sock" kill-server 2>/dev/null || true
}

case "$which" in
  all) demo_shots; fleet_shots ;;
  demo) demo_shots ;;
  fleet) fleet_shots ;;
esac
