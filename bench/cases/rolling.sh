#!/usr/bin/env bash
# 5. the 3-server rolling upgrade under load, every sleep at 0. Three busybox httpd servers behind
# HAProxy (health checks every 100 ms), each on its own host (an sshd on 127.0.0.1, user
# runner-test); redeploying one = bench/redeploy.sh over ssh on its host (stop the httpd, write
# the new version, start it). The same upgrade four ways, whole run from start to end, while
# bench/load.py sends 8 clients' requests through the frontend and counts the failed ones:
# runner (bench/rolling-upgrade.rhai: stdlib rolling::upgrade, all hosts connected at once first), the
# shell loop (bench/rolling-loop.sh: socat + ssh) with a fresh ssh per command and with ssh -S
# masters it opens at its start, the same with masters already open (not counted: the floor),
# and an Ansible playbook (bench/rolling.yml, serial 1, community.general.haproxy, uri).
source "$(dirname "$0")/../lib.sh"
build_runner; ensure_ansible
C="5. rolling upgrade of 3 servers under load (whole run)"
start_sshds 3
read -r -a host_ports <<< "$(ports 3)"
read -r -a web_ports <<< "$(free_ports 3)"
REDEPLOY=$BT/redeploy.sh
cp "$BENCH_DIR/redeploy.sh" "$REDEPLOY"
: > "$BT/servers"
cat "$BT/inventory.toml" | sed '/^\[hosts\./,$d' > "$BT/rolling.toml"
printf 'localhost ansible_connection=local\n[web]\n' > "$BT/rolling.ini"
servers=()
for i in 1 2 3; do
    addr=127.0.0.1:${web_ports[$((i - 1))]} dir=$BT/www/web$i
    mkdir -p "$dir"; echo "web$i v0" > "$dir/index.html"; chown -R "$USER_" "$dir"
    su -s /bin/sh "$USER_" -c "/bin/busybox httpd -p $addr -h $dir"
    servers+=("web$i=${web_ports[$((i - 1))]}")
    echo "web$i ${host_ports[$((i - 1))]} $addr $dir" >> "$BT/servers"
    printf '\n[hosts.h%s]\naddress = "127.0.0.1:%s"\nserver = "web%s"\naddr = "%s"\ndir = "%s"\n' \
        "$i" "${host_ports[$((i - 1))]}" "$i" "$addr" "$dir" >> "$BT/rolling.toml"
    printf 'h%s ansible_host=127.0.0.1 ansible_port=%s ansible_user=%s ansible_ssh_private_key_file=%s server=web%s addr=%s dir=%s\n' \
        "$i" "${host_ports[$((i - 1))]}" "$USER_" "$BT/id" "$i" "$addr" "$dir" >> "$BT/rolling.ini"
done
printf '\n[groups.web]\nhosts = ["h1", "h2", "h3"]\n' >> "$BT/rolling.toml"
stop_httpds() { pkill -f "busybox httpd -p 127.0.0.1:.* -h $BT/www/" || true; }
trap 'stop_httpds; bench_cleanup' EXIT
start_haproxy lb "${servers[@]}"
SOCK=$BT/lb/admin.sock
URL=http://127.0.0.1:$(cat "$BT/lb/front")/

all_up() {
    [ "$(echo "show stat" | socat stdio "UNIX-CONNECT:$SOCK" | awk -F, '$1 == "web_servers" && $2 ~ /^web/ && $18 == "UP"' | wc -l)" = 3 ]
}
export SSH_OPTS CTL_DIR=$BT REDEPLOY SOCK VERSION RUNNER ANSIBLE_BIN BENCH_DIR BT
SSH_OPTS=$(ssh_opts)
# run METHOD COMMAND...: one whole upgrade to a new version under load, recorded with its failures.
n=0
run() {
    local method=$1 t0 t1 ok failed; shift
    n=$((n + 1)); VERSION=v$n
    for _ in $(seq 200); do all_up && break; sleep 0.05; done
    all_up || { die "a server is not UP before \"$method\""; }
    $PY "$BENCH_DIR/load.py" "$URL" 8 > "$BT/load.out" & local load=$!
    until grep -q ready "$BT/load.out" 2>/dev/null; do sleep 0.01; done
    t0=$(now)
    timeout 300 bash -c '"$@"' _ "$@" > "$BT/method.out" 2>&1 || { cat "$BT/method.out" >&2; kill "$load"; die "\"$method\" failed"; }
    t1=$(now)
    kill -TERM "$load"; wait "$load" || true
    read -r ok failed < <(tail -1 "$BT/load.out")
    for i in 1 2 3; do
        grep -q "web$i $VERSION" "$BT/www/web$i/index.html" || { die "\"$method\" left web$i at $(cat "$BT/www/web$i/index.html")"; }
    done
    record "$C" "$method" "$(ms "$t0" "$t1")" "$failed failed of $((ok + failed)) requests"
}
open_masters() {
    while read -r _ p _; do
        ssh -n $SSH_OPTS -M -S "$BT/ctl-$p" -o ControlPersist=60 -f -N -p "$p" 127.0.0.1
    done < "$BT/servers"
}
close_masters() {
    while read -r _ p _; do ssh -S "$BT/ctl-$p" -O exit x >/dev/null 2>&1 || true; done < "$BT/servers"
}
runner_upgrade() {
    "$RUNNER" play -q --journal "$BT/j.jsonl" -i "$BT/rolling.toml" "$BENCH_DIR/rolling-upgrade.rhai" \
        -p socket="$SOCK" -p version="$VERSION" -p redeploy="$REDEPLOY"
}
ansible_upgrade() {
    "$ANSIBLE_BIN/ansible-playbook" -i "$BT/rolling.ini" "$BENCH_DIR/rolling.yml" \
        -e socket="$SOCK" -e version="$VERSION" -e redeploy="$REDEPLOY"
}
shell_upgrade() { bash "$BENCH_DIR/rolling-loop.sh" "$SOCK" "$VERSION" "$1" "$BT/servers"; }
mux_upgrade() { shell_upgrade mux && close_masters; }
export -f runner_upgrade ansible_upgrade shell_upgrade mux_upgrade close_masters

for _ in $(seq "$ROUNDS"); do
    run 'runner `rolling::upgrade` (bench/rolling-upgrade.rhai)' runner_upgrade
    run 'shell loop, ssh -S masters opened by the loop' mux_upgrade
    open_masters
    run 'shell loop, ssh -S masters already open (not counted)' shell_upgrade open
    close_masters
    run 'shell loop, a fresh ssh per command' shell_upgrade fresh
    run 'Ansible playbook (serial 1, community.general.haproxy)' ansible_upgrade
    close_ansible_masters   # every Ansible run starts cold, as runner's do
done
