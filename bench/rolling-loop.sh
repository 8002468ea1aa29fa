#!/usr/bin/env bash
# The shell version of the rolling upgrade that bench/cases/rolling.sh measures, written the way
# runbooks do it, with socat on the stats socket and ssh to each host, and with every wait a busy
# poll (no sleeps): for each server, drain, wait for its sessions to end, maintenance, redeploy
# over ssh, wait until it answers with the new version, ready, wait until HAProxy says UP.
# Usage: rolling-loop.sh SOCKET VERSION MODE HOSTS_FILE
#   MODE fresh: a new ssh connection per command; mux: one ControlMaster per host, opened by the
#   loop at its start (all at once); open: masters already open (ControlPath $BT/ctl-HOST)
#   HOSTS_FILE lines: server host_port addr dir (set SSH_OPTS, REDEPLOY, CTL_DIR in the environment)
set -euo pipefail
sock=$1 version=$2 mode=$3 hosts_file=$4
read -r -a ssh_opts <<< "$SSH_OPTS"
hap() { echo "$1" | socat stdio "UNIX-CONNECT:$sock"; }
field() {   # server column: a field of web_servers/SERVER in `show stat`
    hap "show stat" | awk -F, -v s="$1" -v c="$2" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == c || $i == "# " c) col = i }
        $1 == "web_servers" && $2 == s { print $col }'
}
on() {   # port command...
    local port=$1; shift
    case $mode in
        fresh) ssh -n "${ssh_opts[@]}" -p "$port" 127.0.0.1 "$@" ;;
        *) ssh -n "${ssh_opts[@]}" -S "$CTL_DIR/ctl-$port" -p "$port" 127.0.0.1 "$@" ;;
    esac
}
if [ "$mode" = mux ]; then
    while read -r _ port _; do
        ssh -n "${ssh_opts[@]}" -M -S "$CTL_DIR/ctl-$port" -o ControlPersist=60 -f -N -p "$port" 127.0.0.1 &
    done < "$hosts_file"
    wait
fi
while read -r server port addr dir; do
    hap "set server web_servers/$server state drain" >/dev/null
    until [ "$(field "$server" scur)" = 0 ]; do :; done
    hap "set server web_servers/$server state maint" >/dev/null
    on "$port" "$REDEPLOY" "$addr" "$dir" "'$server $version'"   # ssh joins its words: quoted for the remote shell
    until curl -fs "http://$addr/" | grep -q "$version"; do :; done
    hap "set server web_servers/$server state ready" >/dev/null
    until [ "$(field "$server" status)" = UP ]; do :; done
done < "$hosts_file"
