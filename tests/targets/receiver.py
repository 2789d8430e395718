"""A local webhook receiver for the target tests and the benchmark (Python stdlib only).

Behaviour by path (query strings are ignored):
  /ok            200 after verifying the signature (when a secret is set)
  /status/NNN    answers NNN with a text body; ?retry_after=S adds Retry-After
  /hang          never answers (until the server stops)
  /drop          closes the connection without an answer
  /dedup         deduplicates on Idempotency-Key: the first request per key is "processed",
                 later ones are acknowledged as duplicates; kill_after=N SIGKILLs `kill_pid`
                 right after answering the N-th processed request
  /slow          sleeps `slow_seconds`, tracking the maximum number of requests in flight
  /bearer        200 only with "Authorization: Bearer <secret>", else 401
  /json          200 when the body is a JSON object (kept in `json_docs`)
Every request is recorded in `events` (path, key, signature verdict, body length, headers).
HTTP/1.1 with keep-alive, one thread per connection.
"""
import hashlib
import hmac
import http.server
import json
import os
import signal
import socket
import threading
import time


class Receiver:
    def __init__(self, port, secret=None, quiet=True, record_bodies=True):
        self.port = port
        self.secret = secret.encode() if isinstance(secret, str) else secret
        self.events = []
        self.json_docs = []
        self.processed = {}  # idempotency key -> count of processed requests
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.slow_seconds = 0.3
        self.kill_after = None
        self.kill_pid = None
        self.stop_event = threading.Event()
        self.record_bodies = record_bodies
        self.count = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                if not quiet:
                    http.server.BaseHTTPRequestHandler.log_message(self, *a)

            def setup(self):
                http.server.BaseHTTPRequestHandler.setup(self)
                # Status line, headers and body go out in separate writes: without NODELAY,
                # Nagle + the client's delayed ACK add 40 ms to every answer.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def answer(self, code, text="", headers=None):
                body = text.encode()
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                path = self.path.split("?")[0]
                query = dict(
                    kv.split("=", 1) for kv in self.path.split("?", 1)[1].split("&")
                ) if "?" in self.path else {}
                key = self.headers.get("Idempotency-Key", "")
                sig_ok = None
                if receiver.secret is not None:
                    ts = self.headers.get("X-Mx-Timestamp", "")
                    sig = self.headers.get("X-Mx-Signature", "")
                    want = "sha256=" + hmac.new(receiver.secret, ts.encode() + b"." + body,
                                                hashlib.sha256).hexdigest()
                    sig_ok = hmac.compare_digest(sig, want)
                ev = {"path": path, "key": key, "sig_ok": sig_ok, "len": len(body),
                      "headers": dict(self.headers.items()),
                      "body": body if receiver.record_bodies else None}
                with receiver.lock:
                    receiver.events.append(ev)
                    receiver.count += 1
                if path == "/ok":
                    if sig_ok is False:
                        return self.answer(401, "bad signature")
                    return self.answer(200, "ok")
                if path.startswith("/status/"):
                    code = int(path.split("/")[2])
                    hdr = {}
                    if "retry_after" in query:
                        hdr["Retry-After"] = query["retry_after"]
                    return self.answer(code, "receiver says %d\r\nX-Injected: yes" % code, hdr)
                if path == "/hang":
                    receiver.stop_event.wait(60)
                    return
                if path == "/drop":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if path == "/bearer":
                    if self.headers.get("Authorization") == "Bearer " + receiver.secret.decode():
                        return self.answer(200, "ok")
                    return self.answer(401, "who are you")
                if path == "/json":
                    try:
                        doc = json.loads(body)
                        with receiver.lock:
                            receiver.json_docs.append(doc)
                        return self.answer(200, "ok")
                    except ValueError:
                        return self.answer(400, "not json")
                if path == "/slow":
                    with receiver.lock:
                        receiver.in_flight += 1
                        receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                    time.sleep(receiver.slow_seconds)
                    with receiver.lock:
                        receiver.in_flight -= 1
                    return self.answer(200, "ok")
                if path == "/dedup":
                    with receiver.lock:
                        first = key not in receiver.processed
                        receiver.processed[key] = receiver.processed.get(key, 0) + (1 if first else 0)
                        ev["duplicate"] = not first
                        done = sum(1 for v in receiver.processed.values() if v)
                    self.answer(200, "processed" if first else "duplicate")
                    if first and receiver.kill_after and done == receiver.kill_after \
                            and receiver.kill_pid:
                        os.kill(receiver.kill_pid, signal.SIGKILL)
                    return
                return self.answer(404, "no such path")

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

        self.server = Server(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()

    def by_path(self, path):
        with self.lock:
            return [e for e in self.events if e["path"] == path]


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8120)
    ap.add_argument("--secret")
    a = ap.parse_args()
    r = Receiver(a.port, a.secret, quiet=True, record_bodies=False).start()
    print("listening on 127.0.0.1:%d" % a.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        r.stop()
