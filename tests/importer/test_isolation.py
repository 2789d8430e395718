#!/usr/bin/env python3
"""One slow or broken target never holds up anyone else's mail: the real mx-importer with two
connectors `a` and `b` (or two mailboxes of one connector), real HTTP/SMTP servers on loopback,
real commands and real (small tmpfs) filesystems.

- hang:    a's webhook accepts and never answers; b's 50 Maildir files are all imported while
           a's first request is still unanswered (ordering, no clock); the ratio to b alone is
           printed, not asserted. a's files are kept (claimed, retried), never lost.
- breaker: a's webhook answers 503 every time; after breaker_failures requests the target is
           paused (status file, `mxctl stats`), queued deliveries are not sent, b is imported;
           a's files are retried after the pause and finally fail as before (ImportFailed 5.4.7
           with a bounce), with far fewer requests than without the breaker.
- exec:    a's command sleeps past its timeout; b's files are imported while it still runs.
- disk:    one mailbox's Maildir is on a full tmpfs (ENOSPC), another on a read-only one (EROFS);
           the healthy mailbox of the same connector is imported, the others wait (4.3.x).
- bounce:  a's SMTP server accepts and never speaks; b's non-delivery report reaches b's server
           while a's connection is still hanging.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import http.server

import mxenv

FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


class HangServer:
    """Accepts TCP connections and never answers (until stop)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns, self.accepted, self.closed_by_peer = [], 0, 0
        self.stopped = False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(c)

    def open_unanswered(self):
        """Connections accepted and not yet closed by the client."""
        n = 0
        for c in self.conns:
            try:
                c.setblocking(False)
                if c.recv(65536, socket.MSG_PEEK) == b"":
                    continue  # the client gave up (timeout)
            except BlockingIOError:
                pass
            except OSError:
                continue
            n += 1
        return n

    def stop(self):
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            c.close()


class StatusServer:
    """Answers every POST with one status (503)."""

    def __init__(self, status=503):
        outer = self
        self.requests = 0

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                outer.requests += 1
                self.send_response(status)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"busy")

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()


