#!/usr/bin/env bash
# Installs what runner's tests and demo need on a fresh Debian machine (run as root).
# Quick when everything is already there: apt-get runs only for what is missing.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have haproxy || need+=(haproxy)
have socat || need+=(socat)
have curl || need+=(curl)
have python3 || need+=(python3)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx httpd || need+=(busybox-static)
have nginx || need+=(nginx-light)
have sshd || need+=(openssh-server)
have ssh || need+=(openssh-client)
have sudo || need+=(sudo)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# sshd's privilege separation directory (test sshd instances need it).
mkdir -p /run/sshd
# The user test sshd instances log in as: /bin/sh and no rc files, so a command costs only itself
# (root's ~/.bashrc here runs pyenv init, 130 ms per ssh command).
if ! id runner-test >/dev/null 2>&1; then
    useradd --create-home --shell /bin/sh runner-test
fi
# A '!' (locked) password makes sshd without PAM refuse even key logins; '*' has no password but
# is not locked.
usermod -p '*' runner-test
# The become tests: the test user may run anything as root through sudo without a password (as
# `sudo -n`, which runner uses, needs), and nothing as any other user, so that a become_user of
# another user shows sudo's refusal.
if [ -d /etc/sudoers.d ]; then
    echo 'runner-test ALL=(root) NOPASSWD: ALL' > /etc/sudoers.d/runner-test
    chmod 0440 /etc/sudoers.d/runner-test
fi

# The docker engine: the docker tests use the real one (no registry: they build their images with
# `docker import`). Where no engine answers, install Debian's docker.io and start dockerd by hand.
if ! docker info >/dev/null 2>&1; then
    if ! command -v dockerd >/dev/null 2>&1; then
        echo "setup: installing docker.io"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends docker.io >/dev/null
    fi
    if ! docker info >/dev/null 2>&1; then
        echo "setup: starting dockerd"
        nohup dockerd >/var/log/runner-dockerd.log 2>&1 &
        for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
        docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start (see /var/log/runner-dockerd.log)" >&2; exit 1; }
    fi
fi
# The SSH tests drive docker as the test user.
if getent group docker >/dev/null 2>&1; then
    usermod -aG docker runner-test
fi
command -v tar >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq tar >/dev/null; }

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is not installed; install the Rust toolchain (rustup) first" >&2
    exit 1
fi
