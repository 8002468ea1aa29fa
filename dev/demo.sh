#!/usr/bin/env bash
# The main job, end to end on this machine: a local HAProxy (retries 0: a request sent to a stopped
# backend fails) in front of three web servers at v1, a load generator, and runner upgrading every
# server to v2 under that load while its traffic guard watches the frontend. Then, for contrast, the
# same servers restarted without being taken out of rotation first, as a bare shell loop does.
#
# With a docker engine (SCENARIOS.md §2 as ops run it): three "hosts" reached over SSH (sshd
# processes on 127.0.0.1, logged into as the test user), each running its web server as a
# container; `scripts/docker-rolling-upgrade.rhai` redeploys them from an inventory with
# `docker rm` / `docker run`, a canary first, then the other two together (batch 1,2).
# Without docker: busybox httpd processes, upgraded by `scripts/rolling-upgrade.rhai`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/setup.sh
cargo build --release -q
RUNNER=$PWD/target/release/runner
export PATH="$PWD/target/release:$PATH"

demo=$(mktemp -d /tmp/runner-demo.XXXXXX)
chmod 755 "$demo"
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sshd_pids=()
containers=()
cleanup() {
    [ -f "$demo/haproxy.pid" ] && kill "$(cat "$demo/haproxy.pid")" 2>/dev/null || true
    pkill -f "busybox httpd -p 127.0.0.1:.* -h $demo/" 2>/dev/null || true
    for p in "${sshd_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
    rm -rf "$demo"
}
trap cleanup EXIT

if docker info >/dev/null 2>&1; then mode=docker; else mode=processes; fi
front=$(free_port)
ports=()
for n in 1 2 3; do ports+=("$(free_port)"); done

if [ "$mode" = docker ]; then
    echo "== mode: docker containers on three SSH hosts (a docker engine answers)"
    # The images: a busybox root filesystem brought in with `docker import` (no registry here).
    root="$demo/rootfs"
    mkdir -p "$root/bin" "$root/www"
    cp /bin/busybox "$root/bin/busybox"
    ln -s busybox "$root/bin/sh"
    tar -C "$root" -cf "$demo/rootfs.tar" .
    for v in v1 v2; do
        docker import --change 'CMD ["/bin/busybox","httpd","-f","-p","80","-h","/www"]' \
            "$demo/rootfs.tar" "runner-demo-web:$v" >/dev/null
    done
    # The hosts: an sshd each, its host key in a known_hosts file, one client key for the test user.
    ssh-keygen -q -t ed25519 -N "" -C demo -f "$demo/id_ed25519"
    cp "$demo/id_ed25519.pub" "$demo/authorized_keys"
    chmod 644 "$demo/authorized_keys"
    mkdir -p /run/sshd
    : > "$demo/known_hosts"
    inventory="[defaults]\nuser = \"runner-test\"\nkey = \"$demo/id_ed25519\"\nknown_hosts_file = \"$demo/known_hosts\"\n\n[groups.web]\nhosts = [\"host1\", \"host2\", \"host3\"]\n"
    servers=""
    for n in 1 2 3; do
        sp=$(free_port)
        ssh-keygen -q -t ed25519 -N "" -C "host$n" -f "$demo/hostkey$n"
        cat > "$demo/sshd$n.conf" <<CFG
Port $sp
ListenAddress 127.0.0.1
HostKey $demo/hostkey$n
AuthorizedKeysFile $demo/authorized_keys
PidFile $demo/sshd$n.pid
UsePAM no
UseDNS no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxSessions 10
CFG
        /usr/sbin/sshd -D -f "$demo/sshd$n.conf" -E "$demo/sshd$n.log" &
        sshd_pids+=($!)
        echo "[127.0.0.1]:$sp $(cut -d' ' -f1,2 "$demo/hostkey$n.pub")" >> "$demo/known_hosts"
        www="$demo/host$n/www"
        mkdir -p "$www"
        chmod 777 "$demo/host$n" "$www"
        echo "web$n runner-demo-web:v1" > "$www/index.html"
        chmod 644 "$www/index.html"
        c="runner-demo-web$n-$$"
        containers+=("$c")
        docker run -d -q --name "$c" -p "127.0.0.1:${ports[$((n-1))]}:80" -v "$www:/www:ro" \
            runner-demo-web:v1 >/dev/null
        servers+="    server web$n 127.0.0.1:${ports[$((n-1))]} check inter 500ms fall 2 rise 1"$'\n'
        inventory+="\n[hosts.host$n]\naddress = \"127.0.0.1:$sp\"\nhaproxy_name = \"web$n\"\ncontainer = \"$c\"\npublish = \"127.0.0.1:${ports[$((n-1))]}\"\nweb_root = \"$www\"\n"
    done
    printf "%b" "$inventory" > "$demo/inventory.toml"
