#!/usr/bin/env python3
"""Table mode against a real, private Postfix (scripts/mx-stack --table-mode) driven with swaks.

No milter in the SMTP path: Postfix decides every RCPT itself from mx-milter's recipient table
(check_recipient_access lmdb:DIR/run/recipients). Checks the same answers the milter gives
(unknown -> 550 5.1.1, +ext and catch-all accepted, postmaster@ accepted, inactive connector ->
450 4.2.1, subdomain patterns), that Postfix logged them as its own access-table decisions,
freshness (a mailbox added is accepted, delivered and imported within a second; a removed one
refused; a connector switched off answers 450), and that accepted mail goes SMTP -> drop folder
-> mailbox exactly once.

Usage: test_table_mode.py BUILD_DIR   (root; port MX_TABLE_IT_PORT, default 2537)
Exit 77 (skipped) when not root or Postfix/swaks are missing. Python 3 stdlib only.
"""
import glob
import os
import re
import sys
import time
import unittest
import uuid

import mxtest

BUILD = mxtest.build_dir()
PORT = mxtest.port("MX_TABLE_IT_PORT", 2537)


class TableMode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mxtest.temp_dir("mx-table-it-")
        cls.stack = mxtest.Stack(cls.dir, PORT, BUILD, "--table-mode")
        cls.drop = cls.stack.drop
        cls.maillog = os.path.join(cls.dir, "log", "maillog")
        cls.stack.add_demo_connectors()
        cls.mxctl("connector", "add", "catch", "--drop-folder", f"{cls.drop}/catch",
                  "--domain", "catch.test")
        cls.mxctl("mailbox", "add", "@catch.test", "--connector", "catch")
        cls.mxctl("connector", "add", "sub", "--drop-folder", f"{cls.drop}/sub",
                  "--domain", ".sub.test")
        cls.mxctl("mailbox", "add", "bob@x.sub.test", "--connector", "sub")

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()
        mxtest.remove_dir(cls.dir)

    @classmethod
    def mxctl(cls, *args, check=True):
        return cls.stack.mxctl(*args, check=check)

    def rcpt_reply(self, to):
        out, replies = mxtest.swaks(PORT, to, quit_after="RCPT")
        replies = [r for r in replies if not r.startswith("221")]
        self.assertTrue(replies, out)
        return replies[-1]

    def until_reply(self, to, prefix, timeout=1.0):
        """Seconds until a new session's RCPT reply starts with prefix (fails after timeout)."""
        t0 = time.monotonic()
        while True:
            reply = self.rcpt_reply(to)
            took = time.monotonic() - t0
            if reply.startswith(prefix):
                return took
            if took > timeout:
                self.fail(f"{to}: still '{reply}' {took:.2f} s after the change (want {prefix})")
            time.sleep(0.02)

    def mailbox_files(self, address, marker):
        local, domain = address.split("@")
        return mxtest.files_with(os.path.join(self.stack.mail, domain, local, "new", "*"), marker)

    def maillog_text(self):
        with open(self.maillog, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    # ---- the cases -------------------------------------------------------------------

    def test_01_postfix_is_wired_without_a_milter(self):
        main_cf = open(os.path.join(self.dir, "postfix", "etc", "main.cf")).read()
        self.assertRegex(main_cf, r"(?m)^smtpd_milters =\s*$")
        self.assertIn("check_recipient_access lmdb:", main_cf)
        self.assertTrue(os.path.exists(os.path.join(self.dir, "run", "recipients.lmdb")))

    def test_02_same_answers_as_the_milter(self):
        cases = {
            "info@example.test": "250 2.1.5",
            "INFO@Example.TEST": "250 2.1.5",
            "info+news@example.test": "250 2.1.5",
            "postmaster@example.test": "250 2.1.5",
            "anyone@catch.test": "250 2.1.5",
            "bob@x.sub.test": "250 2.1.5",
            "nobody@example.test":
                "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown",
            "zed@x.sub.test":
                "550 5.1.1 <zed@x.sub.test>: Recipient address rejected: User unknown",
            "someone@off.test": "450 4.2.1 <someone@off.test>: Recipient address rejected: "
                                "Mailbox temporarily unavailable",
            "x@not-ours.test": "554 5.7.1",
        }
        for to, want in cases.items():
            with self.subTest(to=to):
                self.assertTrue(self.rcpt_reply(to).startswith(want), to)
        # Postfix's own access-table decision, in its own log (what admins grep for).
        self.assertTrue(mxtest.wait_for(lambda: re.search(
            r"NOQUEUE: reject: RCPT from \S+: 550 5\.1\.1 <nobody@example\.test>: Recipient "
            r"address rejected: User unknown", self.maillog_text()), 10))

    def test_03_accepted_mail_reaches_the_mailbox_once(self):
        marker = "table-" + uuid.uuid4().hex
        out, replies = mxtest.swaks(PORT, "info@example.test", "sales+x@example.test",
                                    "nobody@example.test", body=marker)
        self.assertTrue(any(r.startswith("250 2.0.0 Ok: queued") for r in replies), out)
        for box in ("info@example.test", "sales@example.test"):
            self.assertTrue(mxtest.wait_for(lambda: self.mailbox_files(box, marker), 20), box)
        time.sleep(1)
        self.assertEqual(len(self.mailbox_files("info@example.test", marker)), 1)
        self.assertEqual(len(self.mailbox_files("sales@example.test", marker)), 1)
        self.assertEqual(glob.glob(f"{self.drop}/demo/new/*"), [])

    def test_04_changes_apply_within_a_second(self):
        addr = f"new{uuid.uuid4().hex[:8]}@example.test"
        self.assertTrue(self.rcpt_reply(addr).startswith("550 5.1.1"))
        self.mxctl("mailbox", "add", addr, "--connector", "demo")
        took = self.until_reply(addr, "250")
        marker = "fresh-" + uuid.uuid4().hex
        t0 = time.monotonic()
        out, replies = mxtest.swaks(PORT, addr, body=marker)
        self.assertTrue(any(r.startswith("250 2.0.0 Ok: queued") for r in replies), out)
        self.assertTrue(mxtest.wait_for(lambda: self.mailbox_files(addr, marker), 20))
        print(f"\n  mailbox added -> accepted {took:.2f} s; 250 -> mailbox "
              f"{time.monotonic() - t0:.2f} s", file=sys.stderr)
        self.mxctl("mailbox", "remove", addr)
        self.until_reply(addr, "550 5.1.1")
        self.mxctl("connector", "disable", "demo")
        try:
            self.until_reply("info@example.test", "450 4.2.1")
        finally:
            self.mxctl("connector", "enable", "demo")
        self.until_reply("info@example.test", "250")

    def test_05_table_survives_a_milter_restart_and_tells_what_it_cannot_say(self):
        self.mxctl("connector", "add", "all", "--drop-folder", f"{self.drop}/all", "--domain", ".")
        try:
            want = "(every domain), which no key matches"
            self.assertIn(want, mxtest.log_text(os.path.join(self.dir, "log", "mx-milter.log"),
                                                want))
        finally:
            self.mxctl("connector", "remove", "all", "--force")
        # mx-milter down: Postfix keeps deciding from the table (no milter_default_action).
        self.stack.stop_milter()
        try:
            self.assertTrue(self.rcpt_reply("info@example.test").startswith("250"))
            self.assertTrue(self.rcpt_reply("nobody@example.test").startswith("550 5.1.1"))
        finally:
            self.stack.start_milter()

    def test_06_doctor_knows_table_mode(self):
        pfconf = os.path.join(self.dir, "postfix", "etc")
        out = self.mxctl("doctor", "--postfix-config", pfconf, "--skip", "probe", check=False)
        self.assertIn("ok    postfix: table mode: smtpd_recipient_restrictions has "
                      "check_recipient_access lmdb:", out)
        self.assertNotIn("FAIL  postfix", out)
        mxtest.run(["postconf", "-c", pfconf, "-e", "recipient_delimiter = -"])
        try:
            p = mxtest.run([os.path.join(BUILD, "admin", "mxctl"), "--config", self.stack.conf,
                            "doctor", "--postfix-config", pfconf, "--skip", "probe"], check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("FAIL  postfix: recipient_delimiter = - but subaddress_delimiter = +",
                          p.stdout)
        finally:
            mxtest.run(["postconf", "-c", pfconf, "-e", "recipient_delimiter = +"])


if __name__ == "__main__":
    mxtest.require(root=True, tools=("postfix", "swaks"))
    unittest.main(argv=[sys.argv[0], "-v"])
