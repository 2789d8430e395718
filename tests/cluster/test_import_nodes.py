#!/usr/bin/env python3
"""test_import_nodes: two cluster nodes on this machine for the cluster import tests (not a test
itself). A private PostgreSQL (scripts/pg-private), two private stacks (scripts/mx-stack with
--cluster, own SMTP port, state and Postfix), ONE shared drop folder and ONE shared mail store
(as an application server's mailboxes would be), the importers started by the test itself so it
can SIGKILL and restart them. Python stdlib only."""
import argparse
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

LEASE = 5  # seconds: short, so a takeover happens within the test


def args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    a.build, a.source = os.path.abspath(a.build), os.path.abspath(a.source)
    return a


def skip_reason(a):
    for need in ("milter/mx-milter", "importer/mx-importer", "admin/mxctl"):
        if not os.path.exists(os.path.join(a.build, need)):
            return f"{need} not built"
    if os.geteuid() != 0:
        return "needs root (private Postfix and PostgreSQL)"
    if not os.path.exists("/usr/lib/postgresql/15/bin/pg_ctl"):
        return "postgresql-15 not installed"
    return None


def wait(cond, what, timeout=120, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


class Node:
    def __init__(self, cluster, name, port):
        self.cluster, self.name, self.port = cluster, name, port
        self.dir = os.path.join(cluster.root, name)
        self.conf = os.path.join(self.dir, "mx-connector.toml")
        self.log = os.path.join(cluster.root, f"importer-{name}.log")
        self.proc = None

    def ctl(self, *a, check=True):
        r = subprocess.run([f"{self.cluster.build}/admin/mxctl", "--config", self.conf, *a],
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"mxctl {a} on {self.name}: {r.returncode} {r.stderr}")
        return r

    def start_importer(self):
        if self.proc and self.proc.poll() is None:
            return self.proc  # running already
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([f"{self.cluster.build}/importer/mx-importer", "--config",
                                      self.conf], stdout=out, stderr=out)
        return self.proc

    def stop_importer(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        self.proc = None

    def work(self):
        """The files this node has claimed (<drop>/.work/<node>/)."""
        d = os.path.join(self.cluster.drop, ".work", self.name)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def queued(self):
        """Messages still in this node's private Postfix queue (not yet delivered into the drop
        folder): a drop folder can be empty for a moment while Postfix still holds mail, e.g. a
        message whose cleanup(8) waits a second for a restarted trivial-rewrite(8)."""
        spool = os.path.join(self.dir, "postfix", "spool")
        n = 0
        for q in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(os.path.join(spool, q)):
                n += len(files)
        return n

    def imported_lines(self):
        try:
            return open(self.log, errors="replace").read().count("outcome=imported")
        except FileNotFoundError:
            return 0


class Cluster:
    """PostgreSQL + nodes; use as a context manager (everything stopped at the end)."""

    def __init__(self, a, ports, extra_importer=""):
        self.build, self.source, self.keep = a.build, a.source, a.keep
        self.root = tempfile.mkdtemp(prefix="mx-cluster-imp-", dir="/var/tmp")
        os.chmod(self.root, 0o755)
        self.drop = os.path.join(self.root, "shared-drop")
        self.mail = os.path.join(self.root, "shared-mail")
        self.pg = os.path.join(self.root, "pg")
        self.nodes = [Node(self, f"node-{c}", p) for c, p in zip("ab", ports)]
        self.extra_importer = extra_importer
        self.ok = False

    def __enter__(self):
        out = subprocess.run([f"{self.source}/scripts/pg-private", "start", self.pg], check=True,
                             capture_output=True, text=True).stdout
        self.conninfo = out.strip().splitlines()[-1]
        for n in self.nodes:
            subprocess.run([f"{self.source}/scripts/mx-stack", "start", n.dir, "--port",
                            str(n.port), "--build", self.build, "--no-importer", "--cluster",
                            self.conninfo, "--node", n.name], check=True, capture_output=True)
            with open(n.conf) as f:
                text = f.read()
            assert text.rstrip().splitlines()[-1].startswith("node = "), "[cluster] is not last"
            # Both nodes deliver into one shared mail store; a short lease; quick retries.
            text = text.replace(f'mail_root = "{n.dir}/mail"', f'mail_root = "{self.mail}"')
            text += (f"lease_seconds = {LEASE}\n\n[importer]\neml_settle_seconds = 0\n"
                     f"rescan_seconds = 1\nretry_base_seconds = 2\n{self.extra_importer}")
            with open(n.conf, "w") as f:
                f.write(text)
        user = "mxconnector"
        for d in (self.drop, self.mail):
            os.makedirs(d, exist_ok=True)
            shutil.chown(d, user, user)
        return self

    def __exit__(self, *exc):
        for n in self.nodes:
            try:
                n.stop_importer()
            except Exception:  # noqa: BLE001 - cleanup goes on
                pass
            subprocess.run([f"{self.source}/scripts/mx-stack", "stop", n.dir], capture_output=True)
        subprocess.run([f"{self.source}/scripts/pg-private", "stop", self.pg], capture_output=True)
        if self.ok and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            print(f"kept {self.root}")
        return False

    def setup_catalog(self, mailboxes=("info@example.test", "sales@example.test")):
        """The catalog of both nodes: `mxctl cluster init` and the writes on node A (they go to
        PostgreSQL), then wait until node B's replica (mx-replica) has them too."""
        a = self.nodes[0]
        a.ctl("cluster", "init")
        a.ctl("connector", "add", "demo", "--drop-folder", self.drop, "--domain", "example.test")
        for m in mailboxes:
            a.ctl("mailbox", "add", m, "--connector", "demo")
        self.wait_replicated(mailboxes, True)

    def known_on(self, node, mailbox):
        r = node.ctl("check", mailbox, "--json", check=False)
        try:
            return json.loads(r.stdout).get("decision") == "accept"
        except ValueError:
            return False

    def wait_replicated(self, mailboxes, present):
        for n in self.nodes:
            for m in mailboxes:
                wait(lambda: self.known_on(n, m) == present,
                     f"{m} {'known' if present else 'gone'} on {n.name}", timeout=60)

    def remove_mailbox(self, mailbox):
        self.nodes[0].ctl("mailbox", "remove", mailbox)
        self.wait_replicated([mailbox], False)

    def add_mailbox(self, mailbox):
        self.nodes[0].ctl("mailbox", "add", mailbox, "--connector", "demo")
        self.wait_replicated([mailbox], True)

    def psql(self, sql):
        return subprocess.run(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/psql",
                               self.conninfo, "-tAc", sql], check=True, capture_output=True,
                              text=True).stdout.strip()

    def pending_of(self, node):
        return int(self.psql(f"SELECT count(*) FROM mxc.imports WHERE node = '{node}' "
                             "AND state = 'pending'"))

    def maildir(self, mailbox):
        local, domain = mailbox.split("@")
        return os.path.join(self.mail, domain, local, "new")

    def mailbox_files(self, mailbox):
        return sorted(glob.glob(os.path.join(self.maildir(mailbox), "*")))

    def backlog(self):
        """Files not yet finished anywhere in the shared drop folder."""
        n = 0
        for sub in ("new", ".retry"):
            d = os.path.join(self.drop, sub)
            n += len(os.listdir(d)) if os.path.isdir(d) else 0
        n += len([f for f in os.listdir(self.drop) if f.endswith(".eml")])
        for w in glob.glob(os.path.join(self.drop, ".work", "*")):
            n += len([f for f in os.listdir(w) if not f.startswith(".")])
        return n


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def header(path, name):
    prefix = name.lower().encode() + b":"
    with open(path, "rb") as f:
        for line in f.read(16384).split(b"\n"):
            if line.lower().startswith(prefix):
                return line[len(prefix):].strip().decode(errors="replace")
            if line.strip() == b"":
                break
    return None
