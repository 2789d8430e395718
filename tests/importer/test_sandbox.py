#!/usr/bin/env python3
"""The parse worker cannot read the secret store. A private installation with an SMTP password
in its secret store; the real mx-importer (its worker started by fork+exec, as in production)
gets normal mails and one whose parse makes the worker try to open the secret store's file
(test-only fault injection: what an exploited parser would do). The worker is killed by the
sandbox (SIGSYS), that file alone ends in ImportFailed as unparseable (after the retry and the
envelope-only pass), the normal mails are imported once each, the startup log says the sandbox
is active, and the secret's value appears nowhere in the mailboxes or ImportFailed."""
import os
import subprocess
import sys

import mxenv

SECRET = "hunter2-smtp-password-sandbox-test"


def main():
    a = mxenv.args()
    env = mxenv.Env(a.importer, a.mxctl)
    ok = False
    try:
        env.setup_demo()
        r = subprocess.run([a.mxctl, "--config", env.conf, "connector", "set", "demo",
                            "smtp.secret=-"], input=SECRET + "\n", capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        secret_db = os.path.join(env.state, "secrets", "data.mdb")
        with open(secret_db, "rb") as f:
            assert SECRET.encode() in f.read(), "the secret is in the store file"

        for i in range(5):
            mxenv.write_maildir(env.drop, f"normal{i}", mxenv.message(f"n{i}", "info@example.test"))
        probe = (b"Return-Path: <s@remote.example>\r\nDelivered-To: sales@example.test\r\n"
                 b"X-Mx-Test-Fault: open " + secret_db.encode() + b"\r\n"
                 b"Subject: probe\r\nMessage-ID: <probe@test>\r\nX-Test-Id: probe\r\n\r\nbody\r\n")
        mxenv.write_maildir(env.drop, "probe", probe)

        env.drain(env={"MX_IMPORTER_FAULT_INJECTION": "1"})
        log = open(os.path.join(env.root, "drain.log"), errors="replace").read()

        assert "parse worker sandbox active" in log, log
        assert "killed by the sandbox" in log, log
        assert not env.pending(), env.pending()
        got = sorted(mxenv.test_id_of(f) for f in env.files(env.maildir_new("info@example.test")))
        assert got == [f"n{i}" for i in range(5)], got
        assert env.files(env.maildir_new("sales@example.test")) == [], "the probe was not imported"
        msgs, reasons = env.failed()
        assert len(msgs) == 1 and mxenv.test_id_of(msgs[0]) == "probe", msgs
        why = reasons[msgs[0]]
        assert why["reason"] == "unparseable", why
        assert [x["recipient"] for x in why["recipients"]] == ["sales@example.test"], why
        # Nothing the worker answered carries the secret (it never read it).
        for root, _dirs, names in os.walk(env.root):
            if root.startswith(os.path.join(env.state, "secrets")):
                continue
            for n in names:
                p = os.path.join(root, n)
                if os.path.isfile(p) and not os.path.islink(p):
                    with open(p, "rb") as f:
                        assert SECRET.encode() not in f.read(), f"secret found in {p}"
        ok = True
        print("sandbox: worker killed on opening the secret store; 5 normal mails imported")
    finally:
        env.cleanup(keep=a.keep or not ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
