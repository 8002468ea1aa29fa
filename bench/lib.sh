# The benchmarks' shared sandbox, sourced by bench/run and each bench/cases/*.sh.
# Each case runs on 127.0.0.1 in its own temp dir ($BT) that the exit trap removes with every
# process started through `bg`. Results are rows appended to $RESULTS (tab-separated: case, method, value
# in ms, note), from which bench/table.py prints the markdown table; the first method of a case is
# the one the others are compared with.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
PY=/usr/bin/python3   # the real interpreter (python3 on PATH may be a pyenv shim, ~175 ms a start)
USER_=runner-test     # /bin/sh, no rc files: a command over ssh costs only itself
ROUNDS=${ROUNDS:-3}
ANSIBLE_VENV=${ANSIBLE_VENV:-$HOME/.cache/runner-bench/ansible}
ANSIBLE_BIN=$ANSIBLE_VENV/bin

BT=$(mktemp -d /tmp/runner-bench.XXXXXX)
chmod 755 "$BT"
RESULTS=${RESULTS:-$BT/results.tsv}
BG_PIDS=()
# Ansible's ControlPersist masters outlive its runs (by 60 s): closed between runs and at exit.
close_ansible_masters() {
    for s in "$BT"/ansible-cp/*; do [ -S "$s" ] && ssh -S "$s" -O exit x >/dev/null 2>&1 || true; done
}
bench_cleanup() {
    close_ansible_masters
    for c in "$BT"/ctl-*; do [ -S "$c" ] && ssh -S "$c" -O exit x >/dev/null 2>&1 || true; done
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$BT"
}
trap bench_cleanup EXIT

# Start a command in the background and stop it at exit.
bg() { "$@" & BG_PIDS+=($!); }

now() { date +%s%N; }
# Milliseconds between two `now` values.
ms() { $PY -c "print(f'{($2-$1)/1e6:.3f}')"; }
# Milliseconds CMD... takes (its output discarded); a CMD that fails stops the case.
wall_ms() { local t0; t0=$(now); "$@" >/dev/null || die "failed: $*"; ms "$t0" "$(now)"; }
# record CASE METHOD MS [NOTE]. A measurement that failed inside $(...) leaves MS empty (the
# subshell stopped, not the case): that stops the case here.
record() {
    [[ $3 =~ ^-?[0-9]+(\.[0-9]+)?$ ]] || die "no figure for \"$2\" (${3:-nothing}): its measurement failed"
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >> "$RESULTS"
}
log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
# Stop the case with a message naming it (a benchmark of failing commands would be worthless).
die() { log "$(basename "$0" .sh): $*"; exit 1; }

# N free TCP ports on 127.0.0.1, space-separated.
free_ports() {
    $PY -c "
import socket
socks = [socket.socket() for _ in range($1)]
for s in socks: s.bind(('127.0.0.1', 0))
print(' '.join(str(s.getsockname()[1]) for s in socks))"
}

# The release build of runner ($RUNNER), built once.
build_runner() {
    if [ -z "${RUNNER:-}" ]; then
        (cd "$ROOT" && cargo build --release -q)
        RUNNER=$ROOT/target/release/runner
    fi
    export RUNNER
}

# Ansible in a private virtualenv from PyPI (the `ansible` package includes community.general).
ensure_ansible() {
    if [ ! -x "$ANSIBLE_BIN/ansible-playbook" ]; then
        if ! $PY -c 'import ensurepip' 2>/dev/null; then   # Debian splits venv out of python3
            log "installing python3-venv"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        fi
        log "installing Ansible into $ANSIBLE_VENV (PyPI)"
        mkdir -p "$(dirname "$ANSIBLE_VENV")"
        $PY -m venv "$ANSIBLE_VENV"
        "$ANSIBLE_BIN/pip" install -q ansible
    fi
    export ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=False
    export ANSIBLE_LOCAL_TEMP=$BT/ansible-local ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3
    export ANSIBLE_SSH_PIPELINING=True ANSIBLE_CALLBACK_RESULT_FORMAT=yaml
    export ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=60s -o IdentitiesOnly=yes -o UserKnownHostsFile=$BT/known_hosts"
    export ANSIBLE_SSH_CONTROL_PATH_DIR=$BT/ansible-cp
    export ANSIBLE_GATHERING=explicit ANSIBLE_DEPRECATION_WARNINGS=False
}
ansible_version() { "$ANSIBLE_BIN/ansible" --version | head -1; }

# start_sshds N: N sshd processes on 127.0.0.1, one port each (hosts h1..hN), for $USER_ with the
# key $BT/id. Writes $BT/ports (one per line), $BT/known_hosts, $BT/inventory.toml (runner) and
# $BT/inventory.ini (Ansible, the same hosts and options).
start_sshds() {
    local n=$1 i=0 port
    [ -f "$BT/id" ] || ssh-keygen -q -t ed25519 -N '' -f "$BT/id"
    [ -f "$BT/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$BT/host_key"
    cp "$BT/id.pub" "$BT/authorized_keys"; chmod 644 "$BT/authorized_keys"
    mkdir -p /run/sshd
    : > "$BT/ports"; : > "$BT/known_hosts"
    printf '[defaults]\nuser = "%s"\nkey = "%s"\nknown_hosts_file = "%s"\n' \
        "$USER_" "$BT/id" "$BT/known_hosts" > "$BT/inventory.toml"
    printf '[all:vars]\nansible_user=%s\nansible_ssh_private_key_file=%s\nansible_host=127.0.0.1\n\n[hosts]\n' \
        "$USER_" "$BT/id" > "$BT/inventory.ini"
    for port in $(free_ports "$n"); do
        i=$((i + 1))
        mkdir -p "$BT/sshd/h$i"
        cat > "$BT/sshd/h$i/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $BT/host_key
AuthorizedKeysFile $BT/authorized_keys
PidFile $BT/sshd/h$i/sshd.pid
UsePAM no
UseDNS no
StrictModes no
PasswordAuthentication no
MaxSessions 16
MaxStartups 100
CONF
        bg /usr/sbin/sshd -D -f "$BT/sshd/h$i/sshd_config" -E "$BT/sshd/h$i/sshd.log"
        echo "$port" >> "$BT/ports"
        echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$BT/host_key.pub")" >> "$BT/known_hosts"
        printf '\n[hosts.h%s]\naddress = "127.0.0.1:%s"\n' "$i" "$port" >> "$BT/inventory.toml"
        printf 'h%s ansible_port=%s\n' "$i" "$port" >> "$BT/inventory.ini"
    done
    while read -r port; do
        for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
    done < "$BT/ports"
}
# The first N ports, space-separated.
ports() { head -n "$1" "$BT/ports" | paste -sd' '; }
# ssh options equal to runner's for the sandbox hosts (no ControlMaster unless added).
ssh_opts() {
    echo -i "$BT/id" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes \
        -o UserKnownHostsFile="$BT/known_hosts" -o ConnectTimeout=10 -l "$USER_"
}

# start_haproxy NAME SERVERS...: an HAProxy with admin socket $BT/NAME/admin.sock, frontend port
# in $BT/NAME/front, backend `web_servers` with the given `name=port` servers, each with $CHECK
# (default: health checks every 100 ms; CHECK= for none). Busybox httpd backends: `start_httpd`.
start_haproxy() {
    local name=$1; shift
    local dir=$BT/$name front
    mkdir -p "$dir"
    front=$(free_ports 1)
    {
        cat <<CONF
global
    stats socket $dir/admin.sock mode 600 level admin
    stats timeout 1m
    maxconn 4096
defaults
    mode http
    retries 3
    option redispatch
    timeout connect 1s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:$front
    default_backend web_servers
backend web_servers
    balance roundrobin
    option httpchk GET /
CONF
        for s in "$@"; do
            printf '    server %s 127.0.0.1:%s %s\n' "${s%%=*}" "${s#*=}" "${CHECK-check inter 100ms fall 2 rise 1}"
        done
    } > "$dir/haproxy.cfg"
    echo "$front" > "$dir/front"
    bg /usr/sbin/haproxy -db -f "$dir/haproxy.cfg" > "$dir/haproxy.log" 2>&1
    for _ in $(seq 100); do
        [ -S "$dir/admin.sock" ] && echo "show info" | socat stdio "UNIX-CONNECT:$dir/admin.sock" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "haproxy $name did not start:" >&2; cat "$dir/haproxy.log" >&2; return 1
}

# start_httpd NAME PORT: busybox httpd serving $BT/www/NAME (an index.html with NAME).
start_httpd() {
    mkdir -p "$BT/www/$1"
    echo "$1" > "$BT/www/$1/index.html"
    bg /bin/busybox httpd -f -p "127.0.0.1:$2" -h "$BT/www/$1"
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$2") 2>/dev/null && return 0; sleep 0.05; done
}
