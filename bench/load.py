"""Load through a frontend while something runs: WORKERS threads GET URL in a loop (a new
connection per request, as independent clients make), until SIGTERM; then prints
`ok failed` (failed: a connection error, a timeout, or a status other than 200).

Usage: load.py URL WORKERS
"""

import http.client
import signal
import sys
import threading
import urllib.parse

url = urllib.parse.urlsplit(sys.argv[1])
workers = int(sys.argv[2])
stop = threading.Event()
counts = {"ok": 0, "failed": 0}
lock = threading.Lock()


def client():
    while not stop.is_set():
        try:
            c = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
            c.request("GET", url.path or "/")
            good = c.getresponse().status == 200
            c.close()
        except (OSError, http.client.HTTPException):
            good = False
        with lock:
            counts["ok" if good else "failed"] += 1


signal.signal(signal.SIGTERM, lambda *_: stop.set())
threads = [threading.Thread(target=client) for _ in range(workers)]
for t in threads:
    t.start()
print("ready", flush=True)
stop.wait()
for t in threads:
    t.join()
print(counts["ok"], counts["failed"], flush=True)
