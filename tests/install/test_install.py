#!/usr/bin/env python3
"""Install test: a fresh Debian 12 (debootstrap) booted with systemd-nspawn, Debian's stock
Postfix ("Internet Site"), the .deb built from this tree, the admin guide's commands as written;
then mail (known 250 and imported, unknown 550 5.1.1, inactive connector 450), the units
(active, restarted after SIGKILL, clean stop), `mxctl doctor` passing, and one breakage at a
time that doctor must fail on and name; `dpkg -r` (units stopped and not enabled, binaries
gone, configuration/state/mail kept, Postfix defers) and a reinstall after it (mail flows).
Exit 77 (skip) only when nspawn cannot boot here.

Usage: test_install.py --root SRC --build BUILD [--deb PATH]
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import Findings  # noqa: E402

FRAGMENTS = "/usr/share/doc/mx-connector/postfix-conf"

# One thing broken at a time: (name, break, restore, words doctor's output must contain).
BREAKS = [
    ("postfix-lmdb removed",
     "dpkg --remove --force-depends postfix-lmdb >/dev/null 2>&1",
     "apt-get install -qq postfix-lmdb >/dev/null && postfix reload", ["lmdb"]),
    ("mx-milter stopped", "systemctl stop mx-milter", "systemctl start mx-milter",
     ["mx-milter"]),
    ("smtpd chrooted", "postconf -F smtp/inet/chroot=y && postfix reload",
     "postconf -F smtp/inet/chroot=n && postfix reload", ["chroot"]),
    # The milter socket in a group Postfix is not in: smtpd cannot connect.
    ("milter socket group wrong", "chgrp root /run/mx-connector/milter.sock",
     "systemctl restart mx-milter", ["group"]),
    # trivial-rewrite (Debian: chroot=y) asks the socketmap for domains the lmdb: table lacks
    # (one added a moment ago, "."): inside /var/spool/postfix the socket does not exist and
    # the RCPT gets 451 4.3.0. Needs doctor's per-service map checks (chroot of every service
    # that uses our tables), not only smtpd's.
    ("trivial-rewrite chrooted", "postconf -F rewrite/unix/chroot=y && postfix reload",
     "postconf -F rewrite/unix/chroot=n && postfix reload", ["chroot"]),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--deb", help="use this .deb instead of running cpack in BUILD")
    ap.add_argument("--guide", help="run this admin guide instead of SRC/docs/admin-guide.md")
    a = ap.parse_args()
    t = common.Timer()
    deb = a.deb or common.build_dir_deb(os.path.abspath(a.build))
    t.lap("cpack")
    guide = a.guide or os.path.join(os.path.abspath(a.root), "docs/admin-guide.md")
    common.main_wrapper(lambda: run(guide, deb, t))


def run(guide, deb, t):
    f = Findings()
    m, (deb_in,) = common.start("fresh", [deb])
    t.lap("base tree, download, boot")
    try:
        common.stock_postfix(m)
        before = common.postfix_warnings(m)
        common.install_package(m, f, guide, deb_in)
        t.lap("stock Postfix, the .deb")
        common.wire_postfix(m, f, guide, FRAGMENTS)
        after = [w for w in common.postfix_warnings(m) if w not in before]
        f.check(not after, "no Postfix warnings caused by us (postconf)", "\n".join(after))
        t.lap("the guide's commands")
        mail(m, f)
        units(m, f)
        p = m.run("mxctl doctor", check=False)
        f.check(p.returncode == 0, "mxctl doctor passes", p.stdout + p.stderr)
        t.lap("mail, units, doctor")
        breaks(m, f)
        t.lap("breakages")
        remove_and_reinstall(m, f, deb_in)
        t.lap("dpkg -r, reinstall")
        stop(m, f)
        if f.items:
            print(common.journal(m))
    except BaseException:
        f.dump()
        print(common.journal(m))
        raise
    finally:
        m.cleanup()
    f.assert_none()
    print("install: OK")


def mail(m, f):
    """The guide left connector erp (example.com, example.org) with info@ and others."""
    n = common.maildir_count(m, "info@example.com")
    common.expect_smtp(m, f, "info@example.com", "250")
    try:
        m.wait_for(f"test $(ls /var/mail/mx-connector/example.com/info/new | wc -l) -gt {n}",
                   60, "the message in info@example.com's Maildir")
        f.check(True, "known recipient imported into its Maildir")
    except AssertionError as e:
        f.check(False, "known recipient imported into its Maildir", str(e) + common.journal(m))
    common.expect_smtp(m, f, "nobody@example.com", "550 5.1.1")
    # A domain added a moment ago (not yet in Postfix's lmdb: table copy): the first mail to it
    # is accepted too (Postfix falls back to mx-milter's socketmap).
    m.run("mxctl domain add erp example.net && mxctl mailbox add info@example.net "
          "--connector erp")
    common.expect_smtp(m, f, "info@example.net", "250")
    m.run("mxctl connector disable erp")
    common.expect_smtp(m, f, "info@example.com", "450")
    m.run("mxctl connector enable erp")
    common.expect_smtp(m, f, "info@example.com", "250")
    # Postfix met none of our tables or sockets failing while mail flowed.
    p = m.run("journalctl --no-pager -u postfix@- | grep -E 'warning: .*(mx-connector|lookup "
              "fail|table lookup problem)' | tail -5", check=False)
    f.check(not p.stdout.strip(), "no Postfix warnings about our tables or sockets", p.stdout)


def units(m, f):
    for unit in ("mx-milter", "mx-importer"):
        p = m.run(f"systemctl is-active {unit}; systemctl is-enabled {unit}", check=False)
        f.check(p.stdout.split() == ["active", "enabled"], f"{unit} active and enabled",
                p.stdout)
        pid = common.unit_pid(m, unit)
        m.run(f"systemctl kill -s KILL --kill-whom=main {unit}")
        try:
            m.wait_for(f"test \"$(systemctl is-active {unit})\" = active && "
                       f"test \"$(systemctl show -p MainPID --value {unit})\" != {pid} && "
                       f"test \"$(systemctl show -p MainPID --value {unit})\" != 0", 30)
            f.check(True, f"{unit} restarted by systemd after SIGKILL")
        except AssertionError as e:
            f.check(False, f"{unit} restarted by systemd after SIGKILL", str(e))
    common.expect_smtp(m, f, "sales@example.com", "250")


def breaks(m, f):
    for name, brk, restore, words in BREAKS:
        m.run(brk)
        p = m.run("mxctl doctor", check=False)
        out = p.stdout + p.stderr
        failed_lines = [ln for ln in out.splitlines() if ln.startswith("FAIL")]
        named = all(any(w.lower() in ln.lower() for ln in failed_lines) for w in words)
        f.check(p.returncode != 0 and named,
                f"{name}: doctor fails naming {', '.join(words)}", out[-2500:])
        for ln in failed_lines:
            print(f"      {ln}")
        m.run(restore)
        try:
            m.wait_for("mxctl doctor", 30, f"doctor passing again after restoring ({name})")
        except AssertionError as e:
            f.check(False, f"{name}: doctor passes again once restored", str(e)[-2500:])
    common.expect_smtp(m, f, "info@example.com", "250")


KEPT = ["/etc/mx-connector/mx-connector.toml", "/var/lib/mx-connector/store",
        "/var/lib/mx-connector/secrets", "/var/mail/mx-connector/example.com/info/new"]


def remove_and_reinstall(m, f, deb_in):
    """dpkg -r (no purge): units stopped and not enabled, binaries gone, configuration, state
    and mail kept, Postfix defers meanwhile; then the same .deb again and mail flows."""
    mails = common.maildir_count(m, "info@example.com")
    p = m.run("dpkg -r mx-connector", check=False, timeout=300)
    f.check(p.returncode == 0, "dpkg -r mx-connector", p.stdout[-1500:] + p.stderr[-1500:])
    common.maintainer_output(f, "dpkg -r", p)
    for unit in ("mx-milter", "mx-importer"):
        # The unit file is gone: is-enabled says "masked" (postrm masks it, as dh does) or
        # that there is no such unit file; never "enabled".
        active = m.run(f"systemctl is-active {unit}", check=False).stdout.strip()
        enabled = m.run(f"systemctl is-enabled {unit} 2>&1; ls -l /etc/systemd/system/{unit}"
                        f".service 2>&1", check=False).stdout.strip()
        f.check(active in ("inactive", "failed") and "enabled" not in enabled.split(),
                f"after dpkg -r: {unit} stopped ({active}) and not enabled", enabled)
        print(f"      after dpkg -r: systemctl is-enabled {unit}: {' '.join(enabled.split())}")
    p = m.run("pgrep -x 'mx-milter|mx-importer'", check=False)
    f.check(p.returncode == 1, "after dpkg -r: no mx-milter/mx-importer process", p.stdout)
    p = m.run("ls /usr/sbin/mx-milter /usr/sbin/mx-importer /usr/sbin/mxctl "
              "/usr/lib/systemd/system/mx-milter.service 2>/dev/null", check=False)
    f.check(not p.stdout.strip(), "after dpkg -r: binaries and unit files gone", p.stdout)
    p = m.run(" && ".join(f"test -e {k}" for k in KEPT), check=False)
    f.check(p.returncode == 0, "after dpkg -r: configuration, store, secrets and mail kept",
            m.run(f"ls -ld {' '.join(KEPT)} 2>&1", check=False).stdout)
    # (>=: the last message of the breakage step may have been imported meanwhile.)
    f.check(common.maildir_count(m, "info@example.com") >= mails,
            "after dpkg -r: no imported message removed")
    # Postfix still runs with our wiring: mail waits (milter_default_action = tempfail).
    rc, out = common.swaks(m, "info@example.com")
    deferred = re.search(r"^<\*\* +4\d\d .*", out, re.M)
    accepted = re.search(r"^<- +250 .*queued", out, re.M)
    f.check(rc != 0 and deferred and not accepted,
            f"while removed: Postfix defers mail ({deferred.group(0)[4:50] if deferred else '-'})",
            out[-1500:])
    p = m.run(f"cd {os.path.dirname(deb_in)} && apt-get install -qq ./{os.path.basename(deb_in)}",
              check=False, timeout=600)
    f.check(p.returncode == 0, "reinstall after dpkg -r", p.stdout[-2000:] + p.stderr[-2000:])
    common.maintainer_output(f, "reinstall", p)
    for unit in ("mx-milter", "mx-importer"):
        try:
            m.wait_for(f"test \"$(systemctl is-active {unit})\" = active && "
                       f"test \"$(systemctl is-enabled {unit})\" = enabled", 30)
            f.check(True, f"after reinstall: {unit} active and enabled")
        except AssertionError as e:
            f.check(False, f"after reinstall: {unit} active and enabled", str(e))
    common.expect_smtp(m, f, "info@example.com", "250")
    try:
        m.wait_for(f"test $(ls /var/mail/mx-connector/example.com/info/new | wc -l) -gt {mails}",
                   60, "the message in info@example.com's Maildir after the reinstall")
        f.check(True, "after reinstall: mail imported again (connectors and mailboxes kept)")
    except AssertionError as e:
        f.check(False, "after reinstall: mail imported again", str(e) + common.journal(m))
    p = m.run("mxctl doctor", check=False)
    f.check(p.returncode == 0, "after reinstall: mxctl doctor passes", p.stdout + p.stderr)


def stop(m, f):
    p = m.run("systemctl stop mx-importer mx-milter", check=False, timeout=120)
    f.check(p.returncode == 0, "systemctl stop mx-importer mx-milter", p.stderr)
    for unit in ("mx-milter", "mx-importer"):
        p = m.run(f"systemctl show -p ActiveState -p Result -p ExecMainStatus {unit}")
        props = dict(ln.split("=", 1) for ln in p.stdout.split())
        f.check(props["ActiveState"] == "inactive" and props["Result"] == "success",
                f"{unit} stopped cleanly", p.stdout)


if __name__ == "__main__":
    main()
