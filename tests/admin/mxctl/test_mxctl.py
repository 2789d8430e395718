#!/usr/bin/env python3
"""mxctl end to end: every verb against a temporary state directory, including the mistakes a
new user makes. Each refused change must print a helpful error, exit non-zero, and change
nothing (compared with `mxctl export` before and after)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

MXCTL = sys.argv.pop(1) if len(sys.argv) > 1 else os.environ.get("MXCTL", "mxctl")


class Mxctl(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mxctl-test-")
        self.cfg = os.path.join(self.dir, "mx-connector.toml")
        with open(self.cfg, "w") as f:
            f.write('state_dir = "state"\nrun_dir = "run"\nmail_root = "mail"\nhostname = "mx.test"\n')
        self.drop = os.path.join(self.dir, "drop")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_ok(self, *args, stdin=None):
        p = subprocess.run([MXCTL, "--config", self.cfg, *args], capture_output=True, text=True, input=stdin)
        self.assertEqual(p.returncode, 0, f"{args}: {p.stderr}")
        return p.stdout

    def run_fail(self, *args, expect=None, code=None):
        before = self.export()
        p = subprocess.run([MXCTL, "--config", self.cfg, *args], capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0, f"{args} should fail: {p.stdout}")
        if code is not None:
            self.assertEqual(p.returncode, code, p.stderr)
        self.assertTrue(p.stderr.strip(), f"{args}: no error message")
        if expect:
            self.assertIn(expect, p.stderr)
        self.assertEqual(before, self.export(), f"{args} changed the store")
        return p.stderr

    def export(self):
        p = subprocess.run([MXCTL, "--config", self.cfg, "export"], capture_output=True, text=True)
        return p.stdout if p.returncode == 0 else None

    def demo(self):
        self.run_ok("connector", "add", "demo", "--drop-folder", self.drop, "--domain", "example.test")
        self.run_ok("mailbox", "add", "info@example.test", "--connector", "demo")
        self.run_ok("mailbox", "add", "sales@example.test", "--connector", "demo")

    def check(self, addr):
        p = subprocess.run([MXCTL, "--config", self.cfg, "check", addr, "--json"], capture_output=True, text=True)
        return p.returncode, json.loads(p.stdout)

    def test_check_contract(self):
        self.demo()
        rc, j = self.check("info@example.test")
        self.assertEqual((rc, j["decision"], j["reply"]), (0, "accept", ""))
        self.assertEqual(j["connector"], "demo")
        rc, j = self.check("nobody@example.test")
        self.assertEqual(rc, 10)
        self.assertEqual(j["decision"], "reject")
        self.assertEqual(j["reply"], "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown")
        rc, j = self.check("<x@other.test>")
        self.assertEqual((rc, j["decision"]), (12, "not-ours"))
        self.run_ok("connector", "disable", "demo")
        rc, j = self.check("info@example.test")
        self.assertEqual((rc, j["decision"]), (11, "tempfail"))
        self.assertTrue(j["reply"].startswith("450 4.2.1 "))
        self.run_ok("connector", "enable", "demo")
        rc, j = self.check("Info+Tag@EXAMPLE.test")
        self.assertEqual((rc, j["matched_by"]), (0, "subaddress"))

    def test_check_without_store_is_tempfail(self):
        rc, j = self.check("info@example.test")
        self.assertEqual((rc, j["decision"]), (11, "tempfail"))
        self.assertTrue(j["reply"].startswith("451 4.3.0"))

    def test_new_user_mistakes(self):
        self.demo()
        self.run_fail("connector", "add", "x", expect="--drop-folder")
        self.run_fail("connector", "add", "x", "--drop-folder", "relative/dir", expect="absolute")
        self.run_fail("connector", "add", "demo", "--drop-folder", self.drop, expect="already exists")
        self.run_fail("connector", "add", "x", "--drop-folder", self.drop, "--domain", "exa mple.com", expect="invalid domain")
        self.run_fail("connector", "add", "y", "--drop-folder", self.drop, "--domain", "example.test", expect="already belongs")
        self.run_fail("connector", "set", "demo", "smtp.port=0x", expect="smtp.port")
        self.run_fail("connector", "set", "demo", "smtp.port=70000", expect="65535")
        self.run_fail("connector", "set", "demo", "smtp.security=maybe", expect="none, starttls or tls")
        self.run_fail("connector", "set", "demo", "nonsense=1", expect="unknown connector setting")
        self.run_fail("connector", "set", "nope", "smtp.port=25", expect="no connector named 'nope'")
        self.run_fail("mailbox", "add", "no-at-sign", "--connector", "demo", expect="missing '@domain'")
        self.run_fail("mailbox", "add", "a@unknown.test", "--connector", "demo", expect="not served by any connector")
        self.run_fail("mailbox", "add", "a@example.test", "--connector", "nope", expect="no connector named")
        self.run_fail("mailbox", "add", "INFO@example.test", "--connector", "demo", expect="already exists")
        self.run_fail("mailbox", "add", "a@example.test", expect="--connector")
        self.run_fail("mailbox", "remove", "ghost@example.test", expect="no mailbox")
        self.run_fail("mailbox", "set", "info@example.test", "target=ftp:x", expect="unknown target kind")
        self.run_fail("domain", "add", "nope", "x.test", expect="no connector named")
        self.run_fail("domain", "remove", "demo", "example.test", expect="without its connector")
        self.run_fail("connector", "remove", "demo", expect="--force")
        self.run_fail("connector", code=2)
        self.run_fail("frobnicate", code=2)

    def test_bad_config_is_reported(self):
        with open(self.cfg, "a") as f:
            f.write("[smtp]\nport = 0\n")
        err = self.run_fail("connector", "list", expect="smtp.port")
        self.assertIn(self.cfg, err)
        p = subprocess.run([MXCTL, "--config", "/nonexistent.toml", "connector", "list"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot read", p.stderr)

    def test_listing_json_and_secrets_hidden(self):
        self.demo()
        self.run_ok("connector", "set", "demo", "smtp.host=smtp.example.net", "smtp.auth=generic",
                    "smtp.username=bob", "smtp.secret=-", stdin="s3cret-pw\n")
        self.run_ok("mailbox", "set", "info@example.test", "oauth.refresh_token=rt-SECRET", "oauth.client_id=cid")
        outputs = [
            self.run_ok("connector", "list", "--json"), self.run_ok("connector", "show", "demo"),
            self.run_ok("connector", "show", "demo", "--json"), self.run_ok("mailbox", "show", "info@example.test"),
            self.run_ok("mailbox", "show", "info@example.test", "--json"), self.run_ok("export"),
            self.run_ok("mailbox", "list", "--json"), self.run_ok("domain", "list", "--json"),
        ]
        for out in outputs:
            self.assertNotIn("s3cret-pw", out)
            self.assertNotIn("rt-SECRET", out)
        j = json.loads(self.run_ok("connector", "show", "demo", "--json"))
        self.assertEqual(j["smtp"]["secret"], "***")
        self.assertEqual(j["smtp"]["username"], "bob")
        self.assertEqual(json.loads(self.run_ok("mailbox", "show", "info@example.test", "--json"))["oauth"]["refresh_token"], "***")
        full = json.loads(self.run_ok("export", "--with-secrets"))
        self.assertEqual(full["secrets"]["connector/demo/smtp.secret"], "s3cret-pw")
        st = os.stat(os.path.join(self.dir, "state", "secrets", "data.mdb"))
        self.assertEqual(st.st_mode & 0o777, 0o600)
        boxes = json.loads(self.run_ok("mailbox", "list", "--json"))
        self.assertEqual(sorted(b["address"] for b in boxes), ["info@example.test", "sales@example.test"])
        conns = json.loads(self.run_ok("connector", "list", "--json"))
        self.assertEqual(conns[0]["domains"], ["example.test"])
        self.assertEqual(conns[0]["mailboxes"], 2)

    def test_import_all_or_nothing(self):
        self.demo()
        good = os.path.join(self.dir, "good.csv")
        with open(good, "w") as f:
            f.write("address,connector\nA1@example.test,demo\n\"a2@example.test\",demo\n@example.test,demo\n")
        self.assertIn("3 mailboxes imported", self.run_ok("mailbox", "import", good))
        bad = os.path.join(self.dir, "bad.csv")
        with open(bad, "w") as f:
            f.write("address,connector\nb1@example.test,demo\nb2@nowhere.test,demo\n")
        self.run_fail("mailbox", "import", bad, expect="nowhere.test")
        dup = os.path.join(self.dir, "dup.json")
        with open(dup, "w") as f:
            json.dump([{"address": "c1@example.test", "connector": "demo"}, {"address": "C1@example.test", "connector": "demo"}], f)
        self.run_fail("mailbox", "import", dup, expect="already exists")
        nohdr = os.path.join(self.dir, "nohdr.csv")
        with open(nohdr, "w") as f:
            f.write("x@example.test,demo\n")
        self.run_fail("mailbox", "import", nohdr, expect="header")
        ok_json = os.path.join(self.dir, "ok.json")
        with open(ok_json, "w") as f:
            json.dump([{"address": "d1@example.test", "connector": "demo"}], f)
        self.assertIn("1 mailboxes imported", self.run_ok("mailbox", "import", ok_json))
        rc, j = self.check("whoever@example.test")
        self.assertEqual(j["matched_by"], "catch-all")

    def test_export_apply_roundtrip(self):
        self.demo()
        self.run_ok("connector", "add", "second", "--drop-folder", self.drop + "2", "--domain", ".sub.test", "--inactive")
        exported = self.run_ok("export")
        state = json.loads(exported)
        state["mailboxes"] = [m for m in state["mailboxes"] if m["address"] != "sales@example.test"]
        state["mailboxes"].append({"address": "new@example.test", "connector": "demo", "target": ""})
        for c in state["connectors"]:
            if c["name"] == "second":
                c["active"] = True
        path = os.path.join(self.dir, "want.json")
        with open(path, "w") as f:
            json.dump(state, f)
        dry = self.run_ok("apply", path, "--dry-run")
        self.assertIn("+ mailbox new@example.test", dry)
        self.assertIn("- mailbox sales@example.test", dry)
        self.assertIn("~ connector second", dry)
        self.assertEqual(exported, self.export())  # dry run changed nothing
        self.run_ok("apply", path)
        self.assertEqual(self.check("new@example.test")[1]["decision"], "accept")
        self.assertEqual(self.check("sales@example.test")[1]["decision"], "reject")
        self.assertIn("no changes", self.run_ok("apply", path))
        # An invalid file changes nothing.
        state["mailboxes"].append({"address": "z@nowhere.test", "connector": "demo"})
        with open(path, "w") as f:
            json.dump(state, f)
        self.run_fail("apply", path, expect="nowhere.test")

    def test_stats_formats(self):
        self.demo()
        j = json.loads(self.run_ok("stats", "--json"))
        self.assertGreaterEqual(j["generation"], 3)
        prom = self.run_ok("stats", "--prometheus")
        self.assertIn("# TYPE mxconnector_generation gauge", prom)

    def test_remove_cleans_up(self):
        self.demo()
        self.run_ok("mailbox", "set", "info@example.test", "oauth.refresh_token=tok")
        self.run_ok("connector", "remove", "demo", "--force")
        self.assertEqual(json.loads(self.run_ok("connector", "list", "--json")), [])
        full = json.loads(self.run_ok("export", "--with-secrets"))
        self.assertEqual(full["secrets"], {})

    def test_webhook_credentials_never_over_plain_http(self):
        self.demo()
        for target in ("webhook:http://app.example/in#auth=bearer",
                       "webhook:http://app.example/in#auth=basic&user=u",
                       "webhook:http://u:pw@app.example/in"):
            err = self.run_fail("mailbox", "set", "info@example.test", "target=" + target,
                                expect="plain http://")
            self.assertNotIn("pw", err)  # the message names no secret
        self.run_fail("mailbox", "add", "x@example.test", "--connector", "demo", "--target",
                      "webhook:http://192.0.2.1/#auth=bearer", expect="loopback")
        self.run_fail("connector", "set", "demo", "default_target=webhook:http://app.example/#auth=bearer",
                      expect="https://")
        # https, loopback, and http without credentials are fine.
        for target in ("webhook:https://app.example/in#auth=bearer",
                       "webhook:http://127.0.0.1:8080/in#auth=bearer",
                       "webhook:http://[::1]:8080/in#auth=basic&user=u",
                       "webhook:http://localhost/in#auth=bearer",
                       "webhook:http://app.example/in"):
            self.run_ok("mailbox", "set", "info@example.test", "target=" + target)


if __name__ == "__main__":
    unittest.main(verbosity=1)
