#!/usr/bin/env bash
# Fan-out of one command to many hosts: `parallel(hosts(), N, |h| h.run("true"))` over a TOML
# inventory of N sshd processes on 127.0.0.1 (each with its own config and port), against N plain
# `ssh -o ControlMaster=no ... true` started at once with the same options. Each is a whole run:
# runner's time includes its start, every handshake and closing every master. Then a host that
# accepts TCP and never sends a banner: how much later a command on an already connected host
# answers while that host's handshake hangs.
# The sshds are configured like bench/ssh.sh's (UsePAM no, UseDNS no; the user logs in with /bin/sh
# and no rc files). Medians of RUNS interleaved runs.
# Usage: bash bench/fanout.sh [HOSTS] [RUNS]   (default 50 hosts, 7 runs; RUNNER=path measures
# another build of runner instead of building this one)
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${1:-50}
RUNS=${2:-7}
bash dev/setup.sh >/dev/null
if [ -z "${RUNNER:-}" ]; then
    cargo build --release -q
    RUNNER=$PWD/target/release/runner
fi
USER_=runner-test
PY=/usr/bin/python3

tmp=$(mktemp -d /tmp/runner-bench-fanout.XXXXXX)
chmod 755 "$tmp"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
ssh-keygen -q -t ed25519 -N '' -f "$tmp/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$tmp/id"
cp "$tmp/id.pub" "$tmp/authorized_keys"; chmod 644 "$tmp/authorized_keys"
ports=$($PY -c "
import socket
socks = [socket.socket() for _ in range($HOSTS)]
for s in socks: s.bind(('127.0.0.1', 0))
print(' '.join(str(s.getsockname()[1]) for s in socks))")
mkdir -p /run/sshd
: > "$tmp/known_hosts"
{
    echo "[defaults]"
    echo "user = \"$USER_\""
    echo "key = \"$tmp/id\""
    echo "known_hosts_file = \"$tmp/known_hosts\""
} > "$tmp/inventory.toml"
i=0
for port in $ports; do
    i=$((i + 1))
    mkdir "$tmp/h$i"
    cat > "$tmp/h$i/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $tmp/host_key
AuthorizedKeysFile $tmp/authorized_keys
PidFile $tmp/h$i/sshd.pid
UsePAM no
UseDNS no
StrictModes no
PasswordAuthentication no
MaxSessions 10
CONF
    /usr/sbin/sshd -D -f "$tmp/h$i/sshd_config" -E "$tmp/h$i/sshd.log" & pids+=($!)
    echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$tmp/host_key.pub")" >> "$tmp/known_hosts"
    printf '\n[hosts.h%s]\naddress = "127.0.0.1:%s"\n' "$i" "$port" >> "$tmp/inventory.toml"
done
for port in $ports; do
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
done

SSH_OPTS=(-i "$tmp/id" -o IdentitiesOnly=yes -o BatchMode=yes -o ControlMaster=no -o ControlPath=none
          -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$tmp/known_hosts" -o ConnectTimeout=10
          -o ServerAliveInterval=15 -l "$USER_")
now() { date +%s%N; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "parallel(hosts(), $HOSTS, |h| h.run(\"true\"));" > "$tmp/fanout.rhai"
fanout_runner() {
    local t0; t0=$(now)
    "$RUNNER" play -q --journal "$tmp/journal.jsonl" -i "$tmp/inventory.toml" "$tmp/fanout.rhai" >/dev/null
    echo $(( ($(now) - t0) / 1000000 ))
}
fanout_ssh() {
    local t0 jobs=(); t0=$(now)
    for port in $ports; do ssh "${SSH_OPTS[@]}" -p "$port" 127.0.0.1 true & jobs+=($!); done
    for j in "${jobs[@]}"; do wait "$j"; done
    echo $(( ($(now) - t0) / 1000000 ))
}

# The banner-less host: accepts, holds every connection, never writes.
silent=$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
$PY -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $silent)); s.listen(64); held = []
while True: held.append(s.accept())" & pids+=($!)
first_port=${ports%% *}
good="ssh(\"$USER_@127.0.0.1:$first_port\", #{key: \"$tmp/id\", known_hosts_file: \"$tmp/known_hosts\"})"
hung="ssh(\"$USER_@127.0.0.1:$silent\", #{known_hosts: \"off\", connect_timeout: 3})"
# Item 0 hangs in the handshake; item 1, once it has started, times one command on the connected host.
cat > "$tmp/hung.rhai" <<RHAI
let good = $good;
let hung = $hung;
good.run("true");
let r = parallel([0, 1], 2, |i| if i == 0 {
    if param("hang", "yes") == "yes" { try { hung.run("true") } catch (e) {} }
    0.0
} else {
    sleep(0.3);
    let t = timestamp();
    good.run("true");
    t.elapsed
});
print(r[1]);
RHAI
command_ms() {
    "$RUNNER" play -q --journal "$tmp/journal.jsonl" "$tmp/hung.rhai" -p hang="$1" 2>/dev/null \
        | $PY -c "import sys; print(round(float(sys.stdin.read()) * 1000, 1))"
}

fanout_runner >/dev/null; fanout_ssh >/dev/null   # warm up
r_fan=(); s_fan=(); r_hang=(); r_free=()
for _ in $(seq "$RUNS"); do
    r_fan+=("$(fanout_runner)")
    s_fan+=("$(fanout_ssh)")
    r_hang+=("$(command_ms yes)")
    r_free+=("$(command_ms no)")
done
ratio() { $PY -c "print(f'{$1/$2:.2f}x')"; }
rf=$(median "${r_fan[@]}"); sf=$(median "${s_fan[@]}")
rh=$(median "${r_hang[@]}"); rn=$(median "${r_free[@]}")

printf '\nfan-out of `true` to %s sshd on 127.0.0.1 (medians of %s interleaved runs; 2 cores)\n\n' "$HOSTS" "$RUNS"
echo "| case | runner | ssh | ratio |"
echo "|---|---|---|---|"
echo "| \`parallel(hosts(), $HOSTS, \\|h\\| h.run(\"true\"))\`, whole run vs $HOSTS parallel \`ssh -o ControlMaster=no host true\` | ${rf} ms | ${sf} ms | $(ratio "$rf" "$sf") |"
echo "| one \`h.run(\"true\")\` on a connected host while another host's handshake hangs vs with no hung host | ${rh} ms | ${rn} ms | $(ratio "$rh" "$rn") |"
printf '\nrunner runs: %s\nssh runs:    %s\nhung: %s\nfree: %s\n' "${r_fan[*]}" "${s_fan[*]}" "${r_hang[*]}" "${r_free[*]}"
