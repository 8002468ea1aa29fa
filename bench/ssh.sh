#!/usr/bin/env bash
# Per-command cost of `h.run("true")` over runner's multiplexed connection, against `ssh -S <control>`
# (an OpenSSH ControlMaster, what runner uses underneath) and a fresh `ssh host true` per command.
# The sshd is configured as a production one tuned for speed would be: UsePAM no, UseDNS no; the user
# logs in with /bin/sh and no rc files (root's ~/.bashrc here would add ~130 ms to every command).
# Usage: bash bench/ssh.sh [N]   (N commands per method, default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-300}
bash dev/setup.sh >/dev/null
cargo build --release -q
RUNNER=$PWD/target/release/runner
USER_=runner-test

tmp=$(mktemp -d /tmp/runner-bench-ssh.XXXXXX)
chmod 755 "$tmp"
cleanup() {
    [ -n "${sshd_pid:-}" ] && kill "$sshd_pid" 2>/dev/null || true
    [ -S "$tmp/ctl" ] && ssh -S "$tmp/ctl" -O exit x >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
ssh-keygen -q -t ed25519 -N '' -f "$tmp/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$tmp/id"
cp "$tmp/id.pub" "$tmp/authorized_keys"; chmod 644 "$tmp/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$tmp/host_key.pub")" > "$tmp/known_hosts"
cat > "$tmp/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $tmp/host_key
AuthorizedKeysFile $tmp/authorized_keys
PidFile $tmp/sshd.pid
UsePAM no
UseDNS no
StrictModes no
PasswordAuthentication no
MaxSessions 10
CONF
mkdir -p /run/sshd
/usr/sbin/sshd -D -f "$tmp/sshd_config" -E "$tmp/sshd.log" & sshd_pid=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

SSH=(ssh -p "$port" -i "$tmp/id" -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile="$tmp/known_hosts" "$USER_@127.0.0.1")
now() { date +%s%N; }
per_ms() { python3 -c "print(f'{($2-$1)/1e6/$3:.3f}')"; }

# runner: the same script with 0 and N commands; the difference is the per-command cost.
spec="ssh(\"$USER_@127.0.0.1:$port\", #{key: \"$tmp/id\", known_hosts_file: \"$tmp/known_hosts\"})"
echo "let h = $spec; h.run(\"true\"); for i in 0..param(\"n\", 0) { h.run(\"true\"); }" > "$tmp/bench.rhai"
"$RUNNER" play -q --journal "$tmp/j0" "$tmp/bench.rhai" -p n=10 >/dev/null   # warm up
t0=$(now); "$RUNNER" play -q --journal "$tmp/j1" "$tmp/bench.rhai" -p n=0 >/dev/null; t1=$(now)
"$RUNNER" play -q --journal "$tmp/j2" "$tmp/bench.rhai" -p n="$N" >/dev/null; t2=$(now)
runner_ms=$(python3 -c "print(f'{(($t2-$t1)-($t1-$t0))/1e6/$N:.3f}')")
# runner, read-only commands (no journal entry): isolates the transport from the effect gate.
echo "let h = $spec; h.run(\"true\"); for i in 0..param(\"n\", 0) { h.run(\"true\", #{read_only: true}); }" > "$tmp/bench_ro.rhai"
t3=$(now); "$RUNNER" play -q "$tmp/bench_ro.rhai" -p n="$N" >/dev/null; t4=$(now)
runner_ro_ms=$(python3 -c "print(f'{(($t4-$t3)-($t1-$t0))/1e6/$N:.3f}')")

# ssh -S: one ControlMaster, N commands through it.
"${SSH[@]}" -M -S "$tmp/ctl" -f -N
t5=$(now); for _ in $(seq "$N"); do "${SSH[@]}" -S "$tmp/ctl" true; done; t6=$(now)
ctl_ms=$(per_ms "$t5" "$t6" "$N")
ssh -S "$tmp/ctl" -O exit x >/dev/null 2>&1

# fresh ssh per command (fewer: each is a whole handshake).
M=$(( N / 5 ))
t7=$(now); for _ in $(seq "$M"); do "${SSH[@]}" true; done; t8=$(now)
fresh_ms=$(per_ms "$t7" "$t8" "$M")

ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
printf '\nper-command cost of running `true` on one host (%s commands each; sshd UsePAM no, UseDNS no; user with /bin/sh, no rc files)\n\n' "$N"
printf '%-48s %10s %14s\n' "method" "ms/cmd" "vs runner"
printf '%-48s %10s %14s\n' "runner h.run(\"true\") (journaled effect)" "$runner_ms" "1.00x"
printf '%-48s %10s %14s\n' "runner h.run(\"true\", #{read_only: true})" "$runner_ro_ms" "$(ratio "$runner_ro_ms" "$runner_ms")"
printf '%-48s %10s %14s\n' "ssh -S <control> host true" "$ctl_ms" "$(ratio "$ctl_ms" "$runner_ms")"
printf '%-48s %10s %14s\n' "ssh host true (fresh connection, $M runs)" "$fresh_ms" "$(ratio "$fresh_ms" "$runner_ms")"
