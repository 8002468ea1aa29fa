#!/usr/bin/env bash
# 6. memory: peak RSS and PSS (MB) while one command runs on each of 200 hosts at once: runner's
# `parallel(hosts(), 200, ...)` (the runner process, and its 200 ssh ControlMasters: sum and each)
# against `ansible-playbook -f 200` of one `shell` task (the playbook, its forks and their ssh, with
# ControlPersist masters). bench/memsample.py runs each and sums /proc/PID/smaps_rollup over the
# process tree every 50 ms: the totals are peaks over the whole run. The command on each host waits at
# a gate the bench opens once all (200, or MEMORY_HOSTS) are waiting, so every connection, fork and
# master is alive at once; the parts are a snapshot of that moment.
source "$(dirname "$0")/../lib.sh"
build_runner; ensure_ansible
HOSTS=${MEMORY_HOSTS:-200}
A="6. memory: peak total PSS, a command on $HOSTS hosts at once"
B="6. memory: the parts, by process, with the command running on all $HOSTS hosts"

start_sshds "$HOSTS"

# The gate: a file the bench holds an exclusive flock on; each host's command takes a shared one,
# so all are released together when the bench lets go (one that arrives late passes at once).
GATE=$BT/gate
: > "$GATE"; chmod 644 "$GATE"
WAIT="flock -s $GATE true"
gated() {  # gated OUT.json LOG CMD...: CMD under memsample, the gate opened when all hosts wait
    local out=$1 logf=$2 pid n=0 i; shift 2
    exec 4<"$GATE"; flock -x 4
    # (without fd 4: a child holding it would hold the lock after the bench lets go)
    $PY "$BENCH_DIR/memsample.py" "$out" "$@" > "$logf" 2>&1 4<&- & pid=$!
    for ((i = 0; i < 6000; i++)); do   # at most 10 minutes
        n=$(pgrep -c -f "^$WAIT\$" || true)
        [ "$n" -ge "$HOSTS" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$n" -ge "$HOSTS" ]; then     # everything alive: a snapshot, then peaks of a few samples more
        rm -f "$out.snap"; sleep 0.5; kill -USR1 "$pid"
        for ((i = 0; i < 200; i++)); do [ -e "$out.snap" ] && break; sleep 0.05; done
        sleep 1
    fi
    exec 4<&-                          # opens the gate
    wait "$pid" || { tail -n 30 "$logf" >&2; die "$* failed"; }
    [ "$n" -ge "$HOSTS" ] || die "only $n of $HOSTS commands reached the gate: $*"
}
# get FILE EXPR: EXPR evaluated over memsample's JSON (its keys are the names: peak, at_signal, ...)
get() { $PY -c "import json, sys; print(eval(sys.argv[2], json.load(open(sys.argv[1]))))" "$@"; }

echo "let hs = hosts(); parallel(hs, hs.len(), |h| h.run(\"$WAIT\"));" > "$BT/gate.rhai"
printf -- '- hosts: all\n  gather_facts: false\n  tasks:\n    - shell: "%s"\n' "$WAIT" > "$BT/gate.yml"

for _ in $(seq "${MEMORY_ROUNDS:-1}"); do   # (memory varies little: one round, unless asked)
    log "memory: runner on $HOSTS hosts"
    gated "$BT/runner.json" "$BT/runner.log" \
        "$RUNNER" play -q --journal "$BT/j.jsonl" -i "$BT/inventory.toml" "$BT/gate.rhai"
    j=$BT/runner.json
    masters=$(get "$j" 'at_signal["ssh"]["n"]')
    [ "$masters" -eq "$HOSTS" ] || die "$masters ssh masters of runner alive with all commands waiting, not $HOSTS"

    log "memory: Ansible on $HOSTS hosts, forks=$HOSTS"
    gated "$BT/ansible.json" "$BT/ansible.log" \
        "$ANSIBLE_BIN/ansible-playbook" -f "$HOSTS" -i "$BT/inventory.ini" "$BT/gate.yml"
    ok=$(grep -Ec '^h[0-9]+ +: ok=1 .*unreachable=0 +failed=0 ' "$BT/ansible.log" || true)
    [ "$ok" -eq "$HOSTS" ] || { tail -n 30 "$BT/ansible.log" >&2; die "ansible: $ok of $HOSTS hosts ok"; }
    close_ansible_masters
    a=$BT/ansible.json
    log "memory: sampler ticks $(get "$j" 'tick_ms') ms (runner), $(get "$a" 'tick_ms') ms (Ansible);" \
        "Ansible at the gate: $(get "$a" 'at_signal["other"]["n"]') Python processes," \
        "$(get "$a" 'at_signal["ssh"]["n"]') ssh processes"

    # The totals, compared: the peak over the whole run of what it costs the machine (PSS adds up
    # across processes, where RSS counts shared pages once per process).
    record "$A" "runner + its ssh masters, total PSS (MB)" "$(get "$j" 'peak["all"]["pss_mb"]')" \
        "the runner process, its $HOSTS masters, its reaper"
    record "$A" "Ansible forks=$HOSTS: playbook + forks + ssh, total PSS (MB)" "$(get "$a" 'peak["all"]["pss_mb"]')" \
        "ansible-playbook, its forks, their ssh clients and ControlPersist masters"
    # The parts, in the snapshot taken while every command waits at the gate (the ratio column
    # compares each with the runner process's RSS, which means little here).
    record "$B" "runner process, RSS (MB)" "$(get "$j" 'at_signal["root"]["rss_mb"]')"
    record "$B" "runner process, PSS (MB)" "$(get "$j" 'at_signal["root"]["pss_mb"]')"
    record "$B" "runner's $HOSTS ssh masters, sum of RSS (MB)" "$(get "$j" 'at_signal["ssh"]["rss_mb"]')"
    record "$B" "runner's $HOSTS ssh masters, sum of PSS (MB)" "$(get "$j" 'at_signal["ssh"]["pss_mb"]')"
    record "$B" "one runner ssh master, RSS (MB)" "$(get "$j" 'round(at_signal["ssh"]["rss_mb"] / at_signal["ssh"]["n"], 2)')"
    record "$B" "one runner ssh master, PSS (MB)" "$(get "$j" 'round(at_signal["ssh"]["pss_mb"] / at_signal["ssh"]["n"], 2)')"
    record "$B" "ansible-playbook process, RSS (MB)" "$(get "$a" 'at_signal["root"]["rss_mb"]')"
    record "$B" "ansible-playbook process, PSS (MB)" "$(get "$a" 'at_signal["root"]["pss_mb"]')"
    record "$B" "Ansible Python processes (playbook + forks), sum of PSS (MB)" "$(get "$a" 'at_signal["other"]["pss_mb"]')" \
        "ansible-playbook and its $HOSTS forks"
    record "$B" "Ansible ssh processes (clients + masters), sum of PSS (MB)" "$(get "$a" 'at_signal["ssh"]["pss_mb"]')" \
        "a client and a ControlPersist master per host"
done
