#!/usr/bin/env python3
"""Writes N mailboxes for the bulk-import benchmark: a CSV for `mxctl mailbox import` and the
same addresses as a Postfix lookup-table source for `postmap lmdb:` (the peer)."""
import random
import sys

n = int(sys.argv[1])
csv_path, postfix_path = sys.argv[2], sys.argv[3]
rnd = random.Random(42)
domains = [f"d{i}.example.test" for i in range(20)]
with open(csv_path, "w") as csv, open(postfix_path, "w") as pf:
    csv.write("address,connector\n")
    for i in range(n):
        addr = f"user{i}.{rnd.randrange(10**6)}@{domains[i % len(domains)]}"
        csv.write(f"{addr},bench\n")
        pf.write(f"{addr} OK\n")
