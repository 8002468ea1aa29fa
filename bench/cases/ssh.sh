#!/usr/bin/env bash
# 3. SSH: the cost of one command (`true`) on one already connected host, in ms per command.
# runner's `h.run("true")` (a journaled effect, over its one multiplexed ControlMaster), `ssh -S` through
# a master opened beforehand (an ssh process per command), a fresh `ssh host true` (a handshake each),
# and an Ansible `shell: true` task (pipelining, ControlPersist). runner's and Ansible's figures are
# the difference between a run with the commands and the same run without them, so start-up and the
# handshake cancel out; the two ssh ones are a loop's time ÷ its commands.
source "$(dirname "$0")/../lib.sh"
build_runner; ensure_ansible
C="3. SSH: one command \`true\` on a connected host (per command)"
N=100   # commands per round for runner and ssh -S
F=20    # fresh connections per round (each is a whole handshake)
K=20    # Ansible tasks per round (each costs ~0.4 s)

start_sshds 1
read -r port < "$BT/ports"   # h1's

# runner: connect with a first command, then n more; T(n=N) - T(n=0) is N commands.
echo 'let h = hosts()[0]; h.run("true"); for i in 0..param("n", 0) { h.run("true"); }' > "$BT/cmds.rhai"
runner_run() {  # runner_run N: the script with n=N; dies with runner's stderr if it fails
    "$RUNNER" play -q --journal "$BT/j.jsonl" -i "$BT/inventory.toml" "$BT/cmds.rhai" -p n="$1" \
        >/dev/null 2>"$BT/runner.err" || { cat "$BT/runner.err" >&2; die "runner failed (n=$1)"; }
}

# ssh -S: one master for the whole case (the exit trap closes $BT/ctl-*).
ssh $(ssh_opts) -p "$port" -M -S "$BT/ctl-ssh" -f -N 127.0.0.1 || die "cannot open the ssh master"
ssh_loop() {  # ssh_loop COUNT [SSH OPTIONS...]: COUNT times `ssh ... host true`, each checked
    local count=$1 i; shift
    for ((i = 0; i < count; i++)); do
        ssh $(ssh_opts) -p "$port" "$@" 127.0.0.1 true || die "ssh $* true failed"
    done
}

# Ansible: a play of 1 task (which connects, or finds the persisted master) and the same play with
# K more; the difference is K tasks on a connected host. The baseline keeps one task, not none: a
# play without tasks never connects, and the difference would then include a handshake.
playbook() {  # playbook TASKS: a play on all hosts with TASKS `shell: true` tasks
    local i
    printf -- '- hosts: all\n  gather_facts: false\n  tasks:\n'
    for ((i = 0; i < $1; i++)); do printf '    - shell: "true"\n'; done
}
playbook 1 > "$BT/play1.yml"
playbook $((K + 1)) > "$BT/playK.yml"
ansible_run() {  # ansible_run PLAYBOOK TASKS: runs it, checks the recap says TASKS ok, none failed
    "$ANSIBLE_BIN/ansible-playbook" -i "$BT/inventory.ini" "$1" > "$BT/ansible.out" 2>&1 \
        && grep -Eq "^h1 +: ok=$2 .*unreachable=0 +failed=0 " "$BT/ansible.out" \
        || { tail -n 30 "$BT/ansible.out" >&2; die "ansible-playbook $1 failed"; }
}

# Warm-up (page cache, Python bytecode, the ssh master of Ansible), not recorded.
runner_run 10; ssh_loop 3 -S "$BT/ctl-ssh"; ansible_run "$BT/play1.yml" 1

per() { $PY -c "print(f'{($2-$1)/1e6/$3:.3f}')"; }   # per T0 T1 COUNT: ms per item
for _ in $(seq "$ROUNDS"); do
    t0=$(now); runner_run 0; t1=$(now); runner_run "$N"; t2=$(now)
    record "$C" 'runner `h.run("true")` (journaled effect)' \
        "$($PY -c "print(f'{(($t2-$t1)-($t1-$t0))/1e6/$N:.3f}')")" "T(n=$N) - T(n=0), ÷ $N"

    t0=$(now); ssh_loop "$N" -S "$BT/ctl-ssh"; t1=$(now)
    record "$C" '`ssh -S CONTROL host true` (master opened beforehand)' "$(per "$t0" "$t1" "$N")" "$N commands"

    t0=$(now); ssh_loop "$F" -o ControlMaster=no -o ControlPath=none; t1=$(now)
    record "$C" '`ssh host true` (a fresh connection each)' "$(per "$t0" "$t1" "$F")" "$F commands"

    t0=$(now); ansible_run "$BT/play1.yml" 1; t1=$(now); ansible_run "$BT/playK.yml" $((K + 1)); t2=$(now)
    record "$C" 'Ansible `shell: true` task (pipelining, ControlPersist)' \
        "$($PY -c "print(f'{(($t2-$t1)-($t1-$t0))/1e6/$K:.3f}')")" "T(1+$K tasks) - T(1 task), ÷ $K"
done
