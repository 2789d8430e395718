#!/usr/bin/env python3
"""Console load for scripts/bench-console: logs in to mx-console, then sends GET requests at a
fixed rate (default 200/s, paced by a schedule, not "as fast as possible") over a mix of pages
until --seconds pass or SIGTERM/SIGINT, from a few threads with keep-alive connections. Prints
one JSON line: achieved rate, errors, and p50/p99/max latency in ms per page and overall.
Every answer must be 200 (a redirect to /login or an error counts as an error).

Usage: load.py --base http://127.0.0.1:8645 --user U --password P [--rate 200] [--seconds 60]
       [--threads 4] [--paths /,/connectors,...]"""
import argparse
import http.client
import json
import re
import resource
import signal
import sys
import threading
import time
import urllib.parse

DEFAULT_PATHS = [
    "/",
    "/connectors",
    "/mailboxes",
    "/mailboxes?q=u9999",
    "/mailboxes?q=%40bench.test&from=5000",
    "/check?address=u123%40bench.test",
    "/failed",
    "/api/history.json",
    "/log",
]


def login(host, port, user, password):
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request("GET", "/login")
    r = c.getresponse()
    body = r.read().decode()
    cookie = r.getheader("Set-Cookie").split(";")[0]
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', body).group(1)
    form = urllib.parse.urlencode({"user": user, "password": password, "csrf": csrf})
    c.request("POST", "/login", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    r = c.getresponse()
    r.read()
    if r.status != 303:
        raise SystemExit(f"login failed: HTTP {r.status}")
    for h, v in r.getheaders():
        if h.lower() == "set-cookie" and v.startswith("mxc_session="):
            return v.split(";")[0]
    raise SystemExit("login: no session cookie")


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=60, help="0: until SIGTERM")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--paths", default=",".join(DEFAULT_PATHS))
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.base)
    cookie = login(u.hostname, u.port, a.user, a.password)
    paths = a.paths.split(",")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    lat = {p: [] for p in paths}
    errors = []
    lock = threading.Lock()
    seq = [0]
    t0 = time.monotonic()
    interval = 1.0 / a.rate

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        while not stop.is_set():
            with lock:
                n = seq[0]
                seq[0] += 1
            due = t0 + n * interval  # the schedule: request n is due at n/rate
            if a.seconds and due - t0 >= a.seconds:
                break
            wait = due - time.monotonic()
            if wait > 0:
                if stop.wait(wait):
                    break
            path = paths[n % len(paths)]
            s = time.monotonic()
            try:
                conn.request("GET", path, headers={"Cookie": cookie})
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException) as e:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                r = e
            ms = (time.monotonic() - s) * 1000
            with lock:
                if ok:
                    lat[path].append(ms)
                else:
                    errors.append(f"{path}: {getattr(r, 'status', r)}")

    th = [threading.Thread(target=worker) for _ in range(a.threads)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    secs = time.monotonic() - t0
    every = [x for v in lat.values() for x in v]
    out = {
        "seconds": round(secs, 1),
        "requests": len(every) + len(errors),
        "rate": round((len(every) + len(errors)) / secs, 1),
        "errors": len(errors),
        "client_cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 2),
        "first_errors": errors[:5],
        "p50_ms": round(pct(every, 50), 2),
        "p99_ms": round(pct(every, 99), 2),
        "max_ms": round(max(every) if every else 0, 2),
        "pages": {p: {"n": len(v), "p50_ms": round(pct(v, 50), 2), "p99_ms": round(pct(v, 99), 2),
                      "max_ms": round(max(v) if v else 0, 2)} for p, v in lat.items()},
    }
    print(json.dumps(out))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
