#!/usr/bin/env python3
"""Long values that become journal keys, against the real mx-importer: a message with a
600-character Message-ID dropped beside normal ones (Maildir and webhook mailboxes) is imported
once like every other, .work/ ends empty and the webhook receives exactly one POST per message;
`mxctl import-status --message-id` finds the long id; `mxctl stats` shows the journal's size.
Second part: a long drop folder path and host name make the work path (the retry key) longer
than LMDB's 511-byte key limit; a temporarily failing file still gets its retry record and the
importer does not spin on it. Third part: retention — with a tiny `journal_days` the running
daemon prunes imported records and their index entries (seen through `mxctl stats --json`)."""
import json
import os
import subprocess
import sys

import mxenv
from receiver import Receiver  # tests/targets, on PYTHONPATH (tests/importer/CMakeLists.txt)

PORT = 8137
SECRET = "long-keys-secret"
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def set_webhook(env, mailbox, url):
    p = subprocess.run([env.mxctl, "--config", env.conf, "mailbox", "set", mailbox,
                        "target=webhook:" + url, "target.secret=-"],
                       input=SECRET + "\n", capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("mailbox set: " + p.stderr)


def mdb_dump(env, db):
    p = subprocess.run(["mdb_dump", "-p", "-s", db, os.path.join(env.state, "journal")],
                       capture_output=True, text=True)
    lines = p.stdout.splitlines()
    if "HEADER=END" not in lines:
        return {}
    body = [l[1:] for l in lines[lines.index("HEADER=END") + 1:] if l.startswith(" ")]
    dec = lambda s: s.encode("latin-1").decode("unicode_escape")  # noqa: E731
    return {dec(k): dec(v) for k, v in zip(body[0::2], body[1::2])}


def hostile_message(test_id, rcpt, long_id):
    return (f"Return-Path: <s@remote.example>\r\nDelivered-To: {rcpt}\r\n"
            f"From: s@remote.example\r\nSubject: long id {test_id}\r\nMessage-ID: {long_id}\r\n"
            f"X-Test-Id: {test_id}\r\n\r\nbody\r\n").encode()


def long_message_id(a):
    env = mxenv.Env(a.importer, a.mxctl)
    rec = Receiver(PORT, SECRET).start()
    try:
        env.setup_demo(("info@example.test", "hook@example.test"))
        set_webhook(env, "hook@example.test", "http://127.0.0.1:%d/ok" % PORT)
        long_ids = {"hostile-mb": "<" + "x" * 600 + "@remote.example>",
                    "hostile-hook": "<" + "y" * 600 + "@remote.example>"}
        # the hostile ones first, so they share a batch with the innocent ones
        mxenv.write_maildir(env.drop, "hostile-mb", hostile_message(
            "hostile-mb", "info@example.test", long_ids["hostile-mb"]))
        mxenv.write_maildir(env.drop, "hostile-hook", hostile_message(
            "hostile-hook", "hook@example.test", long_ids["hostile-hook"]))
        ids = {"hostile-mb": "info@example.test", "hostile-hook": "hook@example.test"}
        for i in range(3):
            for rcpt in ("info@example.test", "hook@example.test"):
                tid = "n%d-%s" % (i, rcpt.split("@")[0])
                mxenv.write_maildir(env.drop, tid, mxenv.message(tid, rcpt))
                ids[tid] = rcpt
        env.drain(timeout=120)
        log = open(os.path.join(env.root, "drain.log"), errors="replace").read()
        check("batch failed" not in log, "no batch failed")
        check(env.pending() == [], "nothing left in new/ or .work/: %s" % env.pending())
        got = sorted(mxenv.test_id_of(f) for f in env.files(env.maildir_new("info@example.test")))
        want = sorted(t for t, r in ids.items() if r == "info@example.test")
        check(got == want, "Maildir: every message once %s" % got)
        posts = {}
        for e in rec.by_path("/ok"):
            tid = None
            for line in (e["body"] or b"").split(b"\r\n"):
                if line.startswith(b"X-Test-Id: "):
                    tid = line[11:].decode()
            posts[tid] = posts.get(tid, 0) + 1
        want_hook = {t: 1 for t, r in ids.items() if r == "hook@example.test"}
        check(posts == want_hook, "webhook: exactly one POST per message %s" % posts)
        check(all(e["sig_ok"] for e in rec.by_path("/ok")), "signed POSTs")
        # a second run finds nothing to do and posts nothing
        env.drain(timeout=120)
        check(len(rec.by_path("/ok")) == len(want_hook), "no POST on a second run")
        for tid, mid in long_ids.items():
            p = env.ctl("import-status", "--message-id", mid, "--json", check=False)
            out = json.loads(p.stdout) if p.returncode == 0 and p.stdout else []
            states = [d.get("state") for m in out for d in m.get("deliveries", [])]
            check(states == ["imported"], "import-status finds the long Message-ID of %s: %s"
                  % (tid, states))
        keys = list(mdb_dump(env, "msgids").keys()) + list(mdb_dump(env, "deliveries").keys())
        check(keys and max(len(k.encode()) for k in keys) <= 511, "journal keys <= 511 bytes")
        # the journal's size in mxctl stats (text, JSON, Prometheus)
        st = json.loads(env.ctl("stats", "--json").stdout)
        j = st.get("journal", {})
        check(j.get("bytes", 0) > 0 and j.get("entries", {}).get("deliveries") == len(ids),
              "stats --json: journal bytes and entries %s" % j)
        check("connectors" in st and "processes" in st, "stats --json keeps its fields")
        prom = env.ctl("stats", "--prometheus").stdout
        check("mxconnector_journal_bytes " in prom and
              'mxconnector_journal_entries{db="deliveries"} %d' % len(ids) in prom,
              "stats --prometheus: journal metrics")
        check("journal " in env.ctl("stats").stdout, "stats text: a journal line")
    finally:
        rec.stop()
        env.cleanup(keep=a.keep)


def long_retry_key(a):
    host = "h" * 200
    env = mxenv.Env(a.importer, a.mxctl, hostname=host,
                    extra="retry_base_seconds = 3600\n")
    try:
        env.drop = os.path.join(env.root, *(c * 100 for c in "abc"), "drop")
        os.makedirs(os.path.join(env.drop, "new"))
        env.setup_demo(("hook@example.test",))
        # nobody listens on this port: a temporary failure, kept for retry
        set_webhook(env, "hook@example.test", "http://127.0.0.1:9/ok")
        name = "r" * 240
        mxenv.write_maildir(env.drop, name, mxenv.message("retry", "hook@example.test"))
        work = os.path.join(env.drop, ".work", host, "n," + name)
        check(len(work.encode()) > 511, "work path is longer than 511 bytes (%d)" % len(work))
        env.drain(timeout=120)  # returns: the file waits for its retry time, no spinning
        log = open(os.path.join(env.root, "drain.log"), errors="replace").read()
        check("batch failed" not in log, "no batch failed")
        check(os.path.exists(work), "kept in .work for a retry")
        retries = [json.loads(v) for v in mdb_dump(env, "retries").values()]
        check(len(retries) == 1 and retries[0].get("path") == work
              and retries[0].get("attempts") == 1, "one retry record for the long work path")
        check(log.count("outcome=deferred") == 1, "tried once")
    finally:
        env.cleanup(keep=a.keep)


def retention(a):
    # journal_days = 0.0001: records older than ~8 s go; the prune runs every second
    env = mxenv.Env(a.importer, a.mxctl,
                    extra="journal_days = 0.0001\njournal_prune_seconds = 1\n")
    try:
        env.setup_demo(("info@example.test",))
        for i in range(3):
            mxenv.write_maildir(env.drop, "ret%d" % i, mxenv.message("ret%d" % i,
                                                                      "info@example.test"))
        env.start(log=os.path.join(env.root, "importer.log"))

        def entries():
            st = json.loads(env.ctl("stats", "--json").stdout)
            return st.get("journal", {}).get("entries", {})
        env.wait_until(lambda: entries().get("deliveries") == 3, timeout=60, what="3 imported")
        env.wait_until(lambda: entries().get("deliveries") == 0, timeout=120, what="pruned")
        e = entries()
        check(e.get("files") == 0 and e.get("msgids") == 0,
              "index entries pruned with their records: %s" % e)
        check(len(env.files(env.maildir_new("info@example.test"))) == 3,
              "the mailbox keeps its messages")
        check(mxenv.logged(os.path.join(env.root, "importer.log"), "journal: pruned"),
              "the daemon logs the prune")
    except AssertionError as e:
        check(False, str(e))
    finally:
        env.cleanup(keep=a.keep)


def main():
    a = mxenv.args()
    long_message_id(a)
    long_retry_key(a)
    retention(a)
    if FAILS:
        print("%d check(s) failed" % len(FAILS))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
