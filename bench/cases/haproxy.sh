#!/usr/bin/env bash
# 2. HAProxy runtime API: the cost of one call from a script. runner keeps one connection in prompt
# mode; its per-call cost is (run of N calls - run of 0 calls) / N, so start-up is not counted.
# Against: `echo CMD | socat stdio SOCK` per call (what runbooks do), one persistent raw socket
# from python (the floor: bench/hapraw.py), and for changes an Ansible task of
# community.general.haproxy (connection local), per task = (play of K tasks - empty play) / K.
# Then `servers()` of a 200-server backend (`show stat` parsed into maps) against the raw socket
# doing the same parse.
source "$(dirname "$0")/../lib.sh"
build_runner; ensure_ansible
N=${HAPROXY_N:-1000}; S=200; K=10
servers=(web1=1 web2=2)
for i in $(seq 3 "$S"); do servers+=("web$i=$((i + 10000))"); done
# No health checks: 200 servers checked every 100 ms would load the machine the bench measures.
CHECK= start_haproxy lb "${servers[@]}"
SOCK=$BT/lb/admin.sock
R="2. HAProxy: one read, \`get weight\` (per call)"
W="2. HAProxy: one change, \`set weight\` (per call)"
V="2. HAProxy: \`servers()\` of a $S-server backend (per call)"

cat > "$BT/ops.rhai" <<RHAI
let lb = haproxy("$SOCK");
lb.weight("web_servers/web1");
let n = param("n", 0);
switch param("op", "get") {
    "get" => { for i in 0..n { lb.weight("web_servers/web1"); } }
    "set" => { for i in 0..n { lb.set_weight("web_servers/web1", 3); } }
    "servers" => { for i in 0..n { if lb.servers("web_servers").len() != $S { throw "servers"; } } }
}
RHAI
runner_per_call() {   # OP N
    local base full
    base=$(wall_ms "$RUNNER" play -q --journal "$BT/j0.jsonl" "$BT/ops.rhai" -p op="$1" -p n=0)
    rm -f "$BT/j.jsonl"
    full=$(wall_ms "$RUNNER" play -q --journal "$BT/j.jsonl" "$BT/ops.rhai" -p op="$1" -p n="$2")
    if [ "$1" = set ] && [ "$(grep -c '"effect"' "$BT/j.jsonl")" -lt "$2" ]; then
        die "runner journaled fewer than $2 changes"
    fi
    $PY -c "print(f'{($full - $base) / $2:.4f}')"
}
socat_per_call() {   # N COMMAND
    local t0 i
    t0=$(now)
    for i in $(seq "$1"); do echo "$2" | socat stdio "UNIX-CONNECT:$SOCK" >/dev/null; done
    $PY -c "print(f'{($(now) - $t0) / 1e6 / $1:.4f}')"
}
cat > "$BT/weights.yml" <<YML
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: set weight
      community.general.haproxy:
        state: enabled
        socket: $SOCK
        backend: web_servers
        host: web1
        weight: 3
      loop: "{{ range(k | int) | list }}"
YML
ansible_per_task() {
    local base full
    base=$(wall_ms "$ANSIBLE_BIN/ansible-playbook" -i localhost, -e k=0 "$BT/weights.yml")
    full=$(wall_ms "$ANSIBLE_BIN/ansible-playbook" -i localhost, -e k="$K" "$BT/weights.yml")
    $PY -c "print(f'{($full - $base) / $K:.4f}')"
}

"$RUNNER" play -q --journal "$BT/j0.jsonl" "$BT/ops.rhai" -p n=10 >/dev/null   # warm up
"$ANSIBLE_BIN/ansible-playbook" -i localhost, -e k=1 "$BT/weights.yml" > "$BT/ansible.out" \
    || { cat "$BT/ansible.out" >&2; exit 1; }
for _ in $(seq "$ROUNDS"); do
    record "$R" 'runner `lb.weight()` (one connection, prompt mode)' "$(runner_per_call get "$N")"
    record "$R" '`echo get weight ... | socat stdio SOCK`' "$(socat_per_call 200 "get weight web_servers/web1")"
    record "$R" 'raw persistent socket, python (the floor)' "$($PY "$BENCH_DIR/hapraw.py" "$SOCK" "$N" get web_servers/web1)"
    record "$W" 'runner `lb.set_weight()` (journaled effect)' "$(runner_per_call set "$N")"
    record "$W" '`echo set weight ... | socat stdio SOCK`' "$(socat_per_call 200 "set weight web_servers/web1 3")"
    record "$W" 'raw persistent socket, python (the floor)' "$($PY "$BENCH_DIR/hapraw.py" "$SOCK" "$N" set web_servers/web1)"
    record "$W" 'Ansible `community.general.haproxy` task' "$(ansible_per_task)"
    record "$V" 'runner `lb.servers()`' "$(runner_per_call servers 100)"
    record "$V" 'raw persistent socket, python, CSV parsed into dicts' "$($PY "$BENCH_DIR/hapraw.py" "$SOCK" 100 servers web_servers)"
done
