#!/usr/bin/python3
"""Import targets through the real importer path: files dropped into a connector's drop folder,
mx-importer --drain, a local HTTP receiver (receiver.py) on ports 8100-8124 and small commands.

Checks every outcome of the targets: signed 2xx imports (raw and JSON bodies, bearer auth), 4xx ->
ImportFailed with the receiver's status and text (CRLF-safe) and a spooled bounce, 408/429/5xx/
hang/dropped/refused -> kept for retry, expiry -> 5.4.7, exactly-once across an importer killed
right after the receiver acknowledged (receiver deduplicates on Idempotency-Key), bounded
concurrency across three importer processes, and exec: success, 75, 67, crash, timeout, huge
output. No wall-clock assertions: expiry uses old file times, retries are read from the journal.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from receiver import Receiver

PORT = 8101
SECRET = "s3cret-for-tests"
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


class Stack:
    def __init__(self, args, root, extra_importer="", extra_targets=""):
        self.args = args
        self.root = root
        self.drop = os.path.join(root, "drop")
        self.state = os.path.join(root, "state")
        os.makedirs(os.path.join(self.drop, "new"), exist_ok=True)
        self.config = self.write_config("mx-test", extra_importer, extra_targets)
        self.mxctl("connector", "add", "demo", "--drop-folder", self.drop,
                   "--domain", "example.test")
        self.seq = 0

    def write_config(self, host, extra_importer="", extra_targets=""):
        path = os.path.join(self.root, "mx-%s.toml" % host)
        with open(path, "w") as f:
            f.write('state_dir = "%s"\nrun_dir = "%s/run"\nmail_root = "%s/mail"\n'
                    'hostname = "%s"\nlog_level = "info"\n' % (self.state, self.root, self.root, host))
            f.write('[importer]\nretry_base_seconds = 600\neml_settle_seconds = 0\n'
                    'max_age_days = 0.01\n%s\n' % extra_importer)
            f.write('[targets]\nexec_timeout_ms = 1500\nexec_max_output = 200\n%s\n' % extra_targets)
        return path

    def mxctl(self, *a, stdin=None, ok=True):
        p = subprocess.run([self.args.mxctl, "--config", self.config] + list(a), input=stdin,
                           capture_output=True, text=True, timeout=60)
        if ok and p.returncode != 0:
            raise RuntimeError("mxctl %s: %s" % (" ".join(a), p.stderr))
        return p

    def mailbox(self, addr, target, secret=True):
        self.mxctl("mailbox", "add", addr, "--connector", "demo")
        kv = ["target=" + target]
        if secret:
            kv.append("target.secret=-")
        self.mxctl("mailbox", "set", addr, *kv, stdin=SECRET + "\n" if secret else None)

    def drop_message(self, rcpt, body="hello\r\n", extra="", age=0, multi=None):
        self.seq += 1
        name = "%d.M%d.test" % (int(time.time()), self.seq)
        if multi:
            head = "X-Sender: sender@remote.test\r\n" + "".join(
                "X-Receiver: %s\r\n" % r for r in multi)
        else:
            head = "Return-Path: <sender@remote.test>\r\nDelivered-To: %s\r\n" % rcpt
        data = (head + "From: Sender <sender@remote.test>\r\nTo: %s\r\n"
                "Subject: test %d\r\nMessage-ID: <m%d.%f@remote.test>\r\n%s\r\n%s"
                % (rcpt, self.seq, self.seq, time.time(), extra, body))
        tmp = os.path.join(self.drop, "new", "." + name)
        with open(tmp, "w", newline="") as f:
            f.write(data)
        dst = os.path.join(self.drop, "new", name)
        if age:
            t = time.time() - age
            os.utime(tmp, (t, t))
        os.rename(tmp, dst)
        return name, data

    def run_importer(self, config=None, timeout=120, wait=True):
        cmd = [self.args.importer, "--config", config or self.config, "--drain"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if not wait:
            return p
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out

    def failed(self):
        d = os.path.join(self.drop, "ImportFailed")
        out = {}
        if os.path.isdir(d):
            for n in os.listdir(d):
                if n.endswith(".json"):
                    with open(os.path.join(d, n)) as f:
                        j = json.load(f)
                    out[j["original_name"]] = j
        return out

    def waiting(self):
        d = os.path.join(self.drop, ".work", "mx-test")
        return sorted(n.split(",", 1)[1] for n in os.listdir(d)) if os.path.isdir(d) else []

    def journal(self, db):
        p = subprocess.run(["mdb_dump", "-p", "-s", db, os.path.join(self.state, "journal")],
                           capture_output=True, text=True)
        lines = p.stdout.splitlines()
        try:
            start = lines.index("HEADER=END") + 1
        except ValueError:
            return {}
        body = [l[1:] for l in lines[start:] if l.startswith(" ")]
        out = {}
        for k, v in zip(body[0::2], body[1::2]):
            dec = lambda s: s.encode("latin-1").decode("unicode_escape")  # noqa: E731
            out[dec(k)] = dec(v)
        return out


def test_webhook_outcomes(args, tmp):
    s = Stack(args, os.path.join(tmp, "outcomes"))
    base = "webhook:http://127.0.0.1:%d" % PORT
    s.mailbox("ok@example.test", base + "/ok")
    s.mailbox("ok2@example.test", base + "/ok")
    s.mailbox("json@example.test", base + "/json#format=json&inline_max=100")
    s.mailbox("bearer@example.test", base + "/bearer#auth=bearer")
    s.mailbox("nosecret@example.test", base + "/bearer#auth=bearer", secret=False)
    s.mailbox("refuse@example.test", base + "/status/422")
    s.mailbox("gone@example.test", base + "/status/404")
    s.mailbox("busy@example.test", base + "/status/503?retry_after=120")
    s.mailbox("limit@example.test", base + "/status/429")
    s.mailbox("timeout@example.test", base + "/status/408")
    s.mailbox("hang@example.test", base + "/hang#timeout=1")
    s.mailbox("drop@example.test", base + "/drop")
    s.mailbox("refused@example.test", "webhook:http://127.0.0.1:8102/ok")

    rec = Receiver(PORT, SECRET).start()
    try:
        ok = [s.drop_message("ok@example.test") for _ in range(3)]
        multi = s.drop_message("ok@example.test", multi=["ok@example.test", "ok2@example.test"])
        attach = ("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n")
        jbody = ("--zz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nthe text\r\n"
                 "--zz\r\nContent-Type: application/octet-stream\r\n"
                 "Content-Disposition: attachment; filename=\"x.bin\"\r\n"
                 "Content-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--zz--\r\n")
        s.drop_message("json@example.test", body=jbody, extra=attach)
        s.drop_message("bearer@example.test")
        nosecret = s.drop_message("nosecret@example.test")
        refuse = s.drop_message("refuse@example.test")
        gone = s.drop_message("gone@example.test")
        busy = s.drop_message("busy@example.test")
        busy_old = s.drop_message("busy@example.test", age=3600)
        temps = [s.drop_message(r) for r in ("limit@example.test", "timeout@example.test",
                                             "hang@example.test", "drop@example.test",
                                             "refused@example.test")]
        rc, out = s.run_importer()
        check(rc == 0, "importer drained (rc %s)" % rc)
        if rc != 0:
            print(out)

        oks = rec.by_path("/ok")
        check(len(oks) == 5, "5 POSTs to /ok (3 single + 1 message for 2 mailboxes): %d" % len(oks))
        check(all(e["sig_ok"] for e in oks), "every signature verifies")
        bodies = {e["body"].decode() for e in oks}
        check(all(d in bodies for _, d in ok), "bodies are the raw dropped bytes")
        check(all(e["headers"].get("Content-Type") == "message/rfc822" for e in oks),
              "Content-Type message/rfc822")
        keys = [e["key"] for e in oks]
        check(len(set(keys)) == 5, "5 distinct idempotency keys")
        multi_keys = sorted(e["key"].split(":", 1)[1] for e in oks if e["body"].decode() == multi[1])
        check(multi_keys == ["ok2@example.test", "ok@example.test"],
              "one message, two recipients: keys fingerprint:recipient %s" % multi_keys)
        check(all(e["headers"].get("X-Mx-Sender") == "sender@remote.test" for e in oks),
              "envelope sender header")
        deliveries = s.journal("deliveries")
        imported = {k.replace(" ", ":"): json.loads(v) for k, v in deliveries.items()}
        check(all(imported.get(k, {}).get("state") == "imported" for k in keys),
              "journal: every acknowledged key imported (key == journal key)")

        docs = rec.json_docs
        check(len(docs) == 1, "one JSON document")
        if docs:
            d = docs[0]
            check(d["envelope"]["recipient"] == "json@example.test"
                  and d["envelope"]["sender"] == "sender@remote.test", "JSON envelope")
            check(d["connector"] == "demo" and d["mailbox"] == "json@example.test",
                  "JSON connector and mailbox")
            check(d["text"].startswith("the text"), "JSON text body")
            att = d["attachments"]
            check(len(att) == 1 and att[0]["size"] == 5 and att[0]["filename"] == "x.bin"
                  and att[0].get("content_base64") == "AAECAwQ=", "JSON attachment inline: %s" % att)
            check(any(h["name"] == "Subject" for h in d["headers"]), "JSON headers")
        check(len(rec.by_path("/bearer")) == 1 and all(e["headers"].get("Authorization") ==
                                                       "Bearer " + SECRET
                                                       for e in rec.by_path("/bearer")),
              "bearer token sent (only for the mailbox with a secret)")

        failed = s.failed()
        r = failed.get(refuse[0])
        check(r is not None, "422 -> ImportFailed")
        if r:
            check(r["status"] == "5.6.0" and "HTTP 422" in r["diagnostic"]
                  and "receiver says 422" in r["diagnostic"], "reason has status and receiver text: "
                  + r["diagnostic"])
            check("\r" not in r["diagnostic"] and "\n" not in r["diagnostic"],
                  "receiver text is CRLF-free")
            check(r["bounce"]["state"] == "pending", "bounce spooled for the 422")
        g = failed.get(gone[0])
        check(g is not None and g["status"] == "5.1.1", "404 -> ImportFailed 5.1.1")
        old = failed.get(busy_old[0])
        check(old is not None and old["status"] == "5.4.7" and "HTTP 503" in old["diagnostic"],
              "503 past the maximum age -> ImportFailed 5.4.7")
        waiting = s.waiting()
        for name, _ in [busy, nosecret] + temps:
            check(name in waiting and name not in failed, "kept for retry: " + name)
        retries = s.journal("retries")
        errs = [json.loads(v).get("last_error", "") for v in retries.values()]
        for frag in ("HTTP 503", "HTTP 429", "HTTP 408", "4.4.2", "4.4.1", "target.secret"):
            check(any(frag in e for e in errs), "retry recorded with '%s'" % frag)
        check(len(rec.by_path("/hang")) == 1 and len(rec.by_path("/drop")) == 1,
              "hang and drop were attempted")
        secret_leak = any(SECRET in open(os.path.join(s.drop, "ImportFailed", n)).read()
                          for n in os.listdir(os.path.join(s.drop, "ImportFailed")))
        check(not secret_leak and SECRET not in out, "secret never in logs or reason files")

        # mxctl target-test: a synthetic message and the receiver's answer.
        p = s.mxctl("target-test", "ok@example.test", "--json", ok=False)
        j = json.loads(p.stdout) if p.stdout else {}
        check(p.returncode == 0 and j.get("result") == "imported", "target-test ok: %s" % p.stdout)
        check(rec.by_path("/ok")[-1]["headers"].get("X-Mx-Target-Test") is None
              and b"X-Mx-Target-Test: yes" in rec.by_path("/ok")[-1]["body"],
              "target-test message reached the receiver")
        p = s.mxctl("target-test", "refuse@example.test", ok=False)
        check(p.returncode == 1 and "receiver says 422" in p.stdout and "permanent" in p.stdout,
              "target-test shows a refusal")
        p = s.mxctl("target-test", "busy@example.test", "--json", ok=False)
        j = json.loads(p.stdout) if p.stdout else {}
        check(j.get("result") == "temporary" and j.get("retry_after") == 120,
              "target-test shows Retry-After")
    finally:
        rec.stop()


def test_exactly_once_across_restart(args, tmp):
    s = Stack(args, os.path.join(tmp, "restart"))
    s.mailbox("d@example.test", "webhook:http://127.0.0.1:%d/dedup" % (PORT + 1))
    rec = Receiver(PORT + 1, SECRET).start()
    try:
        for _ in range(6):
            s.drop_message("d@example.test")
        p = s.run_importer(wait=False)
        rec.kill_pid = p.pid
        rec.kill_after = 3
        p.communicate(timeout=120)
        check(p.returncode == -9, "importer killed after the 3rd acknowledged delivery")
        # Up to webhook_concurrency (4) requests are in flight at once: requests already sent
        # when the 3rd answer triggers the kill may be processed too (the receiver is threaded).
        check(3 <= len(rec.processed) <= 6,
              "3 to 6 processed before the crash: %d" % len(rec.processed))
        rec.kill_after = None
        rc, out = s.run_importer()
        check(rc == 0, "restarted importer drained")
        check(len(rec.processed) == 6 and all(v == 1 for v in rec.processed.values()),
              "each of 6 keys processed exactly once: %s" % list(rec.processed.values()))
        # The delivery answered when the kill came was never journaled, so it is re-sent with
        # the same key; those answered before it may already be journaled (a batch settles the
        # finished deliveries when the next one runs longer than its 5 ms slice, as on a loaded
        # machine), so how many more are re-sent depends on timing.
        dups = [e for e in rec.by_path("/dedup") if e.get("duplicate")]
        check(len(dups) >= 1, "the acknowledged-but-unjournaled ones were re-sent with the same key "
              "(at-least-once at the wire): %d" % len(dups))
        n_before = len(rec.events)
        rc, _ = s.run_importer()
        check(rc == 0 and len(rec.events) == n_before and not s.waiting() and not s.failed(),
              "nothing left, nothing re-sent")
    finally:
        rec.stop()


def test_bounded_concurrency(args, tmp):
    s = Stack(args, os.path.join(tmp, "concurrency"), extra_importer="batch_size = 1")
    s.mailbox("c@example.test", "webhook:http://127.0.0.1:%d/slow#concurrency=2" % (PORT + 2))
    rec = Receiver(PORT + 2, SECRET).start()
    rec.slow_seconds = 0.4
    try:
        for _ in range(12):
            s.drop_message("c@example.test")
        configs = [s.write_config("host%d" % i, "batch_size = 1") for i in range(4)]
        procs = [s.run_importer(config=c, wait=False) for c in configs]
        for p in procs:
            p.communicate(timeout=180)
        check(all(p.returncode == 0 for p in procs), "four importers drained")
        check(len(rec.by_path("/slow")) == 12, "12 deliveries")
        check(rec.max_in_flight <= 2, "at most 2 requests in flight (4 importers): %d"
              % rec.max_in_flight)
        print("     observed max in flight: %d" % rec.max_in_flight)
    finally:
        rec.stop()


def test_exec(args, tmp):
    root = os.path.join(tmp, "exec")
    s = Stack(args, root)
    out_dir = os.path.join(root, "out")
    os.makedirs(out_dir)
    scripts = {
        "ok": "cat > %s/\"$MX_IDEMPOTENCY_KEY\"\nenv > %s/env.txt\necho stored\nexit 0\n"
              % (out_dir, out_dir),
        "temp": "echo try later >&2\nexit 75\n",
        "nouser": "echo no such user here\nexit 67\n",
        "other": "echo broken\nexit 3\n",
        "crash": "echo dying\nkill -SEGV $$\n",
        "timeout": "echo sleeping\nsleep 60\n",
        "huge": "head -c 3000000 /dev/zero | tr '\\0' 'z'\nexit 1\n",
    }
    for name, body in scripts.items():
        p = os.path.join(root, name + ".sh")
        with open(p, "w") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(p, 0o755)
        s.mailbox("%s@example.test" % name, "exec:%s --flag 'two words'" % p, secret=False)
    msgs = {n: s.drop_message("%s@example.test" % n) for n in scripts}
    rc, out = s.run_importer()
    check(rc == 0, "importer drained (exec)")
    stored = [n for n in os.listdir(out_dir) if n != "env.txt"]
    check(len(stored) == 1, "exit 0: command stored one message")
    if stored:
        with open(os.path.join(out_dir, stored[0]), newline="") as f:
            check(f.read() == msgs["ok"][1], "stdin was the message bytes")
        with open(os.path.join(out_dir, "env.txt")) as f:
            env = dict(l.split("=", 1) for l in f.read().splitlines() if "=" in l)
        check(env.get("RECIPIENT") == "ok@example.test" and env.get("SENDER") == "sender@remote.test"
              and env.get("MX_CONNECTOR") == "demo" and "MX_CONFIG" not in env,
              "environment: envelope, connector, nothing inherited")
    failed = s.failed()
    waiting = s.waiting()
    check(msgs["ok"][0] not in failed and msgs["ok"][0] not in waiting, "exit 0 imported")
    check(msgs["temp"][0] in waiting, "exit 75 kept for retry")
    nu = failed.get(msgs["nouser"][0])
    check(nu is not None and nu["status"] == "5.1.1" and "no such user here" in nu["diagnostic"],
          "exit 67 -> ImportFailed 5.1.1 with the output")
    ot = failed.get(msgs["other"][0])
    check(ot is not None and ot["status"].startswith("5.") and "broken" in ot["diagnostic"],
          "exit 3 -> ImportFailed")
    check(msgs["crash"][0] in waiting, "crash (signal) kept for retry")
    check(msgs["timeout"][0] in waiting, "timeout kept for retry")
    hu = failed.get(msgs["huge"][0])
    check(hu is not None and len(hu["diagnostic"]) < 600 and "3000000 bytes of output" in
          hu["diagnostic"], "huge output bounded in the reason")
    errs = " ".join(json.loads(v).get("last_error", "") for v in s.journal("retries").values())
    check("time limit exceeded" in errs and "signal 11" in errs and "EX_TEMPFAIL" in errs,
          "retry reasons name timeout, signal and EX_TEMPFAIL")
    p = s.mxctl("target-test", "nouser@example.test", ok=False)
    check(p.returncode == 1 and "no such user here" in p.stdout, "target-test runs the command")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--importer", required=True)
    ap.add_argument("--mxctl", required=True)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mx-targets-")
    try:
        for t in (test_webhook_outcomes, test_exactly_once_across_restart, test_bounded_concurrency,
                  test_exec):
            print("== " + t.__name__, flush=True)
            t(args, tmp)
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", tmp])
    if FAILS:
        print("%d check(s) failed" % len(FAILS))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