class SmtpSink:
    """A minimal SMTP server keeping the envelope recipients of each message."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.messages = []
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def session(self, c):
        f = c.makefile("rb")
        c.sendall(b"220 sink ESMTP\r\n")
        rcpts = []
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.strip().upper()
                if cmd.startswith(b"EHLO") or cmd.startswith(b"HELO"):
                    c.sendall(b"250-sink\r\n250 8BITMIME\r\n")
                elif cmd.startswith(b"RCPT"):
                    rcpts.append(line.strip()[8:].decode(errors="replace"))
                    c.sendall(b"250 ok\r\n")
                elif cmd == b"DATA":
                    c.sendall(b"354 go\r\n")
                    data = b""
                    while True:
                        l2 = f.readline()
                        if not l2 or l2 == b".\r\n":
                            break
                        data += l2
                    self.messages.append((rcpts, data))
                    rcpts = []
                    c.sendall(b"250 queued\r\n")
                elif cmd == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(b"250 ok\r\n")
        finally:
            c.close()

    def stop(self):
        self.sock.close()


class Two(mxenv.Env):
    """Connectors a (a.test, drop-a) and b (b.test, drop-b)."""

    def __init__(self, a, extra="", targets=""):
        super().__init__(a.importer, a.mxctl, extra=extra + "\n[targets]\n" + targets)
        self.drops = {}
        for c in ("a", "b"):
            d = os.path.join(self.root, "drop-" + c)
            os.makedirs(os.path.join(d, "new"))
            self.drops[c] = d
            self.ctl("connector", "add", c, "--drop-folder", d, "--domain", c + ".test")
        self.seq = 0

    def mailbox(self, addr, target=None):
        self.ctl("mailbox", "add", addr, "--connector", addr.split("@")[1][0])
        if target:
            self.ctl("mailbox", "set", addr, "target=" + target)

    def put(self, rcpt, n, body_size=600):
        c = rcpt.split("@")[1][0]
        for _ in range(n):
            self.seq += 1
            mxenv.write_maildir(self.drops[c], f"{self.seq}.M{self.seq}.iso",
                                mxenv.message(f"t{self.seq}", rcpt=rcpt, body_size=body_size))

    def imported(self, mailbox):
        return len(self.files(self.maildir_new(mailbox)))

    def claimed(self, c):
        d = os.path.join(self.drops[c], ".work", self.hostname)
        return len(self.files(d)) + len(self.files(os.path.join(self.drops[c], "new")))

    def failed_of(self, c):
        d = os.path.join(self.drops[c], "ImportFailed")
        return [json.load(open(f)) for f in self.files(d) if f.endswith(".json")]

    def health(self):
        try:
            with open(os.path.join(self.state, "importer-targets.json")) as f:
                return json.load(f).get("targets", [])
        except (OSError, ValueError):
            return []


def solo_seconds(a, n):
    """b alone: seconds until n files are imported (the peer of the ratio)."""
    env = Two(a)
    try:
        env.mailbox("info@b.test")
        env.put("info@b.test", n)
        t0 = time.monotonic()
        env.start()
        env.wait_until(lambda: env.imported("info@b.test") == n, 120, "b alone")
        return time.monotonic() - t0
    finally:
        env.cleanup()


def test_hang(a):
    hang = HangServer()
    env = Two(a, targets="webhook_timeout_seconds = 10\n")
    try:
        env.mailbox("info@a.test", f"webhook:http://127.0.0.1:{hang.port}/in")
        env.mailbox("info@b.test")
        env.put("info@a.test", 5)
        env.put("info@b.test", 50)
        t0 = time.monotonic()
        env.start(log=os.path.join(env.root, "importer.log"))
        env.wait_until(lambda: env.imported("info@b.test") == 50, 120, "b's 50 files")
        t_b = time.monotonic() - t0
        # Ordering, not time: a's first request is still unanswered (timeout 10 s) when b is
        # done, so b never waited behind it.
        check(hang.accepted >= 1 and hang.open_unanswered() >= 1,
              "hang: b's 50 imported while a's first webhook request is still unanswered")
        check(env.claimed("a") == 5, "hang: a's 5 files are kept (claimed, not lost)")
        solo = solo_seconds(a, 50)
        print(f"info hang: b's 50 files with a hanging: {t_b:.2f} s, alone: {solo:.2f} s, "
              f"ratio {t_b / solo:.2f}", flush=True)
    finally:
        env.cleanup()
        hang.stop()


def test_breaker(a):
    srv = StatusServer(503)
    env = Two(a, extra="retry_base_seconds = 1\nretry_max_seconds = 2\nmax_age_days = 0.0002\n"
                       "breaker_failures = 2\nbreaker_base_seconds = 3\nbreaker_max_seconds = 6\n",
              targets="webhook_timeout_seconds = 5\n")
    try:
        env.mailbox("info@a.test", f"webhook:http://127.0.0.1:{srv.port}/in")
        env.mailbox("info@b.test")
        env.put("info@a.test", 4)
        env.put("info@b.test", 10)
        env.start(log=os.path.join(env.root, "importer.log"))
        env.wait_until(lambda: any(t.get("state") == "paused" for t in env.health()), 60,
                       "a paused target in the status file")
        check(srv.requests == 2,
              f"breaker: 2 failures open it, the 2 queued deliveries are not sent ({srv.requests})")
        env.wait_until(lambda: env.imported("info@b.test") == 10, 60, "b's 10 files")
        check(True, "breaker: b's files imported")
        st = env.ctl("stats").stdout
        check("paused" in st and "127.0.0.1" in st and "waiting" in st,
              "breaker: mxctl stats shows the paused target with its waiting files")
        prom = env.ctl("stats", "--prometheus").stdout
        check("mxconnector_target_paused{" in prom, "breaker: Prometheus shows the paused target")
        # Expiry (max_age ~17 s): ImportFailed 5.4.7 with a bounce, as without the breaker.
        env.wait_until(lambda: len(env.failed_of("a")) == 4, 90, "a's 4 files in ImportFailed")
        reasons = env.failed_of("a")
        check(all(r["status"] == "5.4.7" and r["reason"] == "expired" for r in reasons),
              "breaker: a's files finally fail 5.4.7 (expired)")
        jobs = [j for j in env.bounce_jobs() if j.get("connector") == "a"]
        check(len(jobs) == 4, f"breaker: one bounce per failed file ({len(jobs)})")
        # Without the breaker: 4 files every 1-2 s for ~17 s is > 30 requests.
        check(srv.requests < 14, f"breaker: few requests while paused ({srv.requests})")
    finally:
        env.cleanup()
        srv.stop()


def sleepers(tag):
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if tag.encode() in f.read():
                        n += 1
            except OSError:
                pass
    return n


def test_exec(a):
    tag = "31.7"
    env = Two(a, targets="exec_timeout_ms = 4000\n")
    try:
        env.mailbox("info@a.test", f"exec:/bin/sleep {tag}")
        env.mailbox("info@b.test")
        env.put("info@a.test", 2)
        env.put("info@b.test", 30)
        env.start(log=os.path.join(env.root, "importer.log"))
        env.wait_until(lambda: sleepers(tag) >= 1, 60, "a's command running")
        env.wait_until(lambda: env.imported("info@b.test") == 30, 60, "b's 30 files")
        check(sleepers(tag) >= 1, "exec: b's 30 imported while a's command still sleeps")
        env.wait_until(lambda: sleepers(tag) == 0, 60, "a's command killed at its timeout")
        check(env.claimed("a") == 2 and not env.failed_of("a"),
              "exec: a's files wait for a retry (kept, not failed)")
    finally:
        env.cleanup()


def mount_tmpfs(path, opts):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path], capture_output=True)
    return r.returncode == 0


def test_disk(a):
    env = Two(a)
    mounts = []
    try:
        full = os.path.join(env.mail, "b.test", "full")
        ro = os.path.join(env.mail, "b.test", "ro")
        if not mount_tmpfs(full, "size=64k,mode=0755"):
            print("skip disk: cannot mount a tmpfs here (not root?)", flush=True)
            return
        mounts.append(full)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(full, sub))
        with open(os.path.join(full, "filler"), "wb") as f:
            try:
                f.write(b"x" * (64 * 1024))
            except OSError:
                pass
        if mount_tmpfs(ro, "size=64k,ro"):
            mounts.append(ro)
        for m in ("info@b.test", "full@b.test", "ro@b.test"):
            env.mailbox(m)
        env.put("full@b.test", 3, body_size=8000)
        if ro in mounts:
            env.put("ro@b.test", 3)
        env.put("info@b.test", 20)
        env.start(log=os.path.join(env.root, "importer.log"))
        env.wait_until(lambda: env.imported("info@b.test") == 20, 60, "the healthy mailbox")
        check(True, "disk: the healthy mailbox of the connector is imported")
        waiting = 3 + (3 if ro in mounts else 0)
        env.wait_until(lambda: env.claimed("b") == waiting, 30, "the others deferred")
        log_path = os.path.join(env.root, "importer.log")
        check(mxenv.logged(log_path, "outcome=deferred status=4.3.1"),
              "disk: full Maildir -> deferred 4.3.1 (ENOSPC)")
        if ro in mounts:
            check(mxenv.logged(log_path, "Read-only file system"),
                  "disk: read-only Maildir -> deferred (EROFS)")
        check(not env.failed_of("b"), "disk: nothing failed, the files wait for a retry")
    finally:
        env.stop_all()
        for m in mounts:
            subprocess.run(["umount", "-l", m])
        env.cleanup()


def test_bounce(a):
    hang, sink = HangServer(), SmtpSink()
    env = Two(a, extra="[smtp]\ntimeout_seconds = 10\n[bounce]\ncoalesce_seconds = 0\n")
    try:
        for c, port in (("a", hang.port), ("b", sink.port)):
            env.ctl("connector", "set", c, "smtp.host=127.0.0.1", f"smtp.port={port}",
                    "smtp.security=none")
        env.mailbox("info@a.test")
        env.mailbox("info@b.test")
        # Unknown mailboxes: 5.1.1 -> ImportFailed with a bounce to the sender.
        env.put("nobody@a.test", 1)
        env.put("nobody@b.test", 1)
        env.start(log=os.path.join(env.root, "importer.log"))
        env.wait_until(lambda: hang.accepted >= 1, 60, "a's SMTP connection")
        env.wait_until(lambda: len(sink.messages) >= 1, 60, "b's bounce at b's server")
        check(hang.open_unanswered() >= 1,
              "bounce: b's report delivered while a's SMTP server still hangs")
        check(any("sender@remote.example" in r for r in sink.messages[0][0]),
              "bounce: b's report goes to the original sender")
    finally:
        env.cleanup()
        hang.stop()
        sink.stop()


def main():
    a = mxenv.args()
    only = os.environ.get("MX_ISOLATION_ONLY", "")
    for name, fn in (("hang", test_hang), ("breaker", test_breaker), ("exec", test_exec),
                     ("disk", test_disk), ("bounce", test_bounce)):
        if only and name not in only.split(","):
            continue
        t0 = time.monotonic()
        try:
            fn(a)
        except Exception as e:  # a timeout is a failure of this scenario, the others still run
            check(False, f"{name}: {e}")
        print(f"info {name}: {time.monotonic() - t0:.1f} s", flush=True)
    if FAILS:
        print(f"{len(FAILS)} failure(s)")
        sys.exit(1)
    print("all isolation checks passed")


if __name__ == "__main__":
    main()
