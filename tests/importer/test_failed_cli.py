#!/usr/bin/env python3
"""mxctl failed list|show|retry|purge and mxctl import-status against real ImportFailed files:
a message for a removed mailbox fails (5.1.1); the admin adds the mailbox and retries; the
message is imported exactly once, and a second retry of the same ID is refused. `failed show`
also prints what an application would receive of a MIME message (same JSON builder)."""
import json
import os
import sys

import mxenv


MIME_MESSAGE = (
    "Return-Path: <j@remote.example>\r\nDelivered-To: mime@example.test\r\n"
    "From: =?UTF-8?Q?J=C3=BCrgen?= <j@remote.example>\r\nTo: mime@example.test\r\n"
    "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\nMessage-ID: <mime1@test>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
    "--b1\r\nContent-Type: text/plain; charset=us-ascii; name=\"message.txt\"\r\n"
    "Content-Disposition: inline; filename=\"message.txt\"\r\n\r\n"
    "The message text.\r\nA line with an escape \x1b[31m sequence.\r\n"
    "--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
    "Content-Disposition: attachment; filename*=utf-8''Bericht%20M%C3%A4rz.pdf\r\n\r\n"
    "JVBERi0xLjQK\r\n--b1--\r\n").encode()


def main():
    a = mxenv.args()
    env = mxenv.Env(a.importer, a.mxctl)
    ok = False
    try:
        env.setup_demo()
        mxenv.write_maildir(env.drop, "late.mx", mxenv.message("late1", "late@example.test"))
        mxenv.write_maildir(env.drop, "gone.mx", mxenv.message("gone1", "gone@example.test"))
        mxenv.write_maildir(env.drop, "mime.mx", MIME_MESSAGE)
        env.drain()
        lst = json.loads(env.ctl("failed", "list", "--json").stdout)
        assert {e["file"] for e in lst} == {"late.mx", "gone.mx", "mime.mx"}, lst
        assert all(e["status"] == "5.1.1" and e["reason"] == "no-mailbox" for e in lst), lst
        text = env.ctl("failed", "list").stdout
        assert "demo:late.mx" in text and "5.1.1" in text, text
        show = env.ctl("failed", "show", "late.mx").stdout
        for want in ("late@example.test", "5.1.1", "no-mailbox", "<late1@test>", "bounce", "test.host"):
            assert want in show, (want, show)
        sj = json.loads(env.ctl("failed", "show", "demo:late.mx", "--json").stdout)
        assert sj["bounce"]["state"] in ("pending", "sent", "suppressed", "failed", "deferred"), sj
        # what an application would receive: inline text with a filename is the text, the
        # attachment is listed with its decoded name, terminal escapes are neutralised
        show = env.ctl("failed", "show", "mime.mx").stdout
        for want in ("as an application receives it", "Grüße aus Köln", "| The message text",
                     "Bericht März.pdf (application/pdf, 9 bytes, attachment)", "?[31m"):
            assert want in show, (want, show)
        assert "\x1b" not in show, show
        sj = json.loads(env.ctl("failed", "show", "demo:mime.mx", "--json").stdout)
        assert sj["content"]["text"].startswith("The message text"), sj
        assert sj["content"]["from"] == [{"name": "Jürgen", "address": "j@remote.example"}], sj
        assert [a["filename"] for a in sj["content"]["attachments"]] == ["Bericht März.pdf"], sj
        env.ctl("failed", "purge", "mime.mx")
        # hostile IDs are refused
        r = env.ctl("failed", "show", "../../etc/passwd", check=False)
        assert r.returncode != 0 and "not an ImportFailed file name" in r.stderr, r.stderr
        r = env.ctl("failed", "show", "nope", check=False)
        assert r.returncode == 1 and "no failed import" in r.stderr
        # the admin fixes the mailbox and retries: imported once
        env.ctl("mailbox", "add", "late@example.test", "--connector", "demo")
        out = env.ctl("failed", "retry", "late.mx").stdout
        assert "queued" in out, out
        r = env.ctl("failed", "retry", "late.mx", check=False)  # a second retry loses
        assert r.returncode != 0, r
        env.drain()
        got = env.files(env.maildir_new("late@example.test"))
        assert len(got) == 1 and mxenv.test_id_of(got[0]) == "late1", got
        lst = json.loads(env.ctl("failed", "list", "--json").stdout)
        assert [e["file"] for e in lst] == ["gone.mx"], lst
        # journal queries
        st = json.loads(env.ctl("import-status", "--message-id", "<late1@test>", "--json").stdout)
        states = sorted(d["state"] for m in st for d in m["deliveries"])
        assert states == ["imported"], st
        st = json.loads(env.ctl("import-status", "--file", "gone.mx", "--json").stdout)
        assert st and st[0]["deliveries"][0]["state"] == "failed", st
        r = env.ctl("import-status", "--queue-id", "NOPE", check=False)
        assert r.returncode == 1
        # purge
        env.ctl("failed", "purge", "--all")
        assert json.loads(env.ctl("failed", "list", "--json").stdout) == []
        print("mxctl failed list/show/retry/purge and import-status: ok")
        ok = True
    finally:
        env.cleanup(keep=a.keep or not ok)
        if not ok:
            print(f"kept {env.root}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
