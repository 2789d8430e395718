"""Real SMTP servers on loopback for the bounce/SMTP tests (Python 3 stdlib only).

- Sink: Postfix's smtp-sink, dumping every received message (with X-Mail-Args/X-Rcpt-Args
  pseudo headers carrying the envelope) into a folder.
- Postfix: a private instance (own config/queue/data dirs) with smtpd on a STARTTLS port and an
  implicit-TLS (wrappermode) port, SASL via a private Dovecot auth service (PLAIN, LOGIN,
  CRAM-MD5 from a passwd-file; XOAUTH2/OAUTHBEARER validated by Dovecot's oauth2 passdb against
  the fake token endpoint's /introspect); relays authenticated mail to the sink. Relaying is
  only allowed to authenticated clients, so a passing test proves authentication happened.
- FakeOAuth: a Python http.server token endpoint (/token: refresh_token and
  client_credentials grants; /introspect for Dovecot). The only test double (Google/Microsoft).
"""
import email
import email.policy
import glob
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.abspath(__file__))


def wait_port(port, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def wait_for(pred, timeout=30.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Sink:
    """smtp-sink dumping each message to dir/<n>.msg."""

    def __init__(self, tmp, port, extra_args=()):
        self.port = port
        self.dir = os.path.join(tmp, f"sink{port}")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o777)
        self.args = ["smtp-sink", "-u", "nobody", "-R", self.dir, "-d", "%M.", *extra_args,
                     f"127.0.0.1:{port}", "50"]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def count(self):
        """Files present now, finished or not (for "nothing arrived" checks)."""
        return len(os.listdir(self.dir))

    def messages(self):
        """[(envelope dict, email.message.Message)] in arrival order."""
        out = []
        for p in sorted(glob.glob(os.path.join(self.dir, "*"))):
            if time.time() - os.path.getmtime(p) < 0.5:
                return []  # smtp-sink may still be writing it: ask again later
            with open(p, "rb") as f:
                raw = f.read()
            msg = email.message_from_bytes(raw, policy=email.policy.compat32)
            env = {"mail_from": msg.get("X-Mail-Args", ""),
                   "rcpt": msg.get_all("X-Rcpt-Args", []), "raw": raw}
            out.append((env, msg))
        return out


class FakeOAuth:
    """Token endpoint: /token and /introspect. tokens issued are remembered for introspection."""

    def __init__(self, port):
        self.port = port
        self.requests = []  # parsed form bodies of /token
        self.valid = {}  # access token -> username
        self.refresh_tokens = {"good-refresh": "sender@example.test"}
        self.client_secrets = {"app-secret": "sender@example.test"}
        self.counter = 0
        self.expires_in = 3600
        self.rotate = False
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = urllib.parse.parse_qs(self.rfile.read(n).decode())
                form = {k: v[0] for k, v in body.items()}
                path = self.path.split("?")[0]
                if path.endswith("/introspect"):
                    user = outer.valid.get(form.get("token", ""))
                    self.reply(200, {"active": "true", "username": user} if user else {"active": "false"})
                    return
                outer.requests.append({"path": path, **form})
                g = form.get("grant_type")
                user = None
                if g == "refresh_token":
                    user = outer.refresh_tokens.get(form.get("refresh_token"))
                elif g == "client_credentials":
                    user = outer.client_secrets.get(form.get("client_secret"))
                if not user or form.get("client_id") != "cid-1":
                    self.reply(400, {"error": "invalid_grant", "error_description": "bad grant"})
                    return
                outer.counter += 1
                tok = f"tok-{outer.counter}"
                outer.valid[tok] = user
                resp = {"access_token": tok, "token_type": "Bearer", "expires_in": outer.expires_in}
                if outer.rotate and g == "refresh_token":
                    newrt = f"rotated-{outer.counter}"
                    outer.refresh_tokens[newrt] = user
                    resp["refresh_token"] = newrt
                self.reply(200, resp)

            def reply(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def url(self, path="/token"):
        return f"http://127.0.0.1:{self.port}{path}"


def make_cert(tmp):
    key, crt = os.path.join(tmp, "key.pem"), os.path.join(tmp, "cert.pem")
    if not os.path.exists(crt):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", key, "-out", crt], check=True, capture_output=True)
        os.chmod(key, 0o600)
    return key, crt


class Dovecot:
    def __init__(self, tmp, oauth_port, users):
        self.dir = os.path.join(tmp, "dovecot")
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            for u, p in users.items():
                f.write(f"{u}:{{PLAIN}}{p}\n")
        with open(os.path.join(self.dir, "oauth2.conf"), "w") as f:
            f.write(f"introspection_mode = post\nintrospection_url = http://127.0.0.1:{oauth_port}/introspect\n"
                    "username_attribute = username\nactive_attribute = active\nactive_value = true\n")
        d = self.dir
        self.conf = os.path.join(d, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(f"""base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols =
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5 xoauth2 oauthbearer
auth_verbose = yes
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
  mechanisms = plain login cram-md5
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/oauth2.conf
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0666
  }}
}}
""")
        self.socket = os.path.join(d, "run", "auth-postfix")

    def start(self):
        subprocess.run(["dovecot", "-c", self.conf], check=True)
        wait_for(lambda: os.path.exists(self.socket), 20, "dovecot auth socket")
        return self

    def stop(self):
        subprocess.run(["dovecot", "-c", self.conf, "stop"], capture_output=True)
        try:
            with open(os.path.join(self.dir, "run", "master.pid")) as f:
                pid = int(f.read().strip())
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
        except (OSError, ValueError):
            pass


class Postfix:
    """Private Postfix: starttls_port (STARTTLS offered, AUTH only after TLS), tls_port
    (wrappermode), relaying authenticated mail to the sink."""

    def __init__(self, tmp, starttls_port, tls_port, sink_port, sasl_socket):
        self.dir = os.path.join(tmp, "postfix")
        self.conf = os.path.join(self.dir, "etc")
        os.makedirs(self.conf, exist_ok=True)
        key, crt = make_cert(tmp)
        self.cert = crt
        self.log = os.path.join(self.dir, "postfix.log")
        main = f"""compatibility_level = 3.6
queue_directory = {self.dir}/queue
data_directory = {self.dir}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx-test.localhost
mydestination =
relayhost = [127.0.0.1]:{sink_port}
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {sasl_socket}
smtpd_tls_cert_file = {crt}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtp_tls_security_level = none
maillog_file = {self.log}
maillog_file_prefixes = {self.dir}
alias_maps =
alias_database =
local_recipient_maps =
biff = no
shlib_directory = /usr/lib/postfix
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
"""
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(main)
        with open("/etc/postfix/master.cf") as f:
            lines = f.read().splitlines()
        out = []
        for ln in lines:
            if ln.startswith("smtp ") and " inet " in ln:
                continue
            out.append(ln)
        out.append(f"127.0.0.1:{starttls_port} inet n - n - - smtpd")
        out.append(f"127.0.0.1:{tls_port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes "
                   "-o smtpd_tls_security_level=encrypt")
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write("\n".join(out) + "\n")
        self.ports = (starttls_port, tls_port)

    def start(self):
        os.makedirs(os.path.join(self.dir, "queue"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        subprocess.run(["postfix", "-c", self.conf, "check"], capture_output=True)
        r = subprocess.run(["postfix", "-c", self.conf, "start"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("postfix start failed: " + r.stderr)
        for p in self.ports:
            wait_port(p)
        return self

    def stop(self):
        subprocess.run(["postfix", "-c", self.conf, "stop"], capture_output=True)
        pidf = os.path.join(self.dir, "queue", "pid", "master.pid")
        for _ in range(50):
            if not os.path.exists(pidf):
                break
            time.sleep(0.1)
