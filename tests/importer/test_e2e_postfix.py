#!/usr/bin/env python3
"""End to end with a private Postfix (scripts/mx-stack, ports 2550-2574): swaks -> Postfix ->
mx-milter -> virtual(8) Maildir drop folder -> mx-importer -> the mailbox's Maildir. Then a
mailbox removed between SMTP time and import (and postmaster@, accepted without a mailbox, lands in
the postmaster destination and is never bounced): the message goes to ImportFailed with 5.1.1, a
bounce job, and `mxctl import-status --queue-id` tells the story."""
import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PORT = 2551


def wait(cond, what, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    build, src = os.path.abspath(a.build), os.path.abspath(a.source)
    for need in (f"{build}/milter/mx-milter", f"{build}/importer/mx-importer", f"{build}/admin/mxctl"):
        if not os.path.exists(need):
            print(f"skipped: {need} not built")
            return 77
    if os.geteuid() != 0 or not shutil.which("swaks"):
        print("skipped: needs root and swaks")
        return 77
    d = tempfile.mkdtemp(prefix="mx-e2e-imp-", dir="/var/tmp")
    os.chmod(d, 0o755)
    stack = f"{src}/scripts/mx-stack"
    importer = None
    ok = False
    try:
        subprocess.run([stack, "start", d, "--port", str(PORT), "--build", build, "--no-importer"], check=True)
        conf = f"{d}/mx-connector.toml"

        def ctl(*args, check=True):
            return subprocess.run([f"{build}/admin/mxctl", "--config", conf, *args], check=check,
                                  capture_output=True, text=True)
        drop = f"{d}/drop/e2e"
        os.makedirs(drop, exist_ok=True)
        shutil.chown(drop, os.stat(f"{d}/drop").st_uid, os.stat(f"{d}/drop").st_gid)
        ctl("connector", "add", "e2e", "--drop-folder", drop, "--domain", "e2e.test")
        ctl("mailbox", "add", "info@e2e.test", "--connector", "e2e")
        ctl("mailbox", "add", "bob@e2e.test", "--connector", "e2e")
        log = open(f"{d}/log/mx-importer-e2e.log", "ab")

        def start_importer():
            return subprocess.Popen([f"{build}/importer/mx-importer", "--config", conf], stdout=log, stderr=log)

        def swaks(to, subject):
            r = subprocess.run(["swaks", "--server", f"127.0.0.1:{PORT}", "--to", to, "--from",
                                "sender@remote.example", "--header", f"Subject: {subject}",
                                "--body", "end to end"], capture_output=True, text=True)
            assert r.returncode == 0, r.stdout[-2000:]
        importer = start_importer()
        swaks("info@e2e.test", "e2e first")
        info_new = f"{d}/mail/e2e.test/info/new"
        wait(lambda: len(glob.glob(f"{info_new}/*")) == 1, "the message in info's Maildir")
        body = open(glob.glob(f"{info_new}/*")[0], "rb").read()
        assert b"Subject: e2e first" in body and b"Delivered-To: info@e2e.test" in body, body[:500]
        # an unknown recipient is refused at SMTP time by the milter (never reaches the importer)
        r = subprocess.run(["swaks", "--server", f"127.0.0.1:{PORT}", "--to", "nobody@e2e.test", "--from",
                            "sender@remote.example"], capture_output=True, text=True)
        assert "550 5.1.1" in r.stdout, r.stdout[-1500:]
        # postmaster@ a served domain: accepted at SMTP time (RFC 5321 4.5.1) without a mailbox,
        # so the importer must deliver it to the postmaster destination, never bounce it (a
        # bounce would carry spam back to a forged sender: backscatter)
        r = subprocess.run(["swaks", "--server", f"127.0.0.1:{PORT}", "--to", "postmaster@e2e.test",
                            "--from", "forged@victim.example", "--header", "Subject: to postmaster",
                            "--body", "abuse report"], capture_output=True, text=True)
        assert r.returncode == 0 and "250" in r.stdout, r.stdout[-1500:]
        pm_new = f"{d}/mail/postmaster/new"
        wait(lambda: len(glob.glob(f"{pm_new}/*")) == 1, "the postmaster message in its Maildir")
        body = open(glob.glob(f"{pm_new}/*")[0], "rb").read()
        assert b"Subject: to postmaster" in body and b"Delivered-To: postmaster@e2e.test" in body, body[:500]
        assert not glob.glob(f"{drop}/ImportFailed/*"), os.listdir(f"{drop}/ImportFailed")
        assert not glob.glob(f"{d}/state/bounces/*/*.json"), "a bounce was spooled for postmaster mail"
        # the mailbox disappears between SMTP time and import
        importer.send_signal(signal.SIGTERM)
        importer.wait(timeout=30)
        swaks("bob@e2e.test", "e2e late failure")
        wait(lambda: len(glob.glob(f"{drop}/new/*")) == 1, "Postfix's file in the drop folder")
        ctl("mailbox", "remove", "bob@e2e.test")
        importer = start_importer()
        wait(lambda: glob.glob(f"{drop}/ImportFailed/*.json"), "the ImportFailed reason file")
        reason = json.load(open(glob.glob(f"{drop}/ImportFailed/*.json")[0]))
        assert reason["status"] == "5.1.1" and reason["recipient"] == "bob@e2e.test", reason
        assert reason["envelope_sender"] == "sender@remote.example", reason
        assert reason["queue_id"], reason
        assert reason["bounce"]["job"], reason
        st = json.loads(ctl("import-status", "--queue-id", reason["queue_id"], "--json").stdout)
        assert st[0]["deliveries"][0]["state"] == "failed", st
        lst = json.loads(ctl("failed", "list", "--json").stdout)
        assert len(lst) == 1 and lst[0]["recipient"] == "bob@e2e.test", lst
        print(f"e2e: imported via Postfix, late failure -> ImportFailed 5.1.1 (queue id {reason['queue_id']})")
        ok = True
    finally:
        if importer and importer.poll() is None:
            importer.send_signal(signal.SIGTERM)
            importer.wait(timeout=30)
        subprocess.run([stack, "stop", d])
        if a.keep or not ok:
            print(f"kept {d}", file=sys.stderr)
        else:
            shutil.rmtree(d, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
