#!/usr/bin/env bash
# 4. fan-out: one command `true` on each of N hosts (N sshd on 127.0.0.1), a whole run each, for N in
# $FANOUT_SIZES (default 20 50 200). runner's `parallel(hosts(), N, |h| h.run("true"))` (start, every
# handshake, the commands, closing every master); N plain `ssh host true` started at once, no master
# (the floor: a handshake per host and nothing else); `ansible-playbook -f N` of one `shell: true`
# task, facts off. Ansible's ControlPersist masters are closed after each of its runs (not timed), so
# every run of every method starts without a connection.
source "$(dirname "$0")/../lib.sh"
build_runner; ensure_ansible
SIZES=${FANOUT_SIZES:-20 50 200}

max=0; for n in $SIZES; do [ "$n" -gt "$max" ] && max=$n; done
start_sshds "$max"

# The first N hosts of the sandbox's inventories: $BT/inv-N.toml (runner) and $BT/inv-N.ini (Ansible).
inventories() {
    awk -v n="$1" '/^\[hosts\.h[0-9]+\]$/ { i = substr($0, 9, length($0) - 9) + 0 } i <= n' \
        "$BT/inventory.toml" > "$BT/inv-$1.toml"
    awk -v n="$1" '!/^h[0-9]+ / || substr($1, 2) + 0 <= n' "$BT/inventory.ini" > "$BT/inv-$1.ini"
}

# The inventory -i holds exactly the N hosts, so the width is N: every handshake may start at once.
echo 'let hs = hosts(); parallel(hs, hs.len(), |h| h.run("true"));' > "$BT/fanout.rhai"
runner_run() {  # runner_run N
    "$RUNNER" play -q --journal "$BT/j.jsonl" -i "$BT/inv-$1.toml" "$BT/fanout.rhai" \
        >/dev/null 2>"$BT/runner.err" || { cat "$BT/runner.err" >&2; die "runner failed on $1 hosts"; }
}
ssh_run() {  # ssh_run N: N ssh at once, each checked
    local pids=() p
    for p in $(ports "$1"); do
        ssh $(ssh_opts) -o ControlMaster=no -o ControlPath=none -p "$p" 127.0.0.1 true & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || die "an ssh of the $1 failed"; done
}
printf -- '- hosts: all\n  gather_facts: false\n  tasks:\n    - shell: "true"\n' > "$BT/fanout.yml"
ansible_run() {  # ansible_run N: forks=N; the recap must say ok=1, unreachable=0, failed=0 for all N
    local ok
    "$ANSIBLE_BIN/ansible-playbook" -f "$1" -i "$BT/inv-$1.ini" "$BT/fanout.yml" > "$BT/ansible.out" 2>&1 \
        || { tail -n 30 "$BT/ansible.out" >&2; die "ansible-playbook failed on $1 hosts"; }
    ok=$(grep -Ec '^h[0-9]+ +: ok=1 .*unreachable=0 +failed=0 ' "$BT/ansible.out" || true)
    [ "$ok" -eq "$1" ] || { tail -n 30 "$BT/ansible.out" >&2; die "ansible: $ok of $1 hosts ok"; }
}

# Warm-up on 5 hosts (page cache, Python bytecode), not recorded.
inventories 5; runner_run 5; ssh_run 5; ansible_run 5; close_ansible_masters

for n in $SIZES; do
    C="4. fan-out: \`true\` on $n hosts (whole run)"
    inventories "$n"
    for _ in $(seq "$ROUNDS"); do
        log "fanout: $n hosts"
        # (assigned first: a failure inside $(...) then stops the case instead of recording nothing)
        t=$(wall_ms runner_run "$n"); record "$C" "runner \`parallel(hosts(), $n, |h| h.run(\"true\"))\`" "$t"
        t=$(wall_ms ssh_run "$n"); record "$C" "$n parallel \`ssh host true\`, no master (the floor)" "$t"
        t=$(wall_ms ansible_run "$n"); record "$C" "Ansible \`shell: true\`, forks=$n (ansible-playbook, pipelining)" "$t"
        close_ansible_masters
    done
done
