"""Peak memory of a command and of everything it starts, for bench/cases/memory.sh.

Runs CMD as its child and, every 50 ms until CMD exits, sums RSS and PSS (from
/proc/PID/smaps_rollup) over groups of processes: `root` (CMD's own process), `ssh` (every process
named ssh: the masters, and for Ansible also the ssh client of each task), `other` (every other
descendant and CMD: for Ansible its Python processes) and `all` (CMD and every descendant). It keeps the peak of each sum and how many processes the group had then.
The sampler makes itself a child subreaper, so processes that daemonize (`ssh -f` masters,
ControlPersist masters) are reparented to it instead of init and stay in the tree it walks.

On SIGUSR1 it also keeps the next sample begun as a snapshot, `at_signal` (the sums and the process
counts at that moment), and then creates OUT.json.snap, so a caller can take a snapshot at a
moment of its choosing (e.g. all commands running) and wait until it is taken.

PSS divides each shared page among the processes mapping it, so the PSS sums of the groups add up
to what they cost together; RSS counts shared pages (libc, the ssh binary) once per process.

Usage: python3 bench/memsample.py OUT.json CMD [ARGS...]
Writes {"rc": ..., "samples": ..., "tick_ms": ..., "left": ..., "peak": {GROUP: {"rss_mb",
"rss_n", "pss_mb", "pss_n"}}, "at_signal": {GROUP: {"rss_mb", "pss_mb", "n"}} or null} to OUT.json and exits with CMD's exit code. CMD's output is its own.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
INTERVAL = 0.05
GROUPS = ("root", "ssh", "other", "all")


def children(pid):
    """The direct children of pid (every thread's: a child belongs to the thread that forked it)."""
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(k) for k in f.read().split())
    except OSError:
        pass  # the process is gone
    return kids


def descendants(pid):
    out, todo = [], children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def usage(pid):
    """(comm, rss_kb, pss_kb) of pid, or None if it is gone (a zombie maps nothing: 0, 0)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
        rss = pss = 0
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
        return comm, rss, pss
    except (OSError, ValueError):
        return None


def main(out_path, cmd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"memsample: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    me = os.getpid()
    wanted = []  # set by SIGUSR1
    signal.signal(signal.SIGUSR1, lambda *_: wanted.append(1))
    # Popen returns once CMD is exec'd: no sample sees the forked copy of this interpreter.
    proc = subprocess.Popen(cmd)
    root = proc.pid

    peak = {g: {"rss_mb": 0.0, "rss_n": 0, "pss_mb": 0.0, "pss_n": 0} for g in GROUPS}
    rc, samples, busy, snapshot = None, 0, 0.0, None
    while rc is None:
        t0 = time.monotonic()
        take = bool(wanted)  # a signal during a sample is for the next one
        wanted.clear()
        sums = {g: [0, 0, 0] for g in GROUPS}  # rss kB, pss kB, processes
        for pid in descendants(me):
            u = usage(pid)
            if u is None:
                continue
            comm, rss, pss = u
            for g in GROUPS:
                if (g == "all" or (g == "root" and pid == root) or (g == "ssh" and comm == "ssh")
                        or (g == "other" and comm != "ssh")):
                    s = sums[g]
                    s[0] += rss
                    s[1] += pss
                    s[2] += 1
        for g, (rss, pss, n) in sums.items():
            p = peak[g]
            if rss / 1024 > p["rss_mb"]:
                p["rss_mb"], p["rss_n"] = rss / 1024, n
            if pss / 1024 > p["pss_mb"]:
                p["pss_mb"], p["pss_n"] = pss / 1024, n
        if take:
            snapshot = {g: {"rss_mb": round(rss / 1024, 2), "pss_mb": round(pss / 1024, 2), "n": n}
                        for g, (rss, pss, n) in sums.items()}
            open(out_path + ".snap", "w").close()
        samples += 1
        busy += time.monotonic() - t0
        # Reap CMD and every orphan handed to us; CMD's status ends the sampling.
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == root:
                rc = proc.returncode = os.waitstatus_to_exitcode(status)
        if rc is None:
            time.sleep(INTERVAL)

    result = {
        "rc": rc,
        "samples": samples,
        "tick_ms": round(busy / samples * 1000, 2),
        "left": len(descendants(me)),  # still running after CMD exited (e.g. ControlPersist masters)
        "peak": {g: {k: round(v, 2) for k, v in p.items()} for g, p in peak.items()},
        "at_signal": snapshot,
    }
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
    sys.exit(rc if rc >= 0 else 128 - rc)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
