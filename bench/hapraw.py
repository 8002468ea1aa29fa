"""The floor for HAProxy runtime API calls: one persistent connection to a stats socket in prompt
mode, driven by the real python interpreter, timed inside the process (no start-up counted).

Usage: hapraw.py SOCKET N MODE ARG
  MODE get:     N times `get weight ARG` (ARG: backend/server)
  MODE set:     N times `set weight ARG 3`
  MODE servers: N times `show stat ARG 4 -1`, parsed into one dict per server row (as servers() does)
Prints the milliseconds per call.
"""

import socket
import sys
import time

sock, n, mode, arg = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.socket(socket.AF_UNIX)
s.connect(sock)


def ask(line):
    s.sendall(line.encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n> ") and buf != b"> ":
        data = s.recv(65536)
        if not data:
            raise SystemExit(f"haproxy closed the connection after {line!r}")
        buf += data
    return buf[: -2].decode()


ask("prompt")
command = {"get": f"get weight {arg}", "set": f"set weight {arg} 3", "servers": f"show stat {arg} 4 -1"}[mode]
t = time.perf_counter()
for _ in range(n):
    answer = ask(command)
    if mode == "get":
        assert answer[:1].isdigit(), answer
    elif mode == "set":
        assert answer.strip() == "", answer
    else:
        lines = answer.splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
        assert len(rows) > 1, answer
print(f"{(time.perf_counter() - t) * 1000 / n:.4f}")
