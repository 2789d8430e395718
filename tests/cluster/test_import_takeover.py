#!/usr/bin/env python3
"""Two cluster nodes (private Postfix + importer each, one PostgreSQL) on ONE shared drop folder:
2,000 messages through both Postfixes (smtp-source); node A's importer is SIGKILLed while it holds
claimed files and not restarted; node B takes A's .work/node-a/ files over once A's lease ended.
Every (message, recipient) lands exactly once (Maildir files counted, contents unique). Then A
restarts with copies of the files it held put back into its work folder (a host that comes back
with its claims still on disk): it imports nothing twice."""
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import mxtest  # noqa: E402
import test_import_nodes as tn  # noqa: E402

PORTS = (2641, 2642)
PER_NODE = 1000  # messages through each node's Postfix: 2,000 in all
MAILBOXES = ("info@example.test", "sales@example.test")


def send(node, rcpt, n, errors):
    # -s sessions in parallel, -m messages, -c quiet counter; each message gets its own queue id
    # and Message-Id from Postfix, so no two drop files have the same bytes.
    r = subprocess.run(["smtp-source", "-s", "5", "-m", str(n), "-f", "sender@remote.example",
                        "-t", rcpt, "-S", f"load via {node.name}", f"127.0.0.1:{node.port}"],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        errors.append(f"smtp-source via {node.name}: {r.returncode} {r.stderr[-500:]}")


def kill_while_holding(c, a, minimum_imported=100):
    """SIGKILL node A's importer once it has imported some and holds claimed files with
    reservations in PostgreSQL (pending rows): frozen first (SIGSTOP) to look, so the kill hits
    exactly that state; thawed again when it is not there yet."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if a.imported_lines() >= minimum_imported and a.work():
            a.proc.send_signal(signal.SIGSTOP)
            if a.work() and c.pending_of(a.name) > 0:
                a.proc.send_signal(signal.SIGKILL)
                a.proc.wait()
                a.proc = None
                return
            a.proc.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError("node A never held reserved, claimed files after importing")


def check_once(c, mailboxes, expected):
    problems = []
    for mb in mailboxes:
        files = c.mailbox_files(mb)
        digests = [tn.digest(f) for f in files]
        ids = [tn.header(f, "Message-Id") for f in files]
        if len(files) != expected:
            problems.append(f"{mb}: {len(files)} files, expected {expected}")
        if len(set(digests)) != len(digests):
            problems.append(f"{mb}: {len(digests) - len(set(digests))} duplicate contents")
        if len(set(ids)) != len(ids) or None in ids:
            problems.append(f"{mb}: duplicate or missing Message-Ids")
    return problems


def scenario(c):
    c.setup_catalog(MAILBOXES)
    na, nb = c.nodes
    na.start_importer()
    nb.start_importer()
    errors = []
    senders = [threading.Thread(target=send, args=(n, mb, PER_NODE, errors))
               for n, mb in zip(c.nodes, MAILBOXES)]
    for s in senders:
        s.start()
    kill_while_holding(c, na)
    held = na.work()
    # What A held, kept aside: A comes back with these on disk later.
    aside = os.path.join(c.root, "held-by-a")
    os.makedirs(aside)
    for f in held:
        os.link(os.path.join(c.drop, ".work", na.name, f), os.path.join(aside, f))
    pending_a = c.pending_of(na.name)
    for s in senders:
        s.join()
    assert not errors, errors
    # Both Postfix queues empty too (looked at first: a message is in the drop folder before it
    # leaves the queue): the drop folder alone can be empty for a moment while a Postfix still
    # holds the last message (the CI check once counted 999 of 1,000 at such a moment).
    tn.wait(lambda: not any(n.queued() for n in c.nodes) and c.backlog() == 0 and not na.work(),
            "both Postfixes and node B to finish everything (A's claims after its lease)",
            timeout=240)
    assert nb.proc.poll() is None, "node B's importer died"
    problems = check_once(c, MAILBOXES, PER_NODE)
    log_b = mxtest.log_text(nb.log, *(["from node node-a"] if held else []))
    took = log_b.count("from node node-a (lease ended)")
    recovered = log_b.count("from node node-a: it was delivered")
    redelivered = log_b.count("from node node-a: delivering")
    if held and took == 0:
        problems.append("node B never took over node A's files")
    assert not problems, "\n".join(problems)
    imported_a = na.imported_lines()

    # A comes back with the files it held still on disk: nothing is imported twice.
    # A renews its lease first (B then no longer sees it as gone), then finds them.
    na.start_importer()
    time.sleep(tn.LEASE / 3 + 1)
    work_a = os.path.join(c.drop, ".work", na.name)
    for f in held:
        os.link(os.path.join(aside, f), os.path.join(work_a, f))
    tn.wait(lambda: not na.work(), "node A to finish its old claims", timeout=60)
    time.sleep(1)
    problems = check_once(c, MAILBOXES, PER_NODE)
    assert not problems, "after A came back:\n" + "\n".join(problems)
    rows = c.psql("SELECT state, count(*) FROM mxc.imports GROUP BY state ORDER BY state")
    assert rows == f"imported|{2 * PER_NODE}", rows
    return (f"cluster takeover: {2 * PER_NODE} deliveries exactly once; node A imported "
            f"{imported_a} before SIGKILL holding {len(held)} claimed files "
            f"({pending_a} pending rows); node B took over {took} files ({recovered} deliveries "
            f"found made by A, {redelivered} made anew); A back with {len(held)} "
            f"old claims imported none twice")


def main():
    a = tn.args()
    return mxtest.run_main(
        tn.skip_reason(a),
        lambda: tn.Cluster(a, PORTS, extra_importer="durability = \"fsync\"\n"), scenario)


if __name__ == "__main__":
    sys.exit(main())
