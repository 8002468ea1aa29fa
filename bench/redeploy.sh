#!/bin/sh
# The redeploy of one web server in bench/cases/rolling.sh, run on its host over ssh: stop its
# busybox httpd, write the new version, start it again (at once: the old one frees the port as it
# exits; a bind that fails is tried again).
# Usage: redeploy.sh ADDR DIR CONTENT
addr=$1 dir=$2 content=$3
pkill -f "busybox httpd -p $addr " || true
echo "$content" > "$dir/index.html"
i=0
until /bin/busybox httpd -p "$addr" -h "$dir" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -lt 1000 ] || { echo "redeploy: cannot start httpd on $addr" >&2; exit 1; }
done
