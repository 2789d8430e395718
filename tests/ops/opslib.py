"""Helpers shared by the operations tests (tests/ops): run scripts, send SMTP, wait for files.

Everything here drives the real product: scripts/up, scripts/down, scripts/mx-stack, mxctl,
a private Postfix and the two daemons. Nothing is stubbed. Python 3 stdlib only.
"""
import json
import os
import shutil
import smtplib
import subprocess
import tempfile
import time
import uuid


class Stack:
    """A private stack in a temporary var folder, started with scripts/up."""

    def __init__(self, root, build, port):
        self.root = os.path.abspath(root)
        self.build = os.path.abspath(build)
        self.port = int(port)
        self.var = tempfile.mkdtemp(prefix="mx-ops-")
        self.conf = os.path.join(self.var, "mx-connector.toml")
        self.env = dict(os.environ, MX_VAR_DIR=self.var, MX_SMTP_PORT=str(self.port),
                        BUILD_DIR=self.build, MX_NO_DEPS="1")
        self.env.pop("MX_CONFIG", None)

    # -- scripts ---------------------------------------------------------------------------
    def script(self, name, *args, check=True, quiet=False, timeout=600):
        env = dict(self.env)
        if quiet:
            env["MX_QUIET"] = "1"
        p = subprocess.run([os.path.join(self.root, "scripts", name), *args], env=env,
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"scripts/{name} {' '.join(args)} exited {p.returncode}\n"
                                 f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        return p

    def up(self, **kw):
        return self.script("up", **kw)

    def down(self, *args, **kw):
        return self.script("down", *args, **kw)

    def stack(self, *args, check=True):
        p = subprocess.run([os.path.join(self.root, "scripts", "mx-stack"), *args, self.var]
                           if args[0] != "start" else
                           [os.path.join(self.root, "scripts", "mx-stack"), "start", self.var,
                            "--port", str(self.port), "--build", self.build],
                           env=self.env, capture_output=True, text=True, timeout=300)
        if check and p.returncode != 0:
            raise AssertionError(f"mx-stack {args} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def mxctl(self, *args, check=True):
        p = subprocess.run([os.path.join(self.build, "admin", "mxctl"), "--config", self.conf,
                            *args], capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"mxctl {' '.join(args)} exited {p.returncode}\n"
                                 f"{p.stdout}\n{p.stderr}")
        return p

    def mxctl_json(self, *args):
        return json.loads(self.mxctl(*args, "--json").stdout)

    def pid(self, daemon):
        try:
            with open(os.path.join(self.var, "run", daemon + ".pid")) as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
            # A killed daemon may linger as a zombie when nobody reaps it (the stack's
            # daemons are re-parented): that is not a running daemon.
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return None
            return pid
        except (OSError, ValueError):
            return None

    def maildir(self, local, domain="example.test"):
        return os.path.join(self.var, "mail", domain, local)

    def drop(self):
        return os.path.join(self.var, "drop", "demo")

    def cleanup(self):
        self.down(check=False)
        shutil.rmtree(self.var, ignore_errors=True)


def token():
    return "ops-" + uuid.uuid4().hex


def send(port, rcpts, tok, sender="alice@sender.test", timeout=60):
    """Sends one message; returns (code, text) of the first refusal, or (250, '') when
    accepted. Never raises for SMTP-level refusals."""
    body = (f"From: <{sender}>\r\nTo: <{rcpts[0]}>\r\nSubject: {tok}\r\n"
            f"Message-ID: <{tok}@sender.test>\r\n\r\nbody {tok}\r\n")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as s:
            s.ehlo("client.sender.test")
            code, msg = s.mail(sender)
            if code != 250:
                return code, msg.decode(errors="replace")
            for r in rcpts:
                code, msg = s.rcpt(r)
                if code not in (250, 251):
                    return code, msg.decode(errors="replace")
            code, msg = s.data(body.encode())
            if code != 250:
                return code, msg.decode(errors="replace")
            return 250, ""
    except smtplib.SMTPResponseException as e:
        return e.smtp_code, e.smtp_error.decode(errors="replace")
    except (smtplib.SMTPServerDisconnected, ConnectionError, OSError) as e:
        return 421, str(e)


def files_with(maildir, tok):
    """Files in a Maildir (new/ and cur/) that contain tok."""
    found = []
    for sub in ("new", "cur"):
        d = os.path.join(maildir, sub)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            p = os.path.join(d, name)
            try:
                with open(p, "rb") as f:
                    if tok.encode() in f.read():
                        found.append(p)
            except OSError:
                pass
    return found


def index_maildir(maildir):
    """token -> number of files in the Maildir holding it (tokens look like ops-<hex>)."""
    import re
    counts = {}
    for sub in ("new", "cur"):
        d = os.path.join(maildir, sub)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            try:
                with open(os.path.join(d, name), "rb") as f:
                    data = f.read()
            except OSError:
                continue
            toks = set(re.findall(rb"Subject: (ops-[0-9a-f]{32})", data))
            for t in toks:
                counts[t.decode()] = counts.get(t.decode(), 0) + 1
    return counts


def wait_for(pred, timeout, what, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def port_open(port):
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False
