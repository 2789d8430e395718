#!/usr/bin/env python3
"""`mxctl failed retry` in a cluster: a file with two receivers lands in ImportFailed after one
was imported (the other had no mailbox yet); the mailbox is added and the file retried on the
host that failed it, whose importer is down — so the OTHER host claims it from .retry/. The
imported receiver is recognised through the cluster journal (no second copy), the other one is
imported once. Then the same from the other side with both importers running. Last, PostgreSQL
stopped: a new file is claimed but not imported (nothing without a reservation) and is imported
once after PostgreSQL is back."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import mxtest  # noqa: E402
import test_import_nodes as tn  # noqa: E402

PORTS = (2643, 2644)


def message(test_id, receivers):
    return ("X-Sender: <sender@remote.example>\r\n"
            + "".join(f"X-Receiver: <{r}>\r\n" for r in receivers)
            + f"From: sender@remote.example\r\nSubject: retry {test_id}\r\n"
            f"Message-ID: <{test_id}@test>\r\nX-Test-Id: {test_id}\r\n\r\nbody of {test_id}\r\n"
            ).encode()


def drop_eml(c, name, data):
    tmp = os.path.join(c.drop, "." + name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(c.drop, name))


def failed_files(c):
    d = os.path.join(c.drop, "ImportFailed")
    if not os.path.isdir(d):
        return []
    return sorted(f for f in os.listdir(d) if not f.startswith(".") and not f.endswith(".json"))


def copies(c, mailbox, test_id):
    return sum(1 for f in c.mailbox_files(mailbox) if tn.header(f, "X-Test-Id") == test_id)


def round_trip(c, test_id, fail_on, claim_on, stop_failing_node):
    """One message to info@ and sales@ (sales@ missing): imported for info@, failed for sales@
    on `fail_on`; then sales@ added, `mxctl failed retry` on fail_on, imported by claim_on."""
    c.remove_mailbox("sales@example.test")
    claim_on.stop_importer()
    fail_on.start_importer()
    drop_eml(c, f"{test_id}.eml", message(test_id, ["info@example.test", "sales@example.test"]))
    tn.wait(lambda: failed_files(c) and c.backlog() == 0, f"{test_id} in ImportFailed", 60)
    assert copies(c, "info@example.test", test_id) == 1
    assert copies(c, "sales@example.test", test_id) == 0
    c.add_mailbox("sales@example.test")
    if stop_failing_node:
        fail_on.stop_importer()
    claim_on.start_importer()
    (fid,) = failed_files(c)
    fail_on.ctl("failed", "retry", fid)
    tn.wait(lambda: copies(c, "sales@example.test", test_id) == 1 and c.backlog() == 0,
            f"{test_id} retried", 60)
    time.sleep(1)  # anything late would show now
    assert not failed_files(c), failed_files(c)
    info, sales = copies(c, "info@example.test", test_id), copies(c, "sales@example.test", test_id)
    assert (info, sales) == (1, 1), f"{test_id}: info {info}, sales {sales} copies"
    return claim_on.name


def postgres_down(c, node):
    """No reservation, no import: the file waits in the node's work folder, nothing lost."""
    subprocess.run([f"{c.source}/scripts/pg-private", "stop", c.pg], check=True,
                   capture_output=True)
    drop_eml(c, "down.eml", message("down", ["info@example.test"]))
    tn.wait(lambda: node.work(), "the file claimed while PostgreSQL is down", 30)
    time.sleep(3)  # several batches and retries (retry_base_seconds = 2)
    assert copies(c, "info@example.test", "down") == 0, "imported without a reservation"
    assert node.work(), "the file left the work folder"
    subprocess.run([f"{c.source}/scripts/pg-private", "start", c.pg], check=True,
                   capture_output=True)
    tn.wait(lambda: copies(c, "info@example.test", "down") == 1 and c.backlog() == 0,
            "the import once PostgreSQL is back", 90)
    time.sleep(1)
    assert copies(c, "info@example.test", "down") == 1
    log = mxtest.log_text(node.log, "cluster journal not reachable")
    assert "cluster journal not reachable" in log, "no log line about the unreachable journal"


def scenario(c):
    c.setup_catalog()
    na, nb = c.nodes
    # Failed on A, A down, retried on A: B claims it from .retry/.
    round_trip(c, "r1", na, nb, stop_failing_node=True)
    log_b = mxtest.log_text(nb.log, "outcome=duplicate", "imported by node node-a")
    assert "outcome=duplicate" in log_b and "imported by node node-a" in log_b, \
        "node B did not recognise info@ as imported by node A"
    # Failed on B, retried on B while both run: imported once whoever claims it.
    na.stop_importer()
    round_trip(c, "r2", nb, na, stop_failing_node=False)
    rows = c.psql("SELECT state, count(*) FROM mxc.imports GROUP BY state ORDER BY state")
    assert rows == "imported|4", rows
    nb.stop_importer()
    postgres_down(c, na)
    return "cluster failed retry: imported once across hosts"


def main():
    a = tn.args()
    return mxtest.run_main(tn.skip_reason(a), lambda: tn.Cluster(a, PORTS), scenario)


if __name__ == "__main__":
    sys.exit(main())
