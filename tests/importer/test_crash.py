#!/usr/bin/env python3
"""Crash safety: thousands of messages (Maildir and X-Receiver style, known and unknown
recipients) while mx-importer is SIGKILLed at random moments, many rounds. Afterwards every
(message, recipient) is in exactly one place: the recipient's Maildir, or ImportFailed with a
reason file and one bounce job; nothing is left in new/, *.eml or the work folder."""
import collections
import os
import random
import signal
import sys
import time

import mxenv

WAVES = 12
PER_WAVE = 300
KILLS_PER_WAVE = 3


def main():
    a = mxenv.args()
    rng = random.Random(int(os.environ.get("MX_CRASH_SEED", "4711")))
    # small batches: many batch boundaries (and so many crash points) per second
    env = mxenv.Env(a.importer, a.mxctl, extra="batch_size = 16\n")
    ok = False
    try:
        env.setup_demo()
        expected = {}  # test id -> {"mailboxes": [...], "failed": [...]}
        n = 0
        kills = 0
        for wave in range(WAVES):
            for _ in range(PER_WAVE):
                n += 1
                tid = f"t{n:05d}"
                kind = rng.random()
                if kind < 0.70:
                    rcpt = rng.choice(["info@example.test", "sales@example.test"])
                    mxenv.write_maildir(env.drop, f"{time.time():.6f}.{tid}.mx", mxenv.message(tid, rcpt))
                    expected[tid] = {"mailboxes": [rcpt], "failed": []}
                elif kind < 0.90:
                    mxenv.write_eml(env.drop, f"{tid}.eml", mxenv.message(
                        tid, receivers=["info@example.test", "sales@example.test"]))
                    expected[tid] = {"mailboxes": ["info@example.test", "sales@example.test"], "failed": []}
                elif kind < 0.95:
                    mxenv.write_eml(env.drop, f"{tid}.eml", mxenv.message(
                        tid, receivers=["info@example.test", "nobody@example.test"]))
                    expected[tid] = {"mailboxes": ["info@example.test"], "failed": ["nobody@example.test"]}
                else:
                    mxenv.write_maildir(env.drop, f"{time.time():.6f}.{tid}.mx",
                                        mxenv.message(tid, "ghost@example.test"))
                    expected[tid] = {"mailboxes": [], "failed": ["ghost@example.test"]}
            for _ in range(KILLS_PER_WAVE):
                p = env.start()
                time.sleep(rng.uniform(0.02, 0.35))
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills += 1
        env.drain()  # the last run may finish in peace
        # --- verification -------------------------------------------------------------------
        left = env.pending()
        assert not left, f"files left in limbo: {left[:5]} ({len(left)})"
        seen = collections.Counter()
        for mb in ("info@example.test", "sales@example.test"):
            for f in env.files(env.maildir_new(mb)):
                seen[(mxenv.test_id_of(f), mb)] += 1
        failed_msgs, reasons = env.failed()
        assert len(reasons) == len(failed_msgs), "every ImportFailed message has a reason file"
        failed_seen = collections.Counter()
        for m, r in reasons.items():
            tid = mxenv.test_id_of(m)
            for rc in r["recipients"]:
                failed_seen[(tid, rc["recipient"])] += 1
                assert rc["status"] == "5.1.1", rc
        jobs = collections.Counter()
        for j in env.bounce_jobs():
            for rc in j["recipients"]:
                jobs[(j["message_id"].strip("<>").split("@")[0], rc["final_recipient"])] += 1
        errors = []
        for tid, e in expected.items():
            for mb in e["mailboxes"]:
                if seen[(tid, mb)] != 1:
                    errors.append(f"{tid} in {mb}: {seen[(tid, mb)]} copies")
            for r in e["failed"]:
                if failed_seen[(tid, r)] != 1:
                    errors.append(f"{tid} for {r}: {failed_seen[(tid, r)]} ImportFailed entries")
                if jobs[(tid, r)] != 1:
                    errors.append(f"{tid} for {r}: {jobs[(tid, r)]} bounce jobs")
        extra = sum(seen.values()) - sum(len(e["mailboxes"]) for e in expected.values())
        if extra:
            errors.append(f"{extra} unexpected mailbox files")
        assert not errors, "\n".join(errors[:30]) + f"\n({len(errors)} problems)"
        print(f"crash test: {n} messages, {kills} SIGKILLs, "
              f"{sum(seen.values())} mailbox deliveries, {len(failed_msgs)} ImportFailed: exactly once")
        ok = True
    finally:
        env.cleanup(keep=a.keep or not ok)
        if not ok:
            print(f"kept {env.root} for inspection", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