else
    echo "== mode: busybox httpd processes (no docker engine answers)"
    servers=""
    for n in 1 2 3; do
        mkdir -p "$demo/web$n"
        echo "web$n v1" > "$demo/web$n/index.html"
        busybox httpd -p "127.0.0.1:${ports[$((n-1))]}" -h "$demo/web$n"
        servers+="    server web$n 127.0.0.1:${ports[$((n-1))]} check inter 500ms fall 2 rise 1"$'\n'
    done
fi

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
# Every backend answers before the load starts.
for _ in $(seq 100); do
    "$RUNNER" eval -q "haproxy(\"$demo/admin.sock\").servers(\"web_servers\").all(|s| s.status.starts_with(\"UP\"))" \
        | grep -qx true && break
    sleep 0.1
done

echo "== HAProxy on 127.0.0.1:$front, backends web1..web3 at v1 (retries 0)"
"$RUNNER" play scripts/status.rhai -q -p socket="$demo/admin.sock"

echo "== load: 4 clients until the upgrade is done"
"$RUNNER" play scripts/load.rhai -q -p url="http://127.0.0.1:$front/" -p workers=4 -p seconds=180 \
    -p stop_file="$demo/stop" > "$demo/load.out" 2>&1 &
load_pid=$!
sleep 2

status=0
if [ "$mode" = docker ]; then
    echo "== runner play scripts/docker-rolling-upgrade.rhai -i inventory.toml -p batch=1,2 (v1 -> v2)"
    "$RUNNER" play scripts/docker-rolling-upgrade.rhai -i "$demo/inventory.toml" --yes \
        --journal "$demo/journal.jsonl" --watch "http://127.0.0.1:$front/" --max-errors 0 \
        -p socket="$demo/admin.sock" -p image=runner-demo-web:v2 -p html=/www -p pull=never \
        -p "health_cmd=/bin/busybox wget -q -O- http://127.0.0.1/" -p batch=1,2 \
        2> >(tee "$demo/upgrade.err" >&2) || status=$?
else
    echo "== runner play scripts/rolling-upgrade.rhai (v1 -> v2)"
    "$RUNNER" play scripts/rolling-upgrade.rhai --yes --journal "$demo/journal.jsonl" \
        --watch "http://127.0.0.1:$front/" --max-errors 0 \
        -p socket="$demo/admin.sock" -p root="$demo" -p version=v2 -p settle=1 \
        2> >(tee "$demo/upgrade.err" >&2) || status=$?
fi
sleep 1
touch "$demo/stop"
load_status=0
wait "$load_pid" || load_status=$?

echo "== during the runner upgrade: the load generator, and runner's own traffic guard (--watch)"
cat "$demo/load.out"
grep -A6 "traffic guard (" "$demo/upgrade.err" | sed 's/^[0-9:]* //' || true

echo "== for contrast: the same load while each backend is restarted without being taken out first"
rm -f "$demo/stop"
"$RUNNER" play scripts/load.rhai -q -p url="http://127.0.0.1:$front/" -p workers=4 -p seconds=60 \
    -p stop_file="$demo/stop" > "$demo/naive.out" 2>&1 &
naive_pid=$!
sleep 1
if [ "$mode" = docker ]; then
    echo "   (for i in hosts; do ssh \$i docker restart web; done)"
    for n in 1 2 3; do
        sp=$(grep -A1 "hosts.host$n" "$demo/inventory.toml" | grep -o ':[0-9]*"' | tr -d ':"')
        ssh -q -i "$demo/id_ed25519" -o UserKnownHostsFile="$demo/known_hosts" -p "$sp" \
            runner-test@127.0.0.1 docker restart -t 1 "${containers[$((n-1))]}" >/dev/null
        sleep 1
    done
else
    echo "   (what a bare 'ssh \$i docker restart' loop does, with httpd processes)"
    for n in 1 2 3; do
        addr="127.0.0.1:${ports[$((n-1))]}"
        pkill -f "busybox httpd -p $addr " || true
        while pgrep -f "busybox httpd -p $addr " >/dev/null; do sleep 0.01; done
        echo "web$n v3" > "$demo/web$n/index.html"
        busybox httpd -p "$addr" -h "$demo/web$n"
        sleep 1
    done
fi
touch "$demo/stop"
wait "$naive_pid" || true
grep "^load:" "$demo/naive.out"
echo "== versions served now"
for _ in 1 2 3; do curl -s "http://127.0.0.1:$front/"; done
echo "== runner journal $demo/journal.jsonl"
"$RUNNER" journal "$demo/journal.jsonl"
if [ "$status" -ne 0 ] || [ "$load_status" -ne 0 ] || ! grep -q ", 0 failed" "$demo/load.out"; then
    echo "demo FAILED: upgrade exit $status, load exit $load_status" >&2
    exit 1
fi
echo "demo OK ($mode): every backend upgraded to v2 under load with zero failed requests"
