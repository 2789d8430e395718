#!/usr/bin/env python3
"""Crash safety: thousands of messages (Maildir and X-Receiver style, known and unknown
recipients) while mx-importer is SIGKILLed at random moments, many rounds (in every other round
its parse worker factory or one of its parse workers first, after which the daemon must go on,
and after each kill none of its helper processes may outlive it). Afterwards every
(message, recipient) is in exactly one place: the recipient's Maildir, or ImportFailed with a
reason file and one bounce job; nothing is left in new/, *.eml or the work folder.
First, a crash at one exact point (fault injection): between spooling a bounce job and moving
the failed file to ImportFailed, with the bounce sender running before the file is finished."""
import collections
import os
import random
import signal
import socket
import sys
import time

import mxenv

WAVES = 12
PER_WAVE = 300
KILLS_PER_WAVE = 3
BACKLOG = 5000
NEWER = 3000


def children(pid):
    """The running children of pid (all its threads'), by /proc."""
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(c) for c in f.read().split()]
    except FileNotFoundError:
        pass
    return out


def alive(pid):
    """Running (not a zombie waiting for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def crash_env(a):
    # Small batches: many batch boundaries (and so many crash points) per second. The bounce
    # sender handles a job at once (no coalescing window) and the SMTP port is closed: every
    # job is deferred or, past the per-sender rate limit, suppressed (finished, in done/) —
    # so a job handled while its file still waits in .work, and spooled again when that file
    # is finished, shows as two.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    env = mxenv.Env(a.importer, a.mxctl, extra=(
        "batch_size = 16\n[bounce]\ncoalesce_seconds = 0\n"
        f"[smtp]\nhost = \"127.0.0.1\"\nport = {closed_port}\ntimeout_seconds = 2\n"))
    return env


def main():
    a = mxenv.args()
    rng = random.Random(int(os.environ.get("MX_CRASH_SEED", "4711")))
    env = crash_env(a)
    ok = False
    try:
        env.setup_demo()
        expected = {}  # test id -> {"mailboxes": [...], "failed": [...]}
        n = 0
        kills = 0
        helper_kills = 0
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
            for k in range(KILLS_PER_WAVE):
                p = env.start(log=os.path.join(env.root, "importer.log"))
                time.sleep(rng.uniform(0.02, 0.35))
                helpers = children(p.pid)  # the parse worker factory and the parse workers
                if k == 0 and helpers and wave % 2 == 0:
                    # First the factory or a worker, mid-batch: the daemon goes on (a worker
                    # killed is its file's crash, tried again; a factory killed is started again).
                    victim = rng.choice(helpers)
                    os.kill(victim, signal.SIGKILL)
                    helper_kills += 1
                    time.sleep(rng.uniform(0.05, 0.3))
                    if p.poll() is not None:
                        with open(os.path.join(env.root, "importer.log"), errors="replace") as f:
                            tail = f.read()[-3000:]
                        raise AssertionError(f"mx-importer ended (status {p.returncode}) when its "
                                             f"helper process {victim} was killed:\n{tail}")
                    helpers = children(p.pid)
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills += 1
                # Nothing of the killed daemon lives on: the factory sees EOF on its socket, the
                # workers have a parent-death signal.
                deadline = time.monotonic() + 5
                while [h for h in helpers if alive(h)] and time.monotonic() < deadline:
                    time.sleep(0.02)
                left = [h for h in helpers if alive(h)]
                assert not left, f"processes outlived the killed mx-importer: {left}"
        # A backlog for the last run, which finishes in peace: it lasts longer than the bounce
        # sender's first tick (2 s), and the files the last kill left in .work wait behind the
        # batches claimed ahead from new/ — a job spooled for one of them before that kill is
        # handled by the sender before its file is finished.
        for _ in range(BACKLOG):
            n += 1
            tid = f"t{n:05d}"
            rcpt = rng.choice(["info@example.test", "sales@example.test"])
            mxenv.write_maildir(env.drop, f"{time.time():.6f}.{tid}.mx", mxenv.message(tid, rcpt),
                                sync=False)
            expected[tid] = {"mailboxes": [rcpt], "failed": []}
        env.drain()
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
        assert helper_kills > 0, "no factory or worker was killed: the test did not test that"
        print(f"crash test: {n} messages, {kills} SIGKILLs of mx-importer, {helper_kills} of its "
              f"factory or a worker, "
              f"{sum(seen.values())} mailbox deliveries, {len(failed_msgs)} ImportFailed: exactly once")
        ok = True
    finally:
        env.cleanup(keep=a.keep, ok=ok)
    return 0 if ok else 1


def killed_between_spool_and_move(a):
    """The importer is killed (fault injection, at that exact point) after it spooled a bounce
    job for a failed file and before it moved the file to ImportFailed. Then the next run's
    bounce sender meets the job while the file still waits in .work (older leftovers go first,
    past the sender's first tick). The sender must wait for the file (the DSN quotes its
    headers) and the file, once finished, must not spool a second job: one failure, one
    bounce."""
    env = crash_env(a)
    ok = False
    try:
        env.setup_demo()
        # null sender: the sender suppresses its bounce at once (a finished job, in done/)
        mxenv.write_maildir(env.drop, "1700000000.mx-test-crash-failed-move.mx",
                            mxenv.message("ghost", "ghost@example.test", sender=""))
        p = env.start("--drain", env={"MX_IMPORTER_FAULT_INJECTION": "1"},
                      log=os.path.join(env.root, "killed.log"))
        rc = p.wait(timeout=120)
        assert rc == -signal.SIGKILL, f"the fault injection did not kill the importer (rc {rc})"
        work = os.path.join(env.drop, ".work", env.hostname)
        assert [n for n in os.listdir(work) if "mx-test-crash" in n], "the file is in .work"
        assert len(env.bounce_jobs()) == 1, "its bounce job is spooled"
        # Older leftovers of the same crash (as a long outage of a target leaves them): the
        # next run takes them oldest first, a batch of 16 at a time, the failed file last.
        for i in range(BACKLOG):
            with open(os.path.join(work, f"n,1600000000.{i:05d}.old"), "wb") as f:
                f.write(mxenv.message(f"old{i:05d}", "info@example.test"))
        # And new mail arriving meanwhile: the leftovers are older and go before it (new files
        # claimed ahead must not keep them waiting until the backlog is gone).
        for i in range(NEWER):
            mxenv.write_maildir(env.drop, f"{time.time():.6f}.b{i:05d}.mx",
                                mxenv.message(f"b{i:05d}", "sales@example.test"), sync=False)
        env.drain()
        log = open(os.path.join(env.root, "drain.log"), errors="replace").read().splitlines()
        done_at = {}
        for i, line in enumerate(log):
            if " outcome=" in line:
                rcpt = line.split(" rcpt=<", 1)[1].split(">", 1)[0]
                done_at[rcpt] = i  # the last line of each recipient
        assert done_at.get("ghost@example.test", 1 << 60) < done_at.get("sales@example.test", -1), \
            "the crash leftover was finished before the newer backlog"
        assert not env.pending(), f"files left: {env.pending()[:5]}"
        jobs = env.bounce_jobs()
        assert len(jobs) == 1, f"{len(jobs)} bounce jobs for one failure: {[j['id'] for j in jobs]}"
        failed_msgs, reasons = env.failed()
        assert len(failed_msgs) == 1 and len(reasons) == 1, "one ImportFailed entry"
        assert len(env.files(env.maildir_new("info@example.test"))) == BACKLOG
        assert len(env.files(env.maildir_new("sales@example.test"))) == NEWER
        print("killed between spool and move: one ImportFailed entry, one bounce job")
        ok = True
    finally:
        env.cleanup(keep=a.keep, ok=ok)
    return 0 if ok else 1


if __name__ == "__main__":
    rc = killed_between_spool_and_move(mxenv.args())
    sys.exit(rc or main())
