#!/usr/bin/env python3
"""Integration tests of bounces and outbound SMTP against real servers on loopback.

Servers (ports 2580-2589, 8080): smtp-sink (plain SMTP, no STARTTLS), a private Postfix with
STARTTLS (2581) and implicit TLS (2582) whose SASL is a private Dovecot (PLAIN/LOGIN/CRAM-MD5 from a
passwd file, XOAUTH2 checked against the fake OAuth endpoint), relaying authenticated mail to a
second smtp-sink (2583). The bounce sender is the real code (bounce_tool runs bounce_sender).
"""
import argparse
import base64
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
import unittest

from smtp_env import Dovecot, FakeOAuth, Postfix, Sink, wait_for

SINK, STARTTLS, TLS, RELAY_SINK, SLOW_SINK, DOWN = 2580, 2581, 2582, 2583, 2584, 2589
OAUTH = 8080
PASSWORD = "s3cret-Pw"
ARGS = None


class Env:
    tmp = sink = relay = slow = oauth = dovecot = postfix = None


def setUpModule():
    Env.tmp = tempfile.mkdtemp(prefix="mx-bounce-it-")
    os.chmod(Env.tmp, 0o755)
    Env.sink = Sink(Env.tmp, SINK).start()
    Env.relay = Sink(Env.tmp, RELAY_SINK).start()
    Env.oauth = FakeOAuth(OAUTH).start()
    Env.dovecot = Dovecot(Env.tmp, OAUTH, {"user@example.test": PASSWORD}).start()
    Env.postfix = Postfix(Env.tmp, STARTTLS, TLS, RELAY_SINK, Env.dovecot.socket).start()


def tearDownModule():
    for s in (Env.postfix, Env.dovecot, Env.sink, Env.relay, Env.slow):
        if s:
            s.stop()
    if Env.oauth:
        Env.oauth.stop()
    shutil.rmtree(Env.tmp, ignore_errors=True)


def clear(sink):
    for f in os.listdir(sink.dir):
        os.unlink(os.path.join(sink.dir, f))


