#!/usr/bin/env python3
"""Isolation benchmark: import latency of connector b's messages (plain Maildir) while connector
a's webhook target accepts connections and never answers, against b alone, side by side in the
same run (rounds alternate: solo, hang, solo, hang, ...). Messages are dropped at a steady rate
into a running mx-importer; latency = drop -> file visible in the mailbox's new/ folder.
Prints p50/p99 per mode and the ratio hang/solo (goal: p99 ratio <= 2).
Usage: bench_isolation.py --importer BIN --mxctl BIN [--rounds 3] [--messages 200]
"""
import argparse
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "importer"))
import mxenv  # noqa: E402
from test_isolation import HangServer, Two  # noqa: E402


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def one_round(a, hang, messages, interval):
    env = Two(a, targets="webhook_timeout_seconds = 10\n")
    try:
        env.mailbox("info@b.test")
        if hang:
            env.mailbox("info@a.test", f"webhook:http://127.0.0.1:{hang.port}/in")
        env.start(log=os.path.join(env.root, "importer.log"))
        time.sleep(1.0)  # started, connectors loaded
        sent, seen = {}, {}
        new = env.maildir_new("info@b.test")
        done = threading.Event()

        def watch():
            while not done.is_set():
                t = time.monotonic()
                for f in env.files(new):
                    tid = os.path.basename(f)
                    if tid not in seen:
                        seen[tid] = (t, f)
                time.sleep(0.002)

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        for i in range(messages):
            if hang and i % 10 == 0:
                env.put("info@a.test", 1)  # a steady trickle for the hanging target
            env.seq += 1
            tid = f"b{env.seq}"
            mxenv.write_maildir(env.drops["b"], f"{env.seq}.M{env.seq}.bench",
                                mxenv.message(tid, rcpt="info@b.test"))
            sent[tid] = time.monotonic()
            time.sleep(interval)
        deadline = time.monotonic() + 120
        while len(seen) < messages and time.monotonic() < deadline:
            time.sleep(0.05)
        done.set()
        w.join()
        lat = []
        for _, (t, f) in seen.items():
            tid = mxenv.test_id_of(f)
            if tid in sent:
                lat.append(t - sent[tid])
        return lat
    finally:
        env.cleanup()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--importer", required=True)
    p.add_argument("--mxctl", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--interval", type=float, default=0.01)
    o = p.parse_args()
    res = {"solo": [], "hang": []}
    for r in range(o.rounds):
        for mode in ("solo", "hang"):
            hang = HangServer() if mode == "hang" else None
            try:
                lat = one_round(o, hang, o.messages, o.interval)
            finally:
                if hang:
                    hang.stop()
            res[mode] += lat
            print(f"round {r + 1} {mode}: {len(lat)} messages, p50 {pct(lat, 50) * 1000:.1f} ms, "
                  f"p99 {pct(lat, 99) * 1000:.1f} ms", flush=True)
    s, h = res["solo"], res["hang"]
    print(f"solo: n={len(s)} p50 {pct(s, 50) * 1000:.1f} ms p99 {pct(s, 99) * 1000:.1f} ms "
          f"mean {statistics.mean(s) * 1000:.1f} ms")
    print(f"hang: n={len(h)} p50 {pct(h, 50) * 1000:.1f} ms p99 {pct(h, 99) * 1000:.1f} ms "
          f"mean {statistics.mean(h) * 1000:.1f} ms")
    print(f"ratio hang/solo: p50 {pct(h, 50) / pct(s, 50):.2f}, p99 {pct(h, 99) / pct(s, 99):.2f}")


if __name__ == "__main__":
    main()
