#!/usr/bin/env python3
"""README quick start, end to end: scripts/up from a clean state, a real message accepted and
imported into info's Maildir, one rejected with 550 5.1.1, scripts/up again (idempotent:
nothing breaks, nothing duplicated), counters and the Prometheus textfile, mxctl doctor
against the live stack, then scripts/down (twice: idempotent) leaves nothing running.

Usage: test_quickstart.py --root SRC --build BUILD [--port N]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opslib  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--port", type=int, default=2610)
    a = ap.parse_args()
    st = opslib.Stack(a.root, a.build, a.port)
    try:
        run(st)
    finally:
        st.cleanup()
    print("quickstart: OK")


def run(st):
    assert not opslib.port_open(st.port), f"port {st.port} is busy before the test"

    # 1. scripts/up from a clean state prints what to try next.
    p = st.up()
    out = p.stdout
    for want in (f"swaks --server 127.0.0.1:{st.port}", "--to info@example.test",
                 "--to nobody@example.test", "550 5.1.1", "scripts/down", "maillog"):
        assert want in out, f"scripts/up output lacks {want!r}:\n{out}"
    assert opslib.port_open(st.port)
    assert st.pid("mx-milter") and st.pid("mx-importer"), "daemons not running after up"

    # 2. The demo as promised.
    conns = st.mxctl_json("connector", "list")
    names = [c["name"] for c in conns] if isinstance(conns, list) else list(conns)
    assert names == ["demo"], f"connectors: {conns}"
    mbs = json.dumps(st.mxctl_json("mailbox", "list"))
    assert "info@example.test" in mbs and "sales@example.test" in mbs, mbs

    # 3. The swaks lines from the output: accepted + imported, rejected 550 5.1.1.
    tok = opslib.token()
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{st.port}", "--from",
                        "alice@sender.test", "--to", "info@example.test", "--header",
                        f"Subject: {tok}", "--body", f"body {tok}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"swaks to info failed ({r.returncode}):\n{r.stdout}{r.stderr}"
    assert "<-  250 2.0.0 Ok: queued" in r.stdout, r.stdout
    opslib.wait_for(lambda: opslib.files_with(st.maildir("info"), tok), 90,
                    "the accepted message in info's Maildir")
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{st.port}", "--from",
                        "alice@sender.test", "--to", "nobody@example.test"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0, "swaks to nobody@example.test was accepted"
    assert "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown" \
        in r.stdout, r.stdout

    # 4. Running it again changes nothing and breaks nothing.
    pids = (st.pid("mx-milter"), st.pid("mx-importer"))
    st.up()
    assert (st.pid("mx-milter"), st.pid("mx-importer")) == pids, "up restarted running daemons"
    conns = st.mxctl_json("connector", "list")
    assert len(conns) == 1, conns
    assert len(st.mxctl_json("mailbox", "list")) == 2
    tok2 = opslib.token()
    code, msg = opslib.send(st.port, ["sales@example.test"], tok2)
    assert code == 250, (code, msg)
    opslib.wait_for(lambda: opslib.files_with(st.maildir("sales"), tok2), 90,
                    "the second message in sales' Maildir")
    assert len(opslib.files_with(st.maildir("info"), tok)) == 1, "first message duplicated"

    # 5. A daemon that died is started again by up (the stack's own restart).
    os.kill(st.pid("mx-importer"), 9)
    opslib.wait_for(lambda: st.pid("mx-importer") is None, 10, "importer to die")
    st.up()
    assert st.pid("mx-importer"), "up did not restart the dead importer"

    # 6. Counters: JSON, process up/down, Prometheus textfile written atomically.
    stats = st.mxctl_json("stats")
    assert stats["processes"] == {"mx-milter": True, "mx-importer": True}, stats
    demo = stats["connectors"]["demo"]
    assert demo["accepted"] >= 2 and demo["rejected_unknown"] >= 1, demo
    opslib.wait_for(lambda: st.mxctl_json("stats")["connectors"]["demo"]["imported"] >= 2, 30,
                    "imported counter")
    prom = os.path.join(st.var, "metrics", "mx.prom")
    os.makedirs(os.path.dirname(prom), exist_ok=True)
    st.mxctl("stats", "--prometheus", "--textfile", prom)
    text = open(prom).read()
    for want in ('mxconnector_up{process="mx-milter"} 1', 'mxconnector_up{process="mx-importer"} 1',
                 'mxconnector_rejected_unknown_total{connector="demo"}',
                 'mxconnector_imported_total{connector="demo"}',
                 'mxconnector_oldest_file_age_seconds{connector="demo"}'):
        assert want in text, f"{want!r} missing from textfile:\n{text}"
    assert not [n for n in os.listdir(os.path.dirname(prom)) if n != "mx.prom"], \
        "temporary files left next to the textfile"

    # 7. doctor on the live stack: everything fine (exit 0), Postfix wiring recognised. Run as
    # scripts/up prints it for a newcomer in the source folder: relative paths (doctor runs
    # Postfix's tools from another folder; a relative --postfix-config once made every domain
    # look unknown to Postfix).
    pfconf = os.path.join(st.var, "postfix", "etc")
    doctor_line = [ln for ln in out.splitlines() if " doctor " in ln]
    assert doctor_line and "--postfix-config" in doctor_line[0], out
    d = subprocess.run([os.path.join(st.build, "admin", "mxctl"), "--config", "mx-connector.toml",
                        "doctor", "--postfix-config", "postfix/etc", "--json"], cwd=st.var,
                       capture_output=True, text=True, timeout=120)
    rep = json.loads(d.stdout)
    bad = [f for f in rep["findings"] if f["status"] == "fail"]
    assert d.returncode == 0 and rep["ok"] and not bad, json.dumps(rep, indent=1)
    checks = {f["check"] for f in rep["findings"] if f["status"] == "ok"}
    for c in ("store", "daemons", "postfix", "milter", "domains", "drop", "smtp"):
        assert c in checks, f"doctor did not confirm {c}: {json.dumps(rep, indent=1)}"

    # 7b. a broken wiring fails: Postfix no longer knows the connector's domain.
    vdomains = subprocess.run(["postconf", "-c", pfconf, "-h", "virtual_mailbox_domains"],
                              capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["postconf", "-c", pfconf, "-e", "virtual_mailbox_domains = other.test"],
                   check=True)
    try:
        d = st.mxctl("doctor", "--postfix-config", pfconf, "--json", check=False)
        rep = json.loads(d.stdout)
        bad = [f for f in rep["findings"] if f["status"] == "fail" and f["check"] == "domains"]
        assert d.returncode == 1 and not rep["ok"] and bad, json.dumps(rep, indent=1)
        assert "example.test" in bad[0]["message"], bad
    finally:
        subprocess.run(["postconf", "-c", pfconf, "-e", f"virtual_mailbox_domains = {vdomains}"],
                       check=True)

    # 8. down stops everything, twice in a row.
    st.down()
    assert not opslib.port_open(st.port), "SMTP still answers after down"
    assert st.pid("mx-milter") is None and st.pid("mx-importer") is None
    st.down()
    # Everything is stopped: the stack reports it and doctor says so with a non-zero exit.
    s = st.stack("status", check=False)
    assert s.returncode != 0, s.stdout
    d = st.mxctl("doctor", "--postfix-config", pfconf, "--skip", "smtp", check=False)
    assert d.returncode == 1 and "mx-milter is not running" in d.stdout, d.stdout

    # 9. And it comes back with the state kept (up after down).
    st.up()
    assert len(opslib.files_with(st.maildir("info"), tok)) == 1
    code, _ = opslib.send(st.port, ["nobody@example.test"], opslib.token())
    assert code == 550, code


if __name__ == "__main__":
    main()
