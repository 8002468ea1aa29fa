#!/usr/bin/env bash
# Per-command cost of `lb.weight("be/srv")` from a runner script (one connection in interactive
# mode, reused), against what people do today: `echo "get weight be/srv" | socat stdio SOCK` per
# command, and against the floor: one raw persistent connection driven by python3 in prompt mode.
# Also: python3 with a new connection per command (what the Ansible module does), and runner's
# `set_weight` (a journaled effect).
# Measured 2026-11-21 on a shared 2-core VM (load 3-6 from other test runs; best of 3, 1000 each):
#   runner lb.weight() 36 us | runner lb.set_weight() 100-128 us (journal write per change)
#   socat per command 4400-6500 us (120-180x) | python3 connection per command 79-94 us (2.1-2.6x)
#   python3 one persistent connection 22 us (0.6x: the floor; runner's extra is the script engine
#   and the hop into the shared tokio runtime)
# Usage: bash bench/haproxy.sh [N]   (N commands per method, default 1000; ROUNDS=3 rounds, best kept)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
cargo build --release -q
RUNNER=$PWD/target/release/runner

tmp=$(mktemp -d /tmp/runner-bench-haproxy.XXXXXX)
cleanup() {
    [ -n "${haproxy_pid:-}" ] && kill "$haproxy_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SOCK=$tmp/admin.sock
cat > "$tmp/haproxy.cfg" <<CONF
global
    stats socket $SOCK mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:$(free_port)
    default_backend web_servers
backend web_servers
    balance roundrobin
    server web1 127.0.0.1:$(free_port) weight 3
    server web2 127.0.0.1:$(free_port)
CONF
/usr/sbin/haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 & haproxy_pid=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && echo "show info" | socat stdio "UNIX-CONNECT:$SOCK" >/dev/null 2>&1 && break; sleep 0.05; done

now() { date +%s%N; }
per_us() { python3 -c "print(f'{($2-$1)/1e3/$3:.1f}')"; }
S=web_servers/web1

# runner: the same script with 0 and N calls; the difference is the per-call cost.
cat > "$tmp/get.rhai" <<RHAI
let lb = haproxy("$SOCK");
lb.weight("$S");
for i in 0..param("n", 0) { lb.weight("$S"); }
RHAI
cat > "$tmp/set.rhai" <<RHAI
let lb = haproxy("$SOCK");
lb.weight("$S");
for i in 0..param("n", 0) { lb.set_weight("$S", 3); }
RHAI
"$RUNNER" play -q "$tmp/get.rhai" -p n=10 >/dev/null   # warm up
# runner's fixed cost (start, compile, connect): subtracted from every runner measurement.
base_ns() { local t0; t0=$(now); "$RUNNER" play -q "$tmp/get.rhai" -p n=0 >/dev/null; echo $(( $(now) - t0 )); }
runner_get() {
    local b t0 t1; b=$(base_ns); t0=$(now)
    "$RUNNER" play -q "$tmp/get.rhai" -p n="$N" >/dev/null; t1=$(now)
    python3 -c "print(f'{(($t1-$t0)-$b)/1e3/$N:.1f}')"
}
runner_set() {
    local b t0 t1; b=$(base_ns); rm -f "$tmp/j.jsonl"; t0=$(now)
    "$RUNNER" play -q --journal "$tmp/j.jsonl" "$tmp/set.rhai" -p n="$N" >/dev/null; t1=$(now)
    [ "$(wc -l < "$tmp/j.jsonl")" -eq "$N" ] || { echo "expected $N journal entries" >&2; exit 1; }
    python3 -c "print(f'{(($t1-$t0)-$b)/1e3/$N:.1f}')"
}

# socat: a process and a connection per command, as in the runbooks.
socat_get() {
    local t0 t1; t0=$(now)
    for _ in $(seq "$N"); do echo "get weight $S" | socat stdio "UNIX-CONNECT:$SOCK" >/dev/null; done
    t1=$(now); per_us "$t0" "$t1" "$N"
}

# python3: one process; one persistent connection in prompt mode (the floor), or one per command.
py() {
    python3 - "$SOCK" "$S" "$N" "$1" <<'PY'
import socket, sys, time
sock, srv, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
cmd = f"get weight {srv}\n".encode()
def connect():
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    return s
t = time.perf_counter()
if mode == "persistent":
    s = connect()
    s.sendall(b"prompt\n")
    buf = b""
    while not buf.endswith(b"> "):
        buf += s.recv(4096)
    for _ in range(n):
        s.sendall(cmd)
        buf = b""
        while not buf.endswith(b"\n> "):
            buf += s.recv(4096)
        assert buf[:1].isdigit(), buf
else:
    for _ in range(n):
        s = connect()
        s.sendall(cmd)
        buf = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            buf += d
        s.close()
        assert buf[:1].isdigit(), buf
print(f"{(time.perf_counter() - t) * 1e6 / n:.1f}")
PY
}

# Each method ROUNDS times, interleaved; the best round counts (this machine is shared and noisy).
ROUNDS=${ROUNDS:-3}
best() { python3 -c "import sys; print(min(float(x) for x in sys.argv[1:]))" "$@"; }
declare -a r_get r_set r_socat r_fresh r_raw
for _ in $(seq "$ROUNDS"); do
    r_get+=("$(runner_get)"); r_set+=("$(runner_set)"); r_socat+=("$(socat_get)")
    r_fresh+=("$(py fresh)"); r_raw+=("$(py persistent)")
done
runner_us=$(best "${r_get[@]}"); set_us=$(best "${r_set[@]}"); socat_us=$(best "${r_socat[@]}")
fresh_us=$(best "${r_fresh[@]}"); raw_us=$(best "${r_raw[@]}")

ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
printf '\nper-command cost of `get weight %s` on a unix stats socket (HAProxy %s, %s commands each, best of %s rounds)\n\n' \
    "$S" "$(/usr/sbin/haproxy -v | head -1 | cut -d' ' -f3)" "$N" "$ROUNDS"
printf '%-58s %10s %12s\n' "method" "us/cmd" "vs runner"
printf '%-58s %10s %12s\n' "runner lb.weight() (one connection, prompt mode)" "$runner_us" "1.00x"
printf '%-58s %10s %12s\n' "runner lb.set_weight() (journaled effect)" "$set_us" "$(ratio "$set_us" "$runner_us")"
printf '%-58s %10s %12s\n' "echo ... | socat stdio SOCK (process + connection per cmd)" "$socat_us" "$(ratio "$socat_us" "$runner_us")"
printf '%-58s %10s %12s\n' "python3, one connection per command" "$fresh_us" "$(ratio "$fresh_us" "$runner_us")"
printf '%-58s %10s %12s\n' "python3, one persistent connection (prompt mode)" "$raw_us" "$(ratio "$raw_us" "$runner_us")"
