#!/usr/bin/env python3
"""mxctl run as root with `user` set, against state folders the daemon account owns (as in
production): what that account plants there (symlinks to root's files) must never make root
change a file it does not own, and whatever mxctl creates (store, secrets, Maildirs of
target-test) must belong to the daemon account; target commands run as that account.

Needs root; creates the system account `mxtest` when missing. Skipped otherwise."""
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

MXCTL = sys.argv.pop(1) if len(sys.argv) > 1 else os.environ.get("MXCTL", "mxctl")
ACCOUNT = "mxtest"


def account():
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(ACCOUNT)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", ACCOUNT], capture_output=True)
    try:
        return pwd.getpwnam(ACCOUNT)
    except KeyError:
        return None


PW = account()


@unittest.skipIf(PW is None, "needs root and the account mxtest (useradd)")
class RootMxctl(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mxctl-root-")
        os.chmod(self.dir, 0o755)  # root-owned, like /var/lib
        self.state = os.path.join(self.dir, "state")
        self.mail = os.path.join(self.dir, "mail")
        self.cfg = os.path.join(self.dir, "mx-connector.toml")
        with open(self.cfg, "w") as f:
            f.write(f'state_dir = "{self.state}"\nrun_dir = "{self.dir}/run"\n'
                    f'mail_root = "{self.mail}"\nhostname = "mx.test"\nuser = "{ACCOUNT}"\n')
        # mail_root and the drop folder belong to the daemon account (tmpfiles.d does this).
        for d in (self.mail, os.path.join(self.dir, "drop")):
            os.mkdir(d, 0o750)
            os.chown(d, PW.pw_uid, PW.pw_gid)
        self.victims = []

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        for v in self.victims:
            if os.path.isdir(v):
                shutil.rmtree(v, ignore_errors=True)
            elif os.path.exists(v):
                os.unlink(v)

    def mxctl(self, *args, stdin=None, ok=True):
        p = subprocess.run([MXCTL, "--config", self.cfg, *args], capture_output=True, text=True,
                           input=stdin)
        if ok:
            self.assertEqual(p.returncode, 0, f"{args}: {p.stderr}")
        return p

    def victim(self, directory=False):
        if directory:
            v = tempfile.mkdtemp(prefix="mx-victim-dir-")
        else:
            fd, v = tempfile.mkstemp(prefix="mx-victim-")
            os.write(fd, b"secret\n")
            os.close(fd)
        os.chmod(v, 0o700 if directory else 0o600)
        self.victims.append(v)
        return v

    def assert_untouched(self, v, mode):
        st = os.lstat(v)
        self.assertEqual((st.st_uid, st.st_gid), (0, 0), f"{v} changed owner")
        self.assertEqual(stat.S_IMODE(st.st_mode), mode, f"{v} changed mode")

    def assert_daemon_owned(self, path):
        st = os.lstat(path)
        self.assertEqual(st.st_uid, PW.pw_uid, f"{path} is not owned by {ACCOUNT}")

    def demo(self):
        self.mxctl("connector", "add", "demo", "--drop-folder", os.path.join(self.dir, "drop"),
                   "--domain", "example.test")
        self.mxctl("mailbox", "add", "info@example.test", "--connector", "demo")

    def test_symlinks_planted_in_state_are_never_followed(self):
        self.demo()
        self.mxctl("mailbox", "set", "info@example.test", "target.secret=-", stdin="s3cret\n")
        # What the daemon account can do in its own folders:
        v_store, v_secrets, v_state = self.victim(), self.victim(), self.victim()
        v_dir = self.victim(directory=True)
        os.symlink(v_store, os.path.join(self.state, "store", "x"))
        os.symlink(v_secrets, os.path.join(self.state, "secrets", "y"))
        os.symlink(v_state, os.path.join(self.state, "oauth"))
        os.symlink(v_dir, os.path.join(self.state, "journal"))
        for verb in (["connector", "list"], ["mailbox", "list"], ["export", "--with-secrets"],
                     ["mailbox", "add", "sales@example.test", "--connector", "demo"]):
            self.mxctl(*verb)
        for v in (v_store, v_secrets, v_state):
            self.assert_untouched(v, 0o600)
        self.assert_untouched(v_dir, 0o700)
        with open(v_store) as f:
            self.assertEqual(f.read(), "secret\n")

    def test_stats_reads_the_journal_as_the_daemon_account(self):
        # stats keeps root (its --textfile goes to root's collector folder) but reads the
        # journal's size as the daemon account: LMDB opens lock.mdb read-write by path, creating
        # and truncating it, even for a read-only look.
        self.demo()
        journal = os.path.join(self.state, "journal")
        os.mkdir(journal, 0o750)
        os.chown(journal, PW.pw_uid, PW.pw_gid)
        with open(os.path.join(journal, "data.mdb"), "wb"):
            pass
        os.chown(os.path.join(journal, "data.mdb"), PW.pw_uid, PW.pw_gid)
        v = self.victim()
        os.symlink(v, os.path.join(journal, "lock.mdb"))
        for verb in (["stats"], ["stats", "--json"], ["stats", "--prometheus"]):
            self.mxctl(*verb)
        self.assert_untouched(v, 0o600)
        with open(v) as f:
            self.assertEqual(f.read(), "secret\n")

    def test_state_is_created_as_the_daemon_account(self):
        self.assertFalse(os.path.exists(self.state))
        self.demo()
        self.mxctl("mailbox", "set", "info@example.test", "target.secret=-", stdin="s3cret\n")
        self.assert_daemon_owned(self.state)
        self.assertEqual(stat.S_IMODE(os.stat(self.state).st_mode), 0o750)
        for sub in ("store", "store/data.mdb", "store/lock.mdb", "secrets", "secrets/data.mdb"):
            self.assert_daemon_owned(os.path.join(self.state, sub))
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.state, "secrets")).st_mode), 0o700)

    def test_unknown_user_is_a_clear_error(self):
        with open(self.cfg) as f:
            text = f.read().replace(f'user = "{ACCOUNT}"', 'user = "no-such-account-x"')
        with open(self.cfg, "w") as f:
            f.write(text)
        p = self.mxctl("connector", "list", ok=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("no-such-account-x", p.stderr)
        self.assertFalse(os.path.exists(self.state))

    def test_target_test_writes_maildir_as_the_daemon_account(self):
        self.demo()
        p = self.mxctl("target-test", "info@example.test")
        self.assertIn("imported", p.stdout)
        box = os.path.join(self.mail, "example.test", "info")
        for sub in ("", "new", "cur", "tmp"):
            self.assert_daemon_owned(os.path.join(box, sub))
        files = os.listdir(os.path.join(box, "new"))
        self.assertEqual(len(files), 1)
        self.assert_daemon_owned(os.path.join(box, "new", files[0]))

    def test_target_test_runs_exec_targets_as_the_daemon_account(self):
        self.demo()
        out = os.path.join(self.dir, "out")
        os.mkdir(out, 0o755)
        os.chown(out, PW.pw_uid, PW.pw_gid)
        script = os.path.join(self.dir, "whoami.sh")
        with open(script, "w") as f:
            f.write(f"#!/bin/sh\ncat >/dev/null\n/usr/bin/id -u > {out}/uid\n")
        os.chmod(script, 0o755)
        self.mxctl("mailbox", "set", "info@example.test", f"target=exec:{script}")
        self.mxctl("target-test", "info@example.test")
        with open(os.path.join(out, "uid")) as f:
            self.assertEqual(int(f.read()), PW.pw_uid)


if __name__ == "__main__":
    unittest.main(verbosity=2)
