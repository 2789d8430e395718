#!/usr/bin/env python3
"""Hostile files against the running mx-importer daemon: empty, binary garbage, 50 MB
attachment, 2 MB header line, group syntax (To: undisclosed-recipients: / To: x:), base64
with '|', 10,000 nested multiparts, missing envelope, unknown recipient, path traversal
local parts, a symlink, files that disappear while the importer works, unreadable files.
The daemon stays alive and every file ends in the right place."""
import base64
import os
import random
import signal
import sys
import threading
import time

import mxenv


def env_hdr(rcpt="info@example.test"):
    return f"Return-Path: <s@remote.example>\r\nDelivered-To: {rcpt}\r\n".encode()


def main():
    a = mxenv.args()
    env = mxenv.Env(a.importer, a.mxctl)
    ok = False
    try:
        env.setup_demo()
        env.ctl("domain", "add", "demo", "catchall.test")
        env.ctl("mailbox", "add", "@catchall.test", "--connector", "demo")
        log = os.path.join(env.root, "importer.log")
        daemon = env.start(log=log)
        rng = random.Random(7)
        cases = {}  # name -> expected: ("mailbox", mailbox) | ("failed", status, reason)

        def put(name, data, expect):
            mxenv.write_maildir(env.drop, name, data)
            cases[name] = expect

        put("empty", b"", ("failed", "5.6.0", "unparseable"))
        put("garbage", bytes(rng.getrandbits(8) for _ in range(200000)), ("failed", "5.6.0", "unparseable"))
        big = base64.encodebytes(os.urandom(37 * 1024 * 1024))  # ~50 MB of base64
        put("attachment50mb", env_hdr() + b"Subject: big\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
            b"--B\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--B\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + big +
            b"\r\n--B--\r\n", ("mailbox", "info@example.test"))
        put("header2mb", env_hdr() + b"X-Long: " + b"h" * (2 * 1024 * 1024) + b"\r\nSubject: long\r\n\r\nbody\r\n",
            ("mailbox", "info@example.test"))
        put("undisclosed", env_hdr() + b"To: undisclosed-recipients:\r\nSubject: g\r\n\r\nbody\r\n",
            ("mailbox", "info@example.test"))
        put("group_x", env_hdr("sales@example.test") + b"To: x:\r\nCc: y:\r\n\r\nbody\r\n",
            ("mailbox", "sales@example.test"))
        put("group_only", b"To: undisclosed-recipients:\r\nSubject: no envelope\r\n\r\nbody\r\n",
            ("failed", "5.6.0", "unparseable"))
        put("base64_pipe", env_hdr() + b"Content-Type: multipart/mixed; boundary=Z\r\n\r\n--Z\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n|||QUJD||||=|=\r\n--Z--\r\n", ("mailbox", "info@example.test"))
        nested = env_hdr() + b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
        nested += b"".join(b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i, i + 1)
                           for i in range(10000))
        put("nested10000", nested, ("mailbox", "info@example.test"))
        put("no_envelope", b"From: x@remote.example\r\nSubject: none\r\n\r\nbody\r\n", ("failed", "5.6.0", "unparseable"))
        put("unknown_rcpt", env_hdr("nobody@example.test") + b"\r\nbody\r\n", ("failed", "5.1.1", "no-mailbox"))
        # dot-atoms like ../.. are not valid local parts: 5.1.3, even where a catch-all exists
        put("traversal_unknown", env_hdr("../../etc@example.test") + b"\r\nbody\r\n", ("failed", "5.1.3", "no-mailbox"))
        put("traversal_catchall", env_hdr("../../../tmp/owned@catchall.test") + b"\r\nbody\r\n",
            ("failed", "5.1.3", "no-mailbox"))
        put("slash_catchall", env_hdr('"a/../../b"@catchall.test') + b"\r\nbody\r\n", ("mailbox", "@catchall.test"))
        # an unreadable file: root reads it anyway (imported); anyone else defers it (kept)
        put("unreadable", env_hdr() + b"\r\nsecret\r\n", ("mailbox", "info@example.test"))
        os.chmod(os.path.join(env.drop, "new", "unreadable"), 0)
        if os.geteuid() != 0:
            cases["unreadable"] = ("kept",)
        # a symlink placed in the drop folder is not followed
        target = os.path.join(env.root, "outside-secret")
        open(target, "w").write("Delivered-To: info@example.test\r\n\r\nsecret\r\n")
        os.symlink(target, os.path.join(env.drop, "new", "symlink"))
        cases["symlink"] = ("failed", "5.6.0", "unparseable")

        # files that disappear while the importer works: drop many, delete some at random
        vanish = [f"vanish{i:04d}" for i in range(1500)]
        for n in vanish:
            mxenv.write_maildir(env.drop, n, env_hdr() + f"X-Test-Id: {n}\r\n\r\nbody\r\n".encode())
        deleted = set()

        def deleter():
            for n in rng.sample(vanish, 700):
                try:
                    os.unlink(os.path.join(env.drop, "new", n))
                    deleted.add(n)
                except FileNotFoundError:
                    pass
        th = threading.Thread(target=deleter)
        th.start()
        th.join()

        env.wait_until(lambda: not env.pending() or cases.get("unreadable") == ("kept",) and len(env.pending()) == 1,
                       timeout=240, what="the drop folder to empty")
        time.sleep(0.5)
        assert daemon.poll() is None, "mx-importer died"

        failed_msgs, reasons = env.failed()
        by_name = {os.path.basename(m): r for m, r in reasons.items()}
        problems = []
        for name, exp in cases.items():
            if exp[0] == "failed":
                r = by_name.get(name)
                if not r:
                    problems.append(f"{name}: not in ImportFailed")
                    continue
                if exp[1] and r["status"] != exp[1]:
                    problems.append(f"{name}: status {r['status']} != {exp[1]}")
                if r["reason"] != exp[2]:
                    problems.append(f"{name}: reason {r['reason']} != {exp[2]}")
            elif exp[0] == "mailbox":
                if name in by_name:
                    problems.append(f"{name}: unexpectedly failed: {by_name[name]['diagnostic']}")
        # the mailbox contents: compare sizes of what arrived with the inputs we expected there
        got = {}
        for mb in ("info@example.test", "sales@example.test", "@catchall.test"):
            for f in env.files(env.maildir_new(mb)):
                got.setdefault(mb, []).append(os.path.getsize(f))
        info_sizes = got.get("info@example.test", [])
        if not any(s > 50_000_000 for s in info_sizes):
            problems.append("the 50 MB message is not in info's Maildir")
        if len(got.get("@catchall.test", [])) != 1:  # the quoted "a/../../b" local part
            problems.append(f"catch-all got {len(got.get('@catchall.test', []))} messages, expected 1")
        # nothing was written outside mail_root
        for root, _, files in os.walk(env.root):
            for f in files:
                p = os.path.join(root, f)
                if "owned" in f or (root.startswith(env.root) and not (
                        root.startswith(env.mail) or root.startswith(env.drop) or root.startswith(env.state)
                        or root == env.root or root.startswith(os.path.join(env.root, "run")))):
                    problems.append(f"unexpected file {p}")
        if os.path.exists("/tmp/owned"):
            problems.append("/tmp/owned was created")
        # vanished files: each either imported once or gone before it was claimed; never twice
        seen = {}
        for f in env.files(env.maildir_new("info@example.test")):
            t = mxenv.test_id_of(f)
            if t and t.startswith("vanish"):
                seen[t] = seen.get(t, 0) + 1
        for n in vanish:
            c = seen.get(n, 0)
            if c > 1 or (c == 0 and n not in deleted):
                problems.append(f"{n}: {c} copies (deleted by test: {n in deleted})")
        assert daemon.poll() is None, "mx-importer died"
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=60)
        if rc != 0:
            problems.append(f"mx-importer exit status {rc} after SIGTERM")
        assert not problems, "\n".join(problems)
        print(f"hostile files: {len(cases)} cases + {len(vanish)} racing deletions; daemon survived; all in place")
        ok = True
    finally:
        env.cleanup(keep=a.keep, ok=ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