class Case(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="case-", dir=Env.tmp)
        self.cfg = os.path.join(self.dir, "mx.toml")
        self.write_config()
        clear(Env.sink)
        clear(Env.relay)
        Env.oauth.requests.clear()
        os.makedirs(os.path.join(self.dir, "failed"))
        self.mxctl("connector", "add", "demo", "--drop-folder", os.path.join(self.dir, "drop"),
                   "--domain", "example.com")

    def write_config(self, extra=""):
        with open(self.cfg, "w") as f:
            f.write(f'''state_dir = "{self.dir}/state"
run_dir = "{self.dir}/run"
mail_root = "{self.dir}/mail"
hostname = "mx.test.example"
[smtp]
host = "127.0.0.1"
port = {SINK}
security = "none"
ca_file = "{Env.postfix.cert}"
timeout_seconds = 10
[bounce]
coalesce_seconds = 0
retry_min_seconds = 60
[oauth]
google_token_url = "http://127.0.0.1:{OAUTH}/token"
microsoft_token_url = "http://127.0.0.1:{OAUTH}/{{tenant}}/oauth2/v2.0/token"
{extra}''')

    def mxctl(self, *args, stdin=None, check=True):
        r = subprocess.run([ARGS.mxctl, "--config", self.cfg, *args], input=stdin,
                           capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            self.fail(f"mxctl {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def tool(self, *args, check=True):
        r = subprocess.run([ARGS.bounce_tool, "--config", self.cfg, *args], capture_output=True,
                           text=True, timeout=120)
        if check and r.returncode != 0:
            self.fail(f"bounce_tool {args} failed: {r.stderr}")
        return r

    def run_once(self, now=None):
        r = self.tool("run-once", *(["--now", str(now)] if now else []))
        return json.loads(r.stdout), r.stderr

    def spool(self, jid, sender, rcpts, headers="Subject: Hello\r\n", fp=None, body="Hi.\r\n"):
        msg = os.path.join(self.dir, "failed", jid + ".eml")
        reason = msg + ".json"
        with open(msg, "wb") as f:
            f.write((f"From: {sender}\r\nTo: {rcpts[0]}\r\nMessage-ID: <{jid}@sender.test>\r\n" + headers +
                     "\r\n" + body).encode())
        with open(reason, "w") as f:
            json.dump({"recipient": rcpts[0], "bounce": {"state": "pending", "job": jid}}, f)
        now = int(time.time())
        job = {"id": jid, "connector": "demo", "envelope_sender": sender, "message_path": msg,
               "reason_path": reason, "fingerprint": fp or ("fp-" + jid), "message_id": f"<{jid}@sender.test>",
               "queue_id": "ABC123", "arrival_time": now - 30, "created_time": now,
               "recipients": [{"final_recipient": r, "original_recipient": r.upper(), "status": "5.1.1",
                               "diagnostic": "mailbox removed before import", "reason": "no-mailbox"}
                              for r in rcpts]}
        jf = os.path.join(self.dir, jid + ".job")
        with open(jf, "w") as f:
            json.dump(job, f)
        self.tool("spool", jf)
        return reason

    def bounce_state(self, reason):
        with open(reason) as f:
            return json.load(f)["bounce"]

    def check_dsn(self, env, msg, sender, rcpts, mail_from="<>"):
        self.assertEqual(env["mail_from"].split()[0], mail_from)
        self.assertEqual([r.split()[0] for r in env["rcpt"]], [f"<{sender}>"])
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertEqual(msg["Auto-Submitted"], "auto-replied")
        self.assertEqual(msg["To"], sender)
        self.assertTrue(msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith("@mx.test.example>"))
        parts = msg.get_payload()
        self.assertEqual([p.get_content_type() for p in parts],
                         ["text/plain", "message/delivery-status", "message/rfc822"])
        blocks = parts[1].get_payload()
        self.assertEqual(blocks[0]["Reporting-MTA"], "dns; mx.test.example")
        self.assertIsNotNone(blocks[0]["Arrival-Date"])
        got = sorted(b["Final-Recipient"] for b in blocks[1:])
        self.assertEqual(got, sorted("rfc822;" + r for r in rcpts))
        for b in blocks[1:]:
            self.assertEqual(b["Action"], "failed")
            self.assertEqual(b["Status"], "5.1.1")
            self.assertEqual(b["Original-Recipient"], "rfc822;" + b["Final-Recipient"][7:].upper())
            self.assertTrue(b["Diagnostic-Code"].startswith("x-mx-connector; "))
        orig = parts[2].get_payload()[0]
        self.assertEqual(orig["Subject"], "Hello")
        return parts

    # ---------------------------------------------------------------------------------------
    def test_dsn_sent_with_null_sender_and_coalesced(self):
        r1 = self.spool("j1", "alice@sender.test", ["gone@example.com"], fp="same")
        r2 = self.spool("j2", "alice@sender.test", ["other@example.com"], fp="same")
        st, _ = self.run_once()
        self.assertEqual(st["sent"], 1)
        msgs = wait_for(lambda: Env.sink.messages(), 10, "DSN at the sink")
        self.assertEqual(len(msgs), 1)
        self.check_dsn(*msgs[0], "alice@sender.test", ["gone@example.com", "other@example.com"])
        for r in (r1, r2):
            b = self.bounce_state(r)
            self.assertEqual(b["state"], "sent")
            self.assertEqual(b["attempts"], 1)
            self.assertEqual(b["to"], "alice@sender.test")
        spool = os.path.join(self.dir, "state", "bounces")
        self.assertEqual(os.listdir(os.path.join(spool, "new")), [])
        self.assertEqual(sorted(os.listdir(os.path.join(spool, "done"))), ["j1.json", "j2.json"])
        stats = json.loads(self.mxctl("stats", "--json").stdout)
        self.assertIn("bounces_sent", json.dumps(stats))

    def test_no_dsn_for_null_sender_auto_submitted_and_dsn_inputs(self):
        rs = [self.spool("s1", "", ["a@example.com"]),
              self.spool("s2", "bob@sender.test", ["a@example.com"], headers="Auto-Submitted: auto-generated\r\n"),
              self.spool("s3", "bob@sender.test", ["a@example.com"],
                         headers="Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n"),
              self.spool("s4", "MAILER-DAEMON@sender.test", ["a@example.com"]),
              self.spool("s5", "list-request@sender.test", ["a@example.com"])]
        st, log = self.run_once()
        self.assertEqual(st["suppressed"], 5)
        time.sleep(0.5)
        self.assertEqual(Env.sink.count(), 0)
        for r in rs:
            self.assertEqual(self.bounce_state(r)["state"], "suppressed")
        self.assertIn("suppressed: null sender", log)

    def test_crlf_injection_in_sender_and_subject(self):
        r = self.spool("i1", "evil@sender.test", ["a@example.com"],
                       headers="Subject: =?x?q?a?=\r\n X-Injected: yes\r\n")
        # A sender with CR/LF is not a valid bounce target at all.
        r2 = self.spool("i2", "evil@sender.test\r\nRCPT TO:<victim@x.test>", ["a@example.com"])
        st, _ = self.run_once()
        self.assertEqual(st["sent"], 1)
        self.assertEqual(st["suppressed"], 1)
        self.assertEqual(self.bounce_state(r2)["state"], "suppressed")
        env, msg = wait_for(lambda: Env.sink.messages(), 10, "DSN")[0]
        self.assertEqual([x.split()[0] for x in env["rcpt"]], ["<evil@sender.test>"])
        self.assertIsNone(msg["X-Injected"])
        self.assertEqual(self.bounce_state(r)["state"], "sent")

    def test_server_down_then_back(self):
        self.mxctl("connector", "set", "demo", f"smtp.host=127.0.0.1", f"smtp.port={DOWN}", "smtp.security=none")
        r = self.spool("d1", "carol@sender.test", ["a@example.com"])
        st, log = self.run_once()
        self.assertEqual(st["deferred"], 1)
        b = self.bounce_state(r)
        self.assertEqual((b["state"], b["attempts"]), ("pending", 1))
        self.assertIn("connection problem", b["detail"])
        st, _ = self.run_once()  # backoff not over: no new attempt
        self.assertEqual(st["waiting"], 1)
        self.assertEqual(self.bounce_state(r)["attempts"], 1)
        # The server comes back (the connector points at the running sink again).
        self.mxctl("connector", "set", "demo", f"smtp.port={SINK}")
        st, _ = self.run_once(now=int(time.time()) + 61)
        self.assertEqual(st["sent"], 1)
        self.assertEqual(self.bounce_state(r)["attempts"], 2)
        self.check_dsn(*wait_for(lambda: Env.sink.messages(), 10, "DSN")[0], "carol@sender.test",
                       ["a@example.com"])

    def test_starttls_required_but_not_offered(self):
        self.mxctl("connector", "set", "demo", "smtp.host=127.0.0.1", f"smtp.port={SINK}",
                   "smtp.security=starttls")
        r = self.spool("t1", "dan@sender.test", ["a@example.com"])
        st, _ = self.run_once()
        self.assertEqual(st["deferred"], 1)
        self.assertIn("tls problem", self.bounce_state(r)["detail"])
        time.sleep(0.3)
        self.assertEqual(Env.sink.count(), 0)
        out = self.mxctl("smtp-test", "demo", check=False)
        self.assertEqual(out.returncode, 1)
        self.assertIn("smtp-test failed (tls)", out.stderr)

    def generic(self, security, port, mechanism, password=PASSWORD):
        self.mxctl("connector", "set", "demo", "smtp.host=localhost", f"smtp.port={port}",
                   f"smtp.security={security}", "smtp.auth=generic", f"smtp.mechanism={mechanism}",
                   "smtp.username=user@example.test", "smtp.secret=-", stdin=password + "\n")

    def test_generic_auth_mechanisms_starttls_and_tls(self):
        for security, port in (("starttls", STARTTLS), ("tls", TLS)):
            for mech in ("plain", "login", "cram-md5", "auto"):
                with self.subTest(security=security, mech=mech):
                    clear(Env.relay)
                    self.generic(security, port, mech)
                    out = self.mxctl("smtp-test", "demo", "--send-to", "someone@remote.test")
                    self.assertIn("result:    OK", out.stdout)
                    if mech != "auto":
                        self.assertIn(f"> AUTH {mech.upper()}", out.stdout)
                    self.assertNotIn(PASSWORD, out.stdout + out.stderr)
                    self.assertNotIn(base64.b64encode(f"\0user@example.test\0{PASSWORD}".encode()).decode(),
                                     out.stdout)
                    self.assertNotIn(base64.b64encode(PASSWORD.encode()).decode(), out.stdout)
                    msgs = wait_for(lambda: Env.relay.messages(), 20, "relayed test message")
                    self.assertEqual(msgs[0][1]["Subject"], "MX Connector SMTP test")
        # A bounce through the authenticated STARTTLS route, relayed by Postfix.
        clear(Env.relay)
        self.generic("starttls", STARTTLS, "plain")
        r = self.spool("g1", "erin@sender.test", ["a@example.com"])
        st, _ = self.run_once()
        self.assertEqual(st["sent"], 1, self.bounce_state(r))
        env, msg = wait_for(lambda: Env.relay.messages(), 20, "relayed DSN")[0]
        self.check_dsn(env, msg, "erin@sender.test", ["a@example.com"])

    def test_wrong_password_clear_error_no_storm(self):
        self.generic("starttls", STARTTLS, "plain", password="wrong")
        out = self.mxctl("smtp-test", "demo", check=False)
        self.assertEqual(out.returncode, 1)
        self.assertIn("smtp-test failed (authentication)", out.stderr)
        self.assertIn("535", out.stderr)
        self.assertNotIn("wrong", out.stdout + out.stderr)
        rs = [self.spool(f"w{i}", f"u{i}@sender.test", ["a@example.com"]) for i in range(3)]
        st, _ = self.run_once()
        self.assertEqual(st["deferred"], 3)
        attempts = sorted(self.bounce_state(r)["attempts"] for r in rs)
        self.assertEqual(attempts, [0, 0, 1])  # one login attempt per run, not one per bounce

    def test_tls_certificate_verified(self):
        with open(self.cfg) as f:
            text = f.read()
        with open(self.cfg, "w") as f:
            f.write(text.replace(f'ca_file = "{Env.postfix.cert}"\n', ""))
        self.generic("tls", TLS, "plain")
        out = self.mxctl("smtp-test", "demo", check=False)
        self.assertEqual(out.returncode, 1)
        self.assertIn("smtp-test failed (tls)", out.stderr)

    def test_plaintext_password_refused(self):
        self.mxctl("connector", "set", "demo", "smtp.host=127.0.0.1", f"smtp.port={SINK}", "smtp.security=none",
                   "smtp.auth=generic", "smtp.username=u", "smtp.secret=-", stdin="pw\n")
        out = self.mxctl("smtp-test", "demo", check=False)
        self.assertEqual(out.returncode, 1)
        self.assertIn("refusing to send credentials over an unencrypted connection", out.stderr)

    def oauth_setup(self, provider="google", refresh="good-refresh", secret=None, tenant=None):
        self.mxctl("mailbox", "add", "sender@example.com", "--connector", "demo")
        self.mxctl("connector", "set", "demo", "smtp.host=localhost", f"smtp.port={STARTTLS}",
                   "smtp.security=starttls", f"smtp.auth={provider}", "bounce_sender=sender@example.com")
        args = ["mailbox", "oauth", "sender@example.com", "--client-id", "cid-1"]
        stdin = ""
        if refresh:
            args += ["--refresh-token", "-"]
            stdin += refresh + "\n"
        if secret:
            args += ["--client-secret", "-"]
            stdin += secret + "\n"
        if tenant:
            args += ["--tenant", tenant]
        out = self.mxctl(*args, stdin=stdin)
        self.assertNotIn(refresh or "zzz", out.stdout)
        Env.oauth.refresh_tokens["good-refresh"] = "sender@example.com"
        Env.oauth.client_secrets["app-secret"] = "sender@example.com"

    def test_google_xoauth2_bounce_uses_sender_mailbox(self):
        self.oauth_setup("google")
        r = self.spool("o1", "frank@sender.test", ["a@example.com"])
        st, log = self.run_once()
        self.assertEqual(st["sent"], 1, self.bounce_state(r))
        self.assertEqual(len(Env.oauth.requests), 1)
        req = Env.oauth.requests[0]
        self.assertEqual((req["path"], req["grant_type"], req["client_id"]), ("/token", "refresh_token", "cid-1"))
        env, msg = wait_for(lambda: Env.relay.messages(), 20, "relayed DSN")[0]
        self.check_dsn(env, msg, "frank@sender.test", ["a@example.com"], mail_from="<sender@example.com>")
        self.assertEqual(msg["From"], "Mail Delivery System <sender@example.com>")
        self.assertNotIn("tok-", log)
        cache = os.path.join(self.dir, "state", "oauth", "tokens.json")
        self.assertEqual(os.stat(cache).st_mode & 0o777, 0o600)
        # Cached: a second bounce needs no new token.
        self.spool("o2", "frank2@sender.test", ["a@example.com"])
        st, _ = self.run_once()
        self.assertEqual(st["sent"], 1)
        self.assertEqual(len(Env.oauth.requests), 1)
        # smtp-test shows AUTH XOAUTH2 masked.
        out = self.mxctl("smtp-test", "demo")
        self.assertIn("> AUTH XOAUTH2", out.stdout)  # Postfix offers no SASL-IR: token follows 334
        self.assertIn("> ***", out.stdout)
        self.assertNotIn("tok-", out.stdout)

    def test_expired_token_refreshed_once(self):
        self.oauth_setup("google")
        cache_dir = os.path.join(self.dir, "state", "oauth")
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        with open(os.path.join(cache_dir, "tokens.json"), "w") as f:
            json.dump({"sender@example.com|cid-1": {"access_token": "revoked", "expires_at": int(time.time()) + 3000}}, f)
        r = self.spool("x1", "gina@sender.test", ["a@example.com"])
        st, log = self.run_once()
        self.assertEqual(st["sent"], 1, self.bounce_state(r))
        self.assertEqual(len(Env.oauth.requests), 1)
        self.assertIn("refreshing it once", log)

    def test_revoked_refresh_token_is_a_clear_error(self):
        self.oauth_setup("google", refresh="revoked-refresh")
        out = self.mxctl("smtp-test", "demo", check=False)
        self.assertEqual(out.returncode, 1)
        self.assertIn("invalid_grant", out.stderr)
        self.assertNotIn("revoked-refresh", out.stdout + out.stderr)

    def test_microsoft_client_credentials(self):
        self.oauth_setup("microsoft", refresh=None, secret="app-secret", tenant="contoso.example")
        out = self.mxctl("smtp-test", "demo", "--send-to", "x@remote.test")
        self.assertIn("result:    OK", out.stdout)
        req = Env.oauth.requests[-1]
        self.assertEqual(req["path"], "/contoso.example/oauth2/v2.0/token")
        self.assertEqual(req["grant_type"], "client_credentials")
        self.assertEqual(req["scope"], "https://outlook.office365.com/.default")
        self.assertNotIn("app-secret", out.stdout)

    def test_mxctl_send_strips_bcc(self):
        self.generic("starttls", STARTTLS, "login")
        self.mxctl("mailbox", "add", "info@example.com", "--connector", "demo")
        msg = ("From: info@example.com\r\nTo: a@remote.test\r\nCc: \"B, b\" <b@remote.test>\r\n"
               "Bcc: hidden@remote.test\r\nSubject: hi\r\n\r\nbody\r\n")
        out = self.mxctl("send", "--from", "info@example.com", stdin=msg)
        self.assertIn("to 3 recipient(s)", out.stdout)
        msgs = wait_for(lambda: len(Env.relay.messages()) >= 1 and Env.relay.messages(), 20, "sent")
        env, m = msgs[0]
        self.assertIsNone(m["Bcc"])
        self.assertNotIn(b"hidden@remote.test", env["raw"].split(b"\n\n", 1)[1])
        self.assertIsNotNone(m["Message-ID"])
        out = self.mxctl("send", "--from", "nobody@example.com", stdin=msg, check=False)
        self.assertEqual(out.returncode, 1)

    def test_kill_during_send_sends_after_restart(self):
        # smtp-sink -w: waits before answering DATA, long enough to kill the sender mid-send.
        Env.slow = Sink(Env.tmp, SLOW_SINK, extra_args=("-w", "3")).start()
        try:
            self.mxctl("connector", "set", "demo", "smtp.host=127.0.0.1", f"smtp.port={SLOW_SINK}",
                       "smtp.security=none")
            r = self.spool("k1", "hank@sender.test", ["a@example.com"])
            p = subprocess.Popen([ARGS.bounce_tool, "--config", self.cfg, "loop"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            state_dir = os.path.join(self.dir, "state", "bounces", "state")
            wait_for(lambda: os.path.isdir(state_dir) and os.listdir(state_dir), 10, "in-flight state")
            time.sleep(0.5)
            p.send_signal(signal.SIGKILL)
            p.wait()
            self.assertEqual(self.bounce_state(r)["state"], "pending")
            self.assertTrue(os.listdir(os.path.join(self.dir, "state", "bounces", "new")))
            st, log = self.run_once()
            self.assertEqual(st["sent"], 1)
            self.assertIn("interrupted", log)
            self.assertEqual(self.bounce_state(r)["state"], "sent")
            msgs = wait_for(lambda: Env.slow.messages(), 10, "DSN")
            self.assertGreaterEqual(len(msgs), 1)  # at-least-once: never zero
            self.assertLessEqual(len(msgs), 2)
        finally:
            Env.slow.stop()
            Env.slow = None


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bounce-tool", required=True)
    ap.add_argument("--mxctl", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)
