#!/usr/bin/env python3
"""Two nodes on one PostgreSQL (docs/cluster.md), all real: a private PostgreSQL 15
(scripts/pg-private), two private stacks (scripts/mx-stack: Postfix + mx-milter + mx-replica)
on ports 2640 (node-a) and 2641 (node-b). RCPT decisions are asked over SMTP at each node's
Postfix. Needs root, postgresql-15 and postfix (exit 77 = skipped).

What it proves:
  - mxctl on A (cluster init, connector, mailbox) -> B's milter decides with it (the time is
    printed; the deadline is generous: CI machines are shared);
  - mailbox removed on A -> 550 at B; connector disabled on A -> 450 at B;
  - PostgreSQL stopped: both nodes keep accepting known and rejecting unknown recipients;
    mxctl writes fail (non-zero, a clear message) and change nothing; cluster status exits 3;
  - PostgreSQL back: a write on A reaches B; cluster status shows both nodes, lag 0;
  - max_staleness on B with its replica stopped: 451 4.3.0; replica back: decisions again.
"""
import argparse
import json
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time

PORT_A, PORT_B = 2640, 2641


def run(cmd, check=True, timeout=300, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def rcpt(port, address):
    """(code, text) of RCPT TO at a node's Postfix; no message is sent."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("client.sender.test")
            s.mail("probe@sender.test")
            code, msg = s.rcpt(address)
            s.rset()
            return code, msg.decode(errors="replace")
    except (smtplib.SMTPException, OSError) as e:
        return 421, str(e)


def wait_code(port, address, want, timeout):
    start = time.monotonic()
    seen = []  # the distinct answers on the way, for the failure message
    while time.monotonic() - start < timeout:
        last = rcpt(port, address)
        if not seen or seen[-1] != last:
            seen.append(last)
        if last[0] == want:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"port {port} RCPT {address}: wanted {want}, got {seen} "
                         f"within {timeout}s")


class Cluster:
    def __init__(self, root, build):
        self.root, self.build = root, build
        self.tmp = tempfile.mkdtemp(prefix="mx-cluster-")
        os.chmod(self.tmp, 0o755)
        self.pg = os.path.join(self.tmp, "pg")
        self.nodes = {"a": os.path.join(self.tmp, "node-a"), "b": os.path.join(self.tmp, "node-b")}
        self.drop = os.path.join(self.tmp, "drop")  # one drop folder for both hosts

    def script(self, *args, check=True):
        return run([os.path.join(self.root, "scripts", args[0]), *args[1:]], check=check)

    def pg_start(self):
        return self.script("pg-private", "start", self.pg).stdout.strip().splitlines()[-1]

    def pg_stop(self):
        self.script("pg-private", "stop", self.pg)

    def conf(self, n):
        return os.path.join(self.nodes[n], "mx-connector.toml")

    def mxctl(self, n, *args, check=True):
        return run([os.path.join(self.build, "admin", "mxctl"), "--config", self.conf(n), *args],
                   check=check, timeout=120)

    def stack(self, n, *args, check=True):
        return self.script("mx-stack", args[0], self.nodes[n], *args[1:], check=check)

    def cleanup(self):
        for n in self.nodes:
            self.stack(n, "stop", check=False)
        self.script("pg-private", "stop", self.pg, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--build", required=True)
    a = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("postfix") or \
            not os.path.exists("/usr/lib/postgresql/15/bin/pg_ctl"):
        print("SKIP: needs root, postfix and postgresql-15")
        return 77
    c = Cluster(os.path.abspath(a.root), os.path.abspath(a.build))
    try:
        conninfo = c.pg_start()
        for n, port in (("a", PORT_A), ("b", PORT_B)):
            c.stack(n, "start", "--port", str(port), "--build", c.build, "--no-importer",
                    "--cluster", conninfo, "--node", "node-" + n)
            # Faster repair and reconnect than the default 5 s, for a short test.
            with open(c.conf(n), "a") as f:
                f.write("check_seconds = 1\n")
            c.stack(n, "stop-replica")
            c.stack(n, "start-replica")
        os.makedirs(c.drop, exist_ok=True)
        shutil.chown(c.drop, "mxconnector")

        c.mxctl("a", "cluster", "init")
        again = c.mxctl("a", "cluster", "init", check=False)
        assert again.returncode != 0 and "already has a catalog" in again.stderr, again
        c.mxctl("a", "connector", "add", "erp", "--drop-folder", c.drop, "--domain",
                "example.test")
        c.mxctl("a", "mailbox", "add", "known@example.test", "--connector", "erp")
        # A new domain also has to reach B's Postfix (its domain table): measured apart.
        print(f"new domain + mailbox on A, accepted at B after "
              f"{wait_code(PORT_B, 'known@example.test', 250, 60):.3f}s")
        t0 = time.monotonic()
        c.mxctl("a", "mailbox", "add", "new@example.test", "--connector", "erp")
        t1 = time.monotonic()
        took = wait_code(PORT_B, "new@example.test", 250, 15)
        print(f"mailbox added on A (mxctl {t1 - t0:.3f}s), accepted at B {took:.3f}s after "
              f"mxctl returned (goal: within 1 s; not asserted, shared CI machines)")
        wait_code(PORT_B, "nobody@example.test", 550, 5)

        c.mxctl("a", "mailbox", "remove", "new@example.test")
        print(f"removed on A, rejected at B after {wait_code(PORT_B, 'new@example.test', 550, 15):.3f}s")
        c.mxctl("a", "connector", "set", "erp", "active=false")
        print(f"disabled on A, 450 at B after {wait_code(PORT_B, 'known@example.test', 450, 15):.3f}s")
        c.mxctl("a", "connector", "set", "erp", "active=true")
        wait_code(PORT_B, "known@example.test", 250, 15)

        # --- secrets: sealed in PostgreSQL with the cluster key, replicated to hosts that have
        # it (both here); never in PostgreSQL as plain text.
        key = os.urandom(32).hex()
        for n in c.nodes:
            kf = os.path.join(c.nodes[n], "state", "cluster.key")
            with open(kf, "w") as f:
                f.write(key + "\n")
            os.chmod(kf, 0o600)
            shutil.chown(kf, "mxconnector", "mxconnector")
        secret = "Sup3r-" + os.urandom(6).hex()
        c.mxctl("a", "connector", "set", "erp", f"smtp.password={secret}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            j = json.loads(c.mxctl("b", "connector", "show", "erp", "--json").stdout)
            if j["smtp"]["secret"] == "***":
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the SMTP password set on A never reached B's secret store")
        dump = run(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_dump",
                    "-a", "-t", "mxc.secrets", c.script("pg-private", "conninfo",
                                                        c.pg).stdout.strip()]).stdout
        assert "smtp" in dump and secret not in dump and secret.encode().hex() not in dump, \
            "the secret is readable in PostgreSQL"
        for n in c.nodes:
            out = c.mxctl(n, "connector", "show", "erp").stdout
            assert secret not in out, "mxctl printed the secret"
        print("secret set on A: on B (sealed in PostgreSQL, AES-256-GCM)")

        # mx-replica reads the secrets only when they changed (a fingerprint of the sealed rows),
        # not at every check: a change that moves no catalog generation (the row deleted in
        # PostgreSQL by hand) and a new value set on A both still reach B.
        conninfo_pg = c.script("pg-private", "conninfo", c.pg).stdout.strip()
        run(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/psql", "-q",
             conninfo_pg, "-c", "DELETE FROM mxc.secrets WHERE name LIKE 'connector/erp/%'"])
        deadline = time.monotonic() + 30
        while json.loads(c.mxctl("b", "connector", "show", "erp", "--json").stdout)["smtp"][
                "secret"] == "***":
            assert time.monotonic() < deadline, "a secret deleted in PostgreSQL stayed on B"
            time.sleep(0.3)
        changed = "Sup3r-" + os.urandom(6).hex()
        c.mxctl("a", "connector", "set", "erp", f"smtp.password={changed}")
        b_secrets = os.path.join(c.nodes["b"], "state", "secrets")
        deadline = time.monotonic() + 30
        while changed not in run(["mdb_dump", "-p", "-s", "secrets", b_secrets]).stdout:
            assert time.monotonic() < deadline, "the password changed on A never reached B"
            time.sleep(0.3)
        print("secret removed in PostgreSQL: gone on B; changed on A: the new value on B")

        # --- PostgreSQL down
        c.pg_stop()
        for port in (PORT_A, PORT_B):
            assert rcpt(port, "known@example.test")[0] == 250
            assert rcpt(port, "nobody@example.test")[0] == 550
        w = c.mxctl("a", "mailbox", "add", "during@example.test", "--connector", "erp",
                    check=False)
        assert w.returncode != 0 and "not reachable" in w.stderr and "nothing was changed" in \
            w.stderr, (w.returncode, w.stderr)
        assert "password" not in w.stderr
        chk = c.mxctl("a", "check", "during@example.test", check=False)
        assert chk.returncode == 10, ("a failed write changed the local store", chk.stdout)
        st = c.mxctl("a", "cluster", "status", "--json", check=False)
        assert st.returncode == 3, st
        sj = json.loads(st.stdout)
        assert sj["connected"] is False and sj["lag_ms"] is None, sj
        print("PostgreSQL down: decisions go on, writes fail cleanly, status exit 3")

        # --- PostgreSQL back
        c.pg_start()
        c.mxctl("a", "mailbox", "add", "after@example.test", "--connector", "erp")
        print(f"after restart, B accepts after "
              f"{wait_code(PORT_B, 'after@example.test', 250, 30):.3f}s")
        assert rcpt(PORT_B, "during@example.test")[0] == 550

        def caught_up():
            j = json.loads(c.mxctl("b", "cluster", "status", "--json", check=False).stdout)
            names = {x["node"] for x in j["nodes"]}
            ok = j["connected"] and j["lag_ms"] == 0 and \
                j["local_generation"] == j["primary_generation"] and \
                {"node-a", "node-b"} <= names
            return j if ok else None
        deadline = time.monotonic() + 30
        j = None
        while time.monotonic() < deadline and not (j := caught_up()):
            time.sleep(0.5)
        assert j, "cluster status on B never showed both nodes caught up"
        nodes = json.loads(c.mxctl("a", "cluster", "nodes", "--json").stdout)
        assert [x["node"] for x in nodes] == ["node-a", "node-b"], nodes

        # --- max_staleness on B: replica stopped -> 451 4.3.0
        with open(c.conf("b"), "a") as f:
            f.write("max_staleness = 2\n")
        c.stack("b", "restart-milter")
        wait_code(PORT_B, "known@example.test", 250, 15)
        c.stack("b", "stop-replica")
        wait_code(PORT_B, "known@example.test", 451, 15)
        code, text = rcpt(PORT_B, "known@example.test")
        assert code == 451 and "4.3.0" in text, (code, text)
        doc = c.mxctl("b", "doctor", "--json", check=False)
        assert "max_staleness" in doc.stdout, doc.stdout
        c.stack("b", "start-replica")
        wait_code(PORT_B, "known@example.test", 250, 15)
        print("max_staleness: 451 while B's replica is away, decisions again once it is back")
        print("PASS")
        return 0
    finally:
        c.cleanup()


if __name__ == "__main__":
    sys.exit(main())
