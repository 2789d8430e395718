"""mxenv: a private MX Connector installation in a temporary folder for importer integration
tests (Python stdlib only). Creates config + store (through the real mxctl), starts and kills
the real mx-importer, and inspects mailboxes, ImportFailed and the bounce spool."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def args():
    p = argparse.ArgumentParser()
    p.add_argument("--importer", required=True)
    p.add_argument("--mxctl", required=True)
    p.add_argument("--keep", action="store_true")
    return p.parse_args()


class Env:
    def __init__(self, importer, mxctl, hostname="test.host", extra="", root=None, state=None):
        self.importer, self.mxctl = importer, mxctl
        self.root = root or tempfile.mkdtemp(prefix="mx-imp-")
        self.state = state or os.path.join(self.root, "state")
        self.drop = os.path.join(self.root, "drop")
        self.mail = os.path.join(self.root, "mail")
        self.conf = os.path.join(self.root, f"mx-{hostname}.toml")
        self.hostname = hostname
        with open(self.conf, "w") as f:
            f.write(f'state_dir = "{self.state}"\nrun_dir = "{self.root}/run"\n'
                    f'mail_root = "{self.mail}"\nhostname = "{hostname}"\n'
                    f'[importer]\neml_settle_seconds = 0\nrescan_seconds = 1\n{extra}')
        os.makedirs(os.path.join(self.drop, "new"), exist_ok=True)
        self.procs = []

    def ctl(self, *a, check=True):
        r = subprocess.run([self.mxctl, "--config", self.conf, *a], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"mxctl {a}: {r.returncode} {r.stderr}")
        return r

    def setup_demo(self, mailboxes=("info@example.test", "sales@example.test")):
        self.ctl("connector", "add", "demo", "--drop-folder", self.drop, "--domain", "example.test")
        for m in mailboxes:
            self.ctl("mailbox", "add", m, "--connector", "demo")

    def start(self, *extra, env=None, log=None):
        e = dict(os.environ)
        e.update(env or {})
        out = open(log, "ab") if log else subprocess.DEVNULL
        p = subprocess.Popen([self.importer, "--config", self.conf, *extra], stdout=out,
                             stderr=out, env=e)
        self.procs.append(p)
        return p

    def drain(self, timeout=300, env=None):
        p = self.start("--drain", env=env, log=os.path.join(self.root, "drain.log"))
        rc = p.wait(timeout=timeout)
        if rc != 0:
            raise RuntimeError(f"mx-importer --drain exited {rc}")

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def maildir_new(self, mailbox):
        local, domain = mailbox.split("@")
        return os.path.join(self.mail, domain, local or "@", "new")

    def files(self, d):
        try:
            return [os.path.join(d, n) for n in os.listdir(d)
                    if not n.startswith(".") and os.path.isfile(os.path.join(d, n))]
        except FileNotFoundError:
            return []

    def pending(self):
        """Files not yet taken or finished: new/, *.eml, .retry/, every .work/ folder."""
        out = self.files(os.path.join(self.drop, "new")) + self.files(os.path.join(self.drop, ".retry"))
        out += [f for f in self.files(self.drop) if f.endswith(".eml")]
        work = os.path.join(self.drop, ".work")
        if os.path.isdir(work):
            for h in os.listdir(work):
                out += self.files(os.path.join(work, h))
        return out

    def failed(self):
        d = os.path.join(self.drop, "ImportFailed")
        msgs = [f for f in self.files(d) if not f.endswith(".json")]
        return msgs, {m: json.load(open(m + ".json")) for m in msgs if os.path.exists(m + ".json")}

    def bounce_jobs(self):
        # new/: waiting for the bounce sender (which runs inside mx-importer); done/: handled
        out = []
        for sub in ("new", "done"):
            d = os.path.join(self.state, "bounces", sub)
            out += [json.load(open(f)) for f in self.files(d) if f.endswith(".json")]
        return out

    def wait_until(self, cond, timeout=300, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def cleanup(self, keep=False, ok=True):
        """Stops the importers; removes the folder unless kept, or the test failed (`ok`)."""
        self.stop_all()
        if not ok:
            print(f"kept {self.root} for inspection", file=sys.stderr)
        if not keep and ok:
            shutil.rmtree(self.root, ignore_errors=True)


def logged(path, text, timeout=10):
    """True once `text` is in the log file at `path`: mx-importer buffers its info lines and
    writes them within a second (or at a warning), so a line may follow the event it tells."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, errors="replace") as f:
                if text in f.read():
                    return True
        except FileNotFoundError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def test_id_of(path):
    """The X-Test-Id header of a message file (first 4 KB)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    for line in head.split(b"\n"):
        if line.startswith(b"X-Test-Id: "):
            return line[11:].strip().decode()
        if line.strip() == b"":
            break
    return None


def message(test_id, rcpt=None, receivers=None, sender="sender@remote.example", body_size=600):
    body = ("lorem ipsum dolor sit amet " * (body_size // 27 + 1))[:body_size]
    if receivers:
        head = f"X-Sender: <{sender}>\r\n" + "".join(f"X-Receiver: <{r}>\r\n" for r in receivers)
    else:
        head = f"Return-Path: <{sender}>\r\nDelivered-To: {rcpt}\r\nX-Original-To: {rcpt}\r\n"
    return (head + f"From: {sender}\r\nSubject: test {test_id}\r\nMessage-ID: <{test_id}@test>\r\n"
            f"X-Test-Id: {test_id}\r\n\r\n{body}\r\n").encode()


def write_maildir(drop, name, data, sync=True):
    tmp = os.path.join(drop, "tmp")
    os.makedirs(tmp, exist_ok=True)
    p = os.path.join(tmp, name)
    with open(p, "wb") as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())
    os.rename(p, os.path.join(drop, "new", name))


def write_eml(drop, name, data):
    p = os.path.join(drop, "." + name + ".tmp")
    with open(p, "wb") as f:
        f.write(data)
    os.rename(p, os.path.join(drop, name))
