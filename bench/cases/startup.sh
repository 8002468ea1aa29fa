#!/usr/bin/env bash
# 1. startup: what a run costs before it does anything. `runner eval 1` (start, engine, one
# expression), `runner play` of a one-line script (the check of every play included), the real
# python interpreter (`/usr/bin/python3 -c 1`, not the pyenv shim) and `ansible-playbook` on an
# empty play against localhost (connection local, no facts). Whole process, wall time.
source "$(dirname "$0")/../lib.sh"
build_runner; ensure_ansible
C="1. startup: one process that does nothing (wall time)"
echo 'print(1);' > "$BT/one.rhai"
printf -- '- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks: []\n' > "$BT/empty.yml"
"$RUNNER" eval 1 >/dev/null; "$ANSIBLE_BIN/ansible-playbook" -i localhost, "$BT/empty.yml" >/dev/null
for _ in $(seq "$ROUNDS"); do
    for _ in 1 2 3 4 5; do
        record "$C" '`runner eval 1`' "$(wall_ms "$RUNNER" eval 1)"
        record "$C" '`runner play one.rhai` (`print(1);`, checked first)' "$(wall_ms "$RUNNER" play -q --journal "$BT/j.jsonl" "$BT/one.rhai")"
        record "$C" '`/usr/bin/python3 -c 1`' "$(wall_ms $PY -c 1)"
    done
    record "$C" '`ansible-playbook` of an empty play (localhost)' "$(wall_ms "$ANSIBLE_BIN/ansible-playbook" -i localhost, "$BT/empty.yml")"
done
