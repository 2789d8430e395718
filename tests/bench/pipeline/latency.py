#!/usr/bin/env python3
"""Latency from SMTP 250 to the mailbox, for scripts/bench-pipeline.

Usage: latency.py MAILLOG FIRST_LINE MAILDIR_NEW...
The 250 time of a message is the time of cleanup's "QID: message-id=" line in Postfix's log
(cleanup finishes the queue file, then smtpd answers 250); the mailbox time is the ctime of the
recipient's Maildir file (a hard link made by mx-importer updates ctime; a file written by
virtual(8) gets it when written). The file's own Received: line names the queue id. The
file's mtime is when virtual(8) wrote it (a hard link keeps it), so the latency splits into
250 -> written (Postfix's queue and virtual(8)) and written -> mailbox (mx-importer; ~0 for
Postfix alone). Prints "latency p50 X ms p99 Y ms (N copies); written p50 .. p99 ..; import
p50 .. p99 .."."""
import datetime
import os
import re
import sys

ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)([+-]\d\d:?\d\d|Z)?\s")
SYSLOG = re.compile(r"^([A-Z][a-z]{2}\s+\d+\s\d\d:\d\d:\d\d)\s")
CLEANUP = re.compile(r"postfix/cleanup\[\d+\]: ([0-9A-Za-z]+): message-id=")
RECEIVED_ID = re.compile(rb"\bid ([0-9A-Za-z]+)")


def stamp(line):
    m = ISO.match(line)
    if m:
        t = datetime.datetime.fromisoformat(m.group(1) + (m.group(2) or "+00:00").replace("Z", "+00:00"))
        return t.timestamp()
    m = SYSLOG.match(line)
    if m:
        year = datetime.datetime.now().year
        t = datetime.datetime.strptime(f"{year} {m.group(1)}", "%Y %b %d %H:%M:%S")
        return t.timestamp()
    return None


def main():
    log, first, dirs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    queued = {}
    with open(log, errors="replace") as f:
        for i, line in enumerate(f):
            if i < first:
                continue
            m = CLEANUP.search(line)
            if m:
                t = stamp(line)
                if t is not None:
                    queued[m.group(1)] = t
    lat, written, imported, written_at, in_at = [], [], [], [], []
    for d in dirs:
        if not os.path.isdir(d):
            continue
        for n in os.listdir(d):
            p = os.path.join(d, n)
            try:
                st = os.stat(p)
                with open(p, "rb") as f:
                    head = f.read(4096)
            except OSError:
                continue
            for m in RECEIVED_ID.finditer(head):
                qid = m.group(1).decode()
                if qid in queued:
                    lat.append(max(0.0, st.st_ctime - queued[qid]))
                    written.append(max(0.0, st.st_mtime - queued[qid]))
                    imported.append(max(0.0, st.st_ctime - st.st_mtime))
                    written_at.append(st.st_mtime)
                    in_at.append(st.st_ctime)
                    break
    if not lat:
        print("latency n/a")
        return
    first = min(queued.values())
    last_written = max(written_at) - first
    last_in = max(in_at) - first
    for v in (lat, written, imported):
        v.sort()

    def pick(v, q):
        return v[min(len(v) - 1, int(q * len(v)))] * 1000

    print(f"latency p50 {pick(lat, 0.5):.0f} ms p99 {pick(lat, 0.99):.0f} ms ({len(lat)} copies); "
          f"written p50 {pick(written, 0.5):.0f} p99 {pick(written, 0.99):.0f}; "
          f"import p50 {pick(imported, 0.5):.0f} p99 {pick(imported, 0.99):.0f}; "
          f"last written {last_written:.2f} s, last in mailbox {last_in:.2f} s after the first 250")


if __name__ == "__main__":
    main()
