#!/usr/bin/env python3
"""Kill in the middle of a delivery: mx-importer is SIGKILLed while a (slow) exec target is
delivering claimed files, whose pending journal records are written. The next start must take
them again at once — not after retry_base_seconds (60 s here): a retry record is written
only when a batch ends with a temporary outcome, never before a delivery. `mx-importer
--drain` ends when nothing is left to do now, so a file held for a retry would still be in
.work/ afterwards and fail this test; no wall-clock time is asserted.

Also shows the exec target's documented at-least-once: the command the killed importer had
started may finish, and the message is delivered again after the restart (the exec target
gets MX_IDEMPOTENCY_KEY to tell).

Usage: test_kill_delivery.py --root SRC --build BUILD   (Python 3 stdlib only)
"""
import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "importer"))
import mxenv  # noqa: E402

MESSAGES = 3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--build", required=True)
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    env = mxenv.Env(os.path.join(b, "importer", "mx-importer"), os.path.join(b, "admin", "mxctl"),
                    extra="retry_base_seconds = 60\n")
    ok = False
    try:
        env.setup_demo()
        out = os.path.join(env.root, "delivered")
        env.ctl("mailbox", "add", "slow@example.test", "--connector", "demo", "--target",
                f"exec:/bin/sh -c 'sleep 2; cat >> {out}'")
        for i in range(MESSAGES):
            mxenv.write_maildir(env.drop, f"{time.time():.6f}.k{i}.mx",
                                mxenv.message(f"k{i}", "slow@example.test"))
        p = env.start(log=os.path.join(env.root, "killed.log"))
        # Claimed, pending records written, the first command running: kill now.
        env.wait_until(lambda: all(os.path.basename(f).startswith("n,")
                                   for f in env.pending()) and env.pending(), 30,
                       "the files claimed into .work/")
        time.sleep(0.5)
        p.send_signal(signal.SIGKILL)
        p.wait()
        claimed = env.pending()
        assert len(claimed) == MESSAGES, f"expected {MESSAGES} claimed files, have {claimed}"
        env.drain(timeout=300)
        left = env.pending()
        log = open(os.path.join(env.root, "drain.log"), errors="replace").read()
        assert not left, f"files held after the restart (a retry record?): {left}\n{log[-2000:]}"
        text = open(out, errors="replace").read()
        for i in range(MESSAGES):
            assert f"<k{i}@test>" in text, f"k{i} never reached the exec target\n{log[-2000:]}"
        assert log.count("outcome=imported") == MESSAGES, log[-2000:]
        assert "outcome=deferred" not in log, log[-2000:]
        print(f"kill during delivery: {MESSAGES} claimed files taken again at once after the "
              f"restart and imported; the target got {text.count('Message-ID')} deliveries")
        ok = True
    finally:
        env.stop_all()
        env.cleanup(keep=not ok and bool(os.environ.get("MX_KEEP_TEST_DIR")))


if __name__ == "__main__":
    main()
