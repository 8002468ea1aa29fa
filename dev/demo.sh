#!/usr/bin/env bash
# The main job, end to end on this machine: a local HAProxy in front of three busybox httpd
# backends (v1), a load generator, and `runner play scripts/rolling-upgrade.rhai` upgrading every
# backend to v2 under that load. Prints the load's result (zero failed requests expected), the
# versions served afterwards and the journal of what was changed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/setup.sh
cargo build --release -q
RUNNER=$PWD/target/release/runner
export PATH="$PWD/target/release:$PATH"

demo=$(mktemp -d /tmp/runner-demo.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleanup() {
    [ -f "$demo/haproxy.pid" ] && kill "$(cat "$demo/haproxy.pid")" 2>/dev/null || true
    pkill -f "busybox httpd -p 127.0.0.1:.* -h $demo/" 2>/dev/null || true
    rm -rf "$demo"
}
trap cleanup EXIT

front=$(free_port)
servers=""
for n in 1 2 3; do
    port=$(free_port)
    mkdir -p "$demo/web$n"
    echo "web$n v1" > "$demo/web$n/index.html"
    busybox httpd -p "127.0.0.1:$port" -h "$demo/web$n"
    servers+="    server web$n 127.0.0.1:$port check inter 500ms fall 2 rise 1"$'\n'
done
cat > "$demo/haproxy.cfg" <<CFG
global
    stats socket $demo/admin.sock mode 600 level admin
    pidfile $demo/haproxy.pid
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 0
frontend web
    bind 127.0.0.1:$front
    default_backend web_servers
backend web_servers
    balance roundrobin
$servers
CFG
haproxy -c -q -f "$demo/haproxy.cfg"
haproxy -D -f "$demo/haproxy.cfg"
for _ in $(seq 50); do [ -S "$demo/admin.sock" ] && break; sleep 0.1; done

echo "== HAProxy on 127.0.0.1:$front, backends web1..web3 at v1 (retries 0: a request sent to a stopped backend fails)"
"$RUNNER" play scripts/status.rhai -q -p socket="$demo/admin.sock"

echo "== load: 4 clients until the upgrade is done"
"$RUNNER" play scripts/load.rhai -q -p url="http://127.0.0.1:$front/" -p workers=4 -p seconds=120 \
    -p stop_file="$demo/stop" > "$demo/load.out" 2>&1 &
load_pid=$!
sleep 2

echo "== runner play scripts/rolling-upgrade.rhai (v1 -> v2)"
status=0
"$RUNNER" play scripts/rolling-upgrade.rhai --yes --journal "$demo/journal.jsonl" \
    --watch "http://127.0.0.1:$front/" --max-errors 0 \
    -p socket="$demo/admin.sock" -p root="$demo" -p version=v2 -p settle=1 2> >(tee "$demo/upgrade.err" >&2) \
    || status=$?
sleep 1
touch "$demo/stop"
load_status=0
wait "$load_pid" || load_status=$?

echo "== during the runner upgrade: the load generator, and runner's own traffic guard (--watch)"
cat "$demo/load.out"
grep -A4 "traffic guard (" "$demo/upgrade.err" | sed 's/^[0-9:]* //' || true

echo "== for contrast: the same load while each backend is restarted without being taken out first"
echo "   (what a bare 'ssh \$i docker restart' loop does)"
rm -f "$demo/stop"
"$RUNNER" play scripts/load.rhai -q -p url="http://127.0.0.1:$front/" -p workers=4 -p seconds=60 \
    -p stop_file="$demo/stop" > "$demo/naive.out" 2>&1 &
naive_pid=$!
sleep 1
for n in 1 2 3; do
    addr=$(grep -o "server web$n [0-9.:]*" "$demo/haproxy.cfg" | cut -d' ' -f3)
    pkill -f "busybox httpd -p $addr " || true
    while pgrep -f "busybox httpd -p $addr " >/dev/null; do sleep 0.01; done
    echo "web$n v3" > "$demo/web$n/index.html"
    busybox httpd -p "$addr" -h "$demo/web$n"
    sleep 1
done
touch "$demo/stop"
wait "$naive_pid" || true
grep "^load:" "$demo/naive.out"
echo "== versions served now (v3 from the contrast run)"
for _ in 1 2 3; do curl -s "http://127.0.0.1:$front/"; done
echo "== runner journal $demo/journal.jsonl"
"$RUNNER" journal "$demo/journal.jsonl"
if [ "$status" -ne 0 ] || [ "$load_status" -ne 0 ]; then
    echo "demo FAILED: upgrade exit $status, load exit $load_status" >&2
    exit 1
fi
echo "demo OK: every backend upgraded to v2 under load with zero failed requests"
