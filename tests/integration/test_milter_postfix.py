#!/usr/bin/env python3
"""mx-milter against a real, private Postfix (scripts/mx-stack) driven with swaks.

Covers the milter's integration list: unknown -> 550 5.1.1 at RCPT (and Postfix's own
"milter-reject: RCPT ... 550 5.1.1" log line); known -> 250 and the message lands in the
connector's drop folder (virtual(8) Maildir with Delivered-To/X-Original-To/Return-Path);
inactive -> 450 4.2.1; mixed recipients -> only the unknown ones refused; milter stopped ->
451 4.7.1 from Postfix and nothing accepted; restart -> normal; socketmap lookups through
Postfix's own client; a "." connector is a final destination, never a relay.

Usage: test_milter_postfix.py BUILD_DIR   (root; port MX_MILTER_IT_PORT, default 2531)
Exit 77 (skipped) when not root or Postfix/swaks are missing. Python 3 stdlib only.
"""
import os
import re
import sys
import time
import unittest
import uuid

import mxtest
from mxtest import run

BUILD = mxtest.build_dir()
PORT = mxtest.port("MX_MILTER_IT_PORT", 2531)


class MilterPostfix(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mxtest.temp_dir("mx-milter-it-")
        cls.stack = mxtest.Stack(cls.dir, PORT, BUILD, "--no-importer")
        cls.conf = cls.stack.conf
        cls.maillog = os.path.join(cls.dir, "log", "maillog")
        cls.drop = cls.stack.drop
        cls.stack.add_demo_connectors()

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()
        mxtest.remove_dir(cls.dir)

    @classmethod
    def mxctl(cls, *args):
        return cls.stack.mxctl(*args)

    def swaks(self, to, quit_after=None, body=None):
        return mxtest.swaks(PORT, to, quit_after=quit_after, subject=body, body=body)

    def rcpt_reply(self, to):
        out, replies = self.swaks(to, quit_after="RCPT")
        # banner, EHLO, MAIL, RCPT(, QUIT 221): the RCPT reply is the last one before QUIT
        replies = [r for r in replies if not r.startswith("221")]
        self.assertTrue(replies, out)
        return replies[-1]

    def wait_for_files(self, folder, marker, count, timeout=20):
        found = []

        def enough():
            found[:] = mxtest.files_with(os.path.join(folder, "new", "*"), marker)
            return len(found) >= count

        mxtest.wait_for(enough, timeout)
        return found

    def maillog_text(self):
        with open(self.maillog, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def wait_log(self, pattern, timeout=10):
        return bool(mxtest.wait_for(lambda: re.search(pattern, self.maillog_text(), re.M),
                                    timeout))

    # ---- the cases -------------------------------------------------------------------

    def test_01_unknown_is_550_at_rcpt_and_logged_by_postfix(self):
        self.assertEqual(
            self.rcpt_reply("nobody@example.test"),
            "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown")
        self.assertTrue(self.wait_log(
            r"NOQUEUE: milter-reject: RCPT from localhost\[127\.0\.0\.1\]: 550 5\.1\.1 "
            r"<nobody@example\.test>: Recipient address rejected: User unknown; "
            r"from=<sender@sender\.test> to=<nobody@example\.test> proto=ESMTP helo=<client\.test>"),
            "Postfix's milter-reject line missing")

    def test_02_known_is_delivered_into_the_drop_folder(self):
        marker = "known-" + uuid.uuid4().hex
        out, replies = self.swaks("Info+Tag@Example.test", body=marker)
        self.assertTrue(any(r.startswith("250 2.0.0 Ok: queued") for r in replies), out)
        files = self.wait_for_files(f"{self.drop}/demo", marker, 1)
        self.assertEqual(len(files), 1, "message not in the drop folder")
        text = files[0]
        # virtual(8) decides on the lower-cased address; headers keep the client's spelling
        self.assertRegex(text, r"(?im)^Delivered-To: info\+tag@example\.test$")
        self.assertRegex(text, r"(?im)^X-Original-To: info\+tag@example\.test$")
        self.assertRegex(text, r"(?m)^Return-Path: <sender@sender\.test>$")

    def test_03_inactive_connector_is_450(self):
        self.assertEqual(
            self.rcpt_reply("a@off.test"),
            "450 4.2.1 <a@off.test>: Recipient address rejected: Mailbox temporarily unavailable")

    def test_04_mixed_recipients_only_unknown_refused(self):
        marker = "mixed-" + uuid.uuid4().hex
        out, replies = self.swaks("info@example.test,nobody@example.test,sales@example.test",
                                  body=marker)
        self.assertIn("550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown",
                      replies, out)
        self.assertTrue(any(r.startswith("250 2.0.0 Ok: queued") for r in replies), out)
        files = self.wait_for_files(f"{self.drop}/demo", marker, 2)
        self.assertEqual(len(files), 2, "one file per accepted recipient expected")
        delivered = sorted(re.search(r"(?m)^Delivered-To: (.*)$", t).group(1) for t in files)
        self.assertEqual(delivered, ["info@example.test", "sales@example.test"])
        # The milter asks Postfix only for the queue id macro; its decision lines carry it once
        # Postfix has one (after the first accepted RCPT), matching Postfix's own log.
        qid = re.search(r"250 2\.0\.0 Ok: queued as (\w+)", " ".join(replies)).group(1)
        # mx-milter writes its decision lines at least once a second (buffered, not per line).
        deadline = time.time() + 5
        while True:
            with open(os.path.join(self.dir, "log", "mx-milter.log"), encoding="utf-8") as f:
                mlog = f.read()
            if "rcpt=<sales@example.test>" in mlog or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertRegex(mlog, rf"{qid}: client=\S+ rcpt=<sales@example\.test> decision=accept")
        self.assertRegex(mlog, rf"{qid}: client=\S+ rcpt=<nobody@example\.test> decision=reject")

    def test_05_not_ours_is_postfixs_decision(self):
        # Not a connector domain: the milter continues, Postfix refuses to relay.
        self.assertTrue(self.rcpt_reply("x@elsewhere.test").startswith("554 5.7.1"))

    def test_06_percent_in_reply_reaches_the_client_once(self):
        # mx-milter doubles '%' for smfi_setreply (the milter protocol test sees "%%");
        # the SMTP client must see a single '%'. ('%' in the address itself is Postfix's
        # percent hack, so the reply text carries it.)
        with open(self.conf, encoding="utf-8") as fh:
            original = fh.read()
        pidfile = os.path.join(self.dir, "run", "mx-milter.pid")
        try:
            with open(self.conf, "w", encoding="utf-8") as fh:
                fh.write(original.replace(
                    "[milter]\n", '[milter]\nreject_text = "{address}: 100% unknown"\n', 1))
            os.kill(int(open(pidfile).read()), 1)  # SIGHUP
            reply = ""
            for _ in range(50):
                reply = self.rcpt_reply("nobody@example.test")
                if "100%" in reply:
                    break
                time.sleep(0.1)
            self.assertEqual(reply, "550 5.1.1 <nobody@example.test>: 100% unknown")
        finally:
            with open(self.conf, "w", encoding="utf-8") as fh:
                fh.write(original)
            os.kill(int(open(pidfile).read()), 1)
            time.sleep(0.3)

    def test_07_socketmap_through_postfix_client(self):
        pfconf = os.path.join(self.dir, "postfix", "etc")
        sock = os.path.join(self.dir, "run", "socketmap.sock")
        q = lambda key, m: run(["postmap", "-c", pfconf, "-q", key,
                                f"socketmap:unix:{sock}:{m}"], check=False)
        p = q("example.test", "domain")
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "demo"))
        p = q("elsewhere.test", "domain")
        self.assertEqual(p.returncode, 1)
        p = q("whoever@example.test", "mailbox")
        self.assertEqual(p.stdout.strip(), f"{self.drop}/demo/".lstrip("/"))
        # The lmdb: domain table mx-milter writes, read by Postfix's own lmdb client, and what
        # this stack's Postfix is configured with: that table first, then the socketmap.
        table = os.path.join(self.dir, "run", "domains")
        p = run(["postmap", "-c", pfconf, "-q", "example.test", f"lmdb:{table}"], check=False)
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "demo"))
        doms = run(["postconf", "-c", pfconf, "-h", "virtual_mailbox_domains"]).stdout
        self.assertRegex(doms, rf"^lmdb:{re.escape(table)},\s*socketmap:")
        self.assertEqual(run(["postconf", "-c", pfconf, "-h", "virtual_mailbox_maps"]).stdout.strip(), "")

    def test_08_milter_stopped_means_451_and_nothing_accepted_then_restart(self):
        self.stack.stop_milter()
        try:
            marker = "down-" + uuid.uuid4().hex
            out, replies = self.swaks("info@example.test", body=marker)
            self.assertTrue(any(r.startswith("451 4.7.1") for r in replies), out)
            self.assertFalse(any(r.startswith("250 2.0.0") for r in replies), out)
            pfconf = os.path.join(self.dir, "postfix", "etc")
            q = run(["postqueue", "-c", pfconf, "-p"], check=False).stdout
            self.assertIn("Mail queue is empty", q)
            time.sleep(1)
            self.assertEqual(self.wait_for_files(f"{self.drop}/demo", marker, 1, timeout=1), [])
        finally:
            self.stack.start_milter()
        marker = "back-" + uuid.uuid4().hex
        out, replies = self.swaks("info@example.test", body=marker)
        self.assertTrue(any(r.startswith("250 2.0.0 Ok: queued") for r in replies), out)
        self.assertEqual(len(self.wait_for_files(f"{self.drop}/demo", marker, 1)), 1)

    def test_09_changes_apply_to_the_next_rcpt_and_delivery(self):
        # A connector added now is served by Postfix (socketmap, then the lmdb: table) and
        # virtual(8) (regexp map) at once, without reloading anything.
        self.mxctl("connector", "add", "late", "--drop-folder", f"{self.drop}/late",
                   "--domain", "late.test")
        self.mxctl("mailbox", "add", "x@late.test", "--connector", "late")
        marker = "late-" + uuid.uuid4().hex
        out, replies = self.swaks("x@late.test", body=marker)
        self.assertTrue(any(r.startswith("250 2.0.0 Ok: queued") for r in replies), out)
        self.assertEqual(len(self.wait_for_files(f"{self.drop}/late", marker, 1)), 1)
        # The new domain reached Postfix through the socketmap at once; the lmdb: table has it
        # too and trivial-rewrite, which had the old table open, re-reads it (every 10 s).
        pfconf = os.path.join(self.dir, "postfix", "etc")
        table = os.path.join(self.dir, "run", "domains")
        p = run(["postmap", "-c", pfconf, "-q", "late.test", f"lmdb:{table}"], check=False)
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "late"))
        self.assertTrue(self.wait_log(
            rf"trivial-rewrite\[\d+\]: table lmdb:{re.escape(table)}\S* has changed -- restarting",
            timeout=30))
        # A mailbox change is not a domain change: the table file stays as it is.
        ino = os.stat(table + ".lmdb").st_ino
        self.mxctl("mailbox", "remove", "x@late.test")
        self.assertTrue(self.rcpt_reply("x@late.test").startswith("550 5.1.1"))
        self.assertEqual(os.stat(table + ".lmdb").st_ino, ino)

    def test_11_removed_domain_is_never_accepted_while_postfix_catches_up(self):
        # Postfix re-reads the replaced lmdb: domain table within 10 s; until then it still
        # routes the domain to us. The milter answers 451 for it (the sender retries), so
        # nothing is accepted that virtual(8) would bounce.
        self.mxctl("connector", "add", "brief", "--drop-folder", f"{self.drop}/brief",
                   "--domain", "brief.test")
        self.mxctl("mailbox", "add", "x@brief.test", "--connector", "brief")
        self.assertTrue(self.rcpt_reply("x@brief.test").startswith("250"))
        self.mxctl("connector", "remove", "brief", "--force")
        reply = self.rcpt_reply("x@brief.test")
        self.assertFalse(reply.startswith("250"), reply)
        # 451 from the milter, or (if trivial-rewrite already re-read the table) Postfix's
        # own relay refusal: either way the sender is not told the mail was taken.
        self.assertRegex(reply, r"^(451 4\.3\.0 <x@brief\.test>: Recipient address rejected: "
                                r"domain is being reconfigured|554 5\.7\.1 )")

    def test_12_virtual_processes_live_long_and_follow_routing_changes(self):
        # No process per delivery: two messages in a row are delivered by one virtual(8)
        # process. Then a subdomain connector (regexp only) is added while that process lives:
        # the drop table is replaced, virtual(8) restarts before its next delivery and the
        # message reaches the new folder (a stale regexp would bounce it as "unknown user").
        pids = []
        for _ in range(2):
            marker = "live-" + uuid.uuid4().hex
            out, replies = self.swaks("info@example.test", body=marker)
            self.assertTrue(any(r.startswith("250 2.0.0 Ok: queued") for r in replies), out)
            self.assertEqual(len(self.wait_for_files(f"{self.drop}/demo", marker, 1)), 1)
            m = None
            deadline = time.time() + 10
            while not m and time.time() < deadline:
                m = list(re.finditer(r"postfix/virtual\[(\d+)\]: \w+: to=<info@example\.test>.*"
                                     r"status=sent", self.maillog_text()))
                time.sleep(0.1)
            pids.append(m[-1].group(1))
        self.assertEqual(pids[0], pids[1], "one virtual(8) process per delivery")
        table = os.path.join(self.dir, "run", "virtual_mailbox")
        pfconf = os.path.join(self.dir, "postfix", "etc")
        p = run(["postmap", "-c", pfconf, "-q", "@example.test", f"lmdb:{table}"], check=False)
        self.assertEqual((p.returncode, p.stdout.strip()), (0, f"{self.drop}/demo/".lstrip("/")))
        ino = os.stat(table + ".lmdb").st_ino
        self.mxctl("mailbox", "add", "sales2@example.test", "--connector", "demo")
        self.assertTrue(self.rcpt_reply("sales2@example.test").startswith("250"))
        self.assertEqual(os.stat(table + ".lmdb").st_ino, ino, "a mailbox change restarts virtual(8)")
        self.mxctl("connector", "add", "wild", "--drop-folder", f"{self.drop}/wild",
                   "--domain", ".wild.test")
        try:
            self.mxctl("mailbox", "add", "x@a.wild.test", "--connector", "wild")
            marker = "wild-" + uuid.uuid4().hex
            out, replies = self.swaks("x@a.wild.test", body=marker)
            self.assertTrue(any(r.startswith("250 2.0.0 Ok: queued") for r in replies), out)
            self.assertEqual(len(self.wait_for_files(f"{self.drop}/wild", marker, 1)), 1)
            self.assertTrue(self.wait_log(rf"postfix/virtual\[{pids[0]}\]: table lmdb:"
                                          rf"{re.escape(table)}\S* has changed -- restarting"))
        finally:
            self.mxctl("connector", "remove", "wild", "--force")
            self.mxctl("mailbox", "remove", "sales2@example.test")

    def test_10_dot_connector_is_final_destination_not_relay(self):
        self.mxctl("connector", "add", "all", "--drop-folder", f"{self.drop}/all",
                   "--domain", ".")
        try:
            self.mxctl("mailbox", "add", "boss@random.example", "--connector", "all")
            self.assertTrue(self.rcpt_reply("other@random.example").startswith("550 5.1.1"))
            marker = "dot-" + uuid.uuid4().hex
            out, replies = self.swaks("boss@random.example", body=marker)
            self.assertTrue(any(r.startswith("250 2.0.0 Ok: queued") for r in replies), out)
            self.assertEqual(len(self.wait_for_files(f"{self.drop}/all", marker, 1)), 1)
            # Delivered by virtual(8), never handed to the smtp client (relay).
            self.assertTrue(self.wait_log(r"to=<boss@random\.example>, relay=virtual,.*status=sent"))
            self.assertNotRegex(self.maillog_text(), r"to=<boss@random\.example>, relay=(?!virtual)")
        finally:
            self.mxctl("connector", "remove", "all", "--force")


if __name__ == "__main__":
    mxtest.require(root=True, tools=("postfix", "swaks"))
    unittest.main(argv=[sys.argv[0], "-v"])
