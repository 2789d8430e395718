#!/usr/bin/env python3
"""Two mx-importer daemons (two "hosts": own hostname, own state dir and journal) on one drop
folder at once, while files keep arriving: every message lands exactly once per recipient,
and both importers did part of the work (the claim rename decides who imports a file)."""
import collections
import os
import re
import signal
import sys
import time

import mxenv

N = 3000


def main():
    a = mxenv.args()
    e1 = mxenv.Env(a.importer, a.mxctl, hostname="host-a", extra="batch_size = 8\n")
    e2 = mxenv.Env(a.importer, a.mxctl, hostname="host-b", extra="batch_size = 8\n", root=e1.root,
                   state=os.path.join(e1.root, "state-b"))
    ok = False
    try:
        e1.setup_demo()
        e2.setup_demo()  # same connector, same drop folder, in host b's own store
        log_a, log_b = os.path.join(e1.root, "a.log"), os.path.join(e1.root, "b.log")
        pa, pb = e1.start(log=log_a), e2.start(log=log_b)
        expected = collections.Counter()
        for i in range(N):
            tid = f"m{i:05d}"
            if i % 5 == 0:
                mxenv.write_eml(e1.drop, f"{tid}.eml", mxenv.message(
                    tid, receivers=["info@example.test", "sales@example.test"]))
                expected[(tid, "info@example.test")] += 1
                expected[(tid, "sales@example.test")] += 1
            else:
                rcpt = "info@example.test" if i % 2 else "sales@example.test"
                mxenv.write_maildir(e1.drop, f"{time.time():.6f}.{tid}.mx", mxenv.message(tid, rcpt))
                expected[(tid, rcpt)] += 1
        e1.wait_until(lambda: not e1.pending(), timeout=300, what="both importers to finish")
        assert pa.poll() is None and pb.poll() is None, "an importer died"
        for p in (pa, pb):
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
        seen = collections.Counter()
        for mb in ("info@example.test", "sales@example.test"):
            for f in e1.files(e1.maildir_new(mb)):
                seen[(mxenv.test_id_of(f), mb)] += 1
        problems = [f"{k}: {seen[k]} copies" for k in expected if seen[k] != 1]
        problems += [f"unexpected {k}" for k in seen if k not in expected]
        counts = []
        for lg in (log_a, log_b):
            counts.append(len(re.findall(r"outcome=imported", open(lg, errors="replace").read())))
        if min(counts) == 0:
            problems.append(f"one importer did nothing: {counts}")
        assert not problems, "\n".join(problems[:30])
        print(f"two importers: {len(expected)} deliveries exactly once (host-a {counts[0]}, host-b {counts[1]})")
        ok = True
    finally:
        e2.stop_all()
        e1.cleanup(keep=a.keep or not ok)
        if not ok:
            print(f"kept {e1.root}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
