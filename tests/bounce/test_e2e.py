#!/usr/bin/env python3
"""End to end: a mailbox removed after SMTP acceptance -> mx-importer puts the file in
ImportFailed -> its bounce sender delivers a DSN (Status 5.1.1, MAIL FROM:<>) to the original
sender at a real SMTP server (smtp-sink), and the reason JSON says "sent"."""
import argparse
import email
import email.policy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from smtp_env import Sink, wait_for

PORT = 2586


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--importer", required=True)
    ap.add_argument("--mxctl", required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mx-bounce-e2e-")
    os.chmod(tmp, 0o755)
    sink = Sink(tmp, PORT).start()
    imp = None
    try:
        cfg = os.path.join(tmp, "mx.toml")
        with open(cfg, "w") as f:
            f.write(f'state_dir = "{tmp}/state"\nrun_dir = "{tmp}/run"\nmail_root = "{tmp}/mail"\n'
                    f'hostname = "mx.e2e.example"\n[smtp]\nhost = "127.0.0.1"\nport = {PORT}\n'
                    '[bounce]\ncoalesce_seconds = 0\n')
        drop = os.path.join(tmp, "drop")
        for d in ("new", "tmp", "cur"):
            os.makedirs(os.path.join(drop, d))
        m = lambda *args: subprocess.run([a.mxctl, "--config", cfg, *args], check=True, capture_output=True)
        m("connector", "add", "demo", "--drop-folder", drop, "--domain", "example.com")
        m("mailbox", "add", "gone@example.com", "--connector", "demo")
        # Accepted while the mailbox existed, removed before the import.
        with open(os.path.join(drop, "tmp", "1.M1P1.e2e"), "w") as f:
            f.write("Return-Path: <alice@sender.test>\nX-Original-To: gone@example.com\n"
                    "Delivered-To: gone@example.com\nFrom: alice@sender.test\nTo: gone@example.com\n"
                    "Subject: e2e\nMessage-ID: <e2e-1@sender.test>\n\nhello\n")
        m("mailbox", "remove", "gone@example.com")
        os.rename(os.path.join(drop, "tmp", "1.M1P1.e2e"), os.path.join(drop, "new", "1.M1P1.e2e"))
        imp = subprocess.Popen([a.importer, "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env, msg = wait_for(lambda: sink.messages(), 60, "DSN at the sink")[0]
        assert env["mail_from"] == "<>", env["mail_from"]
        assert [r.split()[0] for r in env["rcpt"]] == ["<alice@sender.test>"], env["rcpt"]
        assert msg.get_content_type() == "multipart/report"
        parts = msg.get_payload()
        assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "message/rfc822"]
        rcpt = parts[1].get_payload()[1]
        assert rcpt["Final-Recipient"] == "rfc822;gone@example.com", rcpt["Final-Recipient"]
        assert rcpt["Status"] == "5.1.1", rcpt["Status"]
        assert rcpt["Action"] == "failed"
        failed = os.path.join(drop, "ImportFailed")
        reason = [f for f in os.listdir(failed) if f.endswith(".json")][0]

        def sent():
            with open(os.path.join(failed, reason)) as f:
                return json.load(f)["bounce"]["state"] == "sent"
        wait_for(sent, 20, "bounce state sent")
        print("ok: DSN 5.1.1 delivered to the original sender; reason file says sent")
    finally:
        if imp:
            imp.send_signal(signal.SIGTERM)
            try:
                imp.wait(10)
            except subprocess.TimeoutExpired:
                imp.kill()
                imp.wait()
        sink.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
