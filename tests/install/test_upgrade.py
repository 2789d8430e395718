#!/usr/bin/env python3
"""Upgrade test: on a fresh Debian 12 (booted with systemd-nspawn) with Debian's Postfix, the
.deb of an earlier commit (old_deb.base_ref: MX_UPGRADE_BASE, the newest tag, else HEAD~1) is
installed, wired with *its* admin guide and used: a connector, mailboxes, an SMTP secret, mail
imported and mail in ImportFailed. Then this tree's .deb is installed over it: the store
(secrets included), ImportFailed, the mailboxes and the configuration are kept, both units run
again with new processes, the store's schema version is the new one, and mail still flows.
Finally `apt purge` removes what the package created and keeps the mail.
Exit 77 (skip) only when nspawn cannot boot here.

Usage: test_upgrade.py --root SRC --build BUILD [--deb NEW] [--old-deb OLD --old-guide MD]
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import old_deb  # noqa: E402
from common import Findings  # noqa: E402

FRAGMENTS = "/usr/share/doc/mx-connector/postfix-conf"
DROP = "/var/spool/mx-connector/erp"
SECRET = "s3cret-upgrade-pw"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--deb", help="this tree's .deb (default: cpack in BUILD)")
    ap.add_argument("--old-deb", help="the .deb to upgrade from (default: built, cached)")
    ap.add_argument("--old-guide", help="the admin guide that goes with --old-deb")
    a = ap.parse_args()
    root, build = os.path.abspath(a.root), os.path.abspath(a.build)
    t = common.Timer()
    new = a.deb or common.build_dir_deb(build)
    t.lap("cpack")
    if a.old_deb:
        old, guide, old_schema = a.old_deb, a.old_guide, None
    else:
        old, guide, old_schema = old_deb.old_deb(root, build, old_deb.base_ref(root))
    t.lap("the old .deb")
    new_schema = old_deb.schema_version(open(os.path.join(root,
                                                          "shared/global/store.hpp")).read())
    print(f"install: upgrading {os.path.basename(old)} (store schema {old_schema}) to "
          f"{os.path.basename(new)} (store schema {new_schema})", flush=True)
    common.main_wrapper(lambda: run(old, guide, new, new_schema, t))


def run(old, guide, new, new_schema, t):
    f = Findings()
    m, (old_in, new_in) = common.start("upgrade", [old, new])
    t.lap("base tree, download, boot")
    try:
        common.stock_postfix(m)
        common.install_package(m, f, guide, old_in)
        wire_old(m, f, guide)
        use_old(m, f)
        t.lap("the old package installed and used")
        before = snapshot(m)
        pids = {u: common.unit_pid(m, u) for u in ("mx-milter", "mx-importer")}
        common.install_package(m, f, guide, new_in)
        upgraded(m, f, before, pids, new_schema)
        t.lap("upgrade")
        purge(m, f)
        t.lap("purge")
        if f.items:
            print(common.journal(m))
    except BaseException:
        f.dump()
        print(common.journal(m))
        raise
    finally:
        m.cleanup()
    f.assert_none()
    print("upgrade: OK")


def wire_old(m, f, guide):
    """Section 3 of the old guide (its Postfix wiring), nothing else of it."""
    import guide as g
    todo, marked = g.steps(guide)
    sec4 = common.first_section(guide, 4)
    for line, mode, text, why in todo:
        if line < sec4 and line > common.first_section(guide, 3):
            f.extend(g.run_step(m, f"old admin-guide.md:{line} ({why})", mode, text))
    if not marked:
        common.master_by_hand(m, f, FRAGMENTS)


def send_until(m, f, to, code, timeout=40):
    """The upgrade test is about what survives: wait out a Postfix table restart."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rc, out = common.swaks(m, to)
        if f" {code}" in out and (rc == 0) == code.startswith("2"):
            return True
        time.sleep(2)
    return f.check(False, f"RCPT {to}: {code} within {timeout} s", out[-1500:])


def use_old(m, f):
    m.run(f"""
        install -d -o mxconnector -g mxconnector -m 0750 {DROP}
        mxctl connector add erp --drop-folder {DROP} --domain example.com
        mxctl mailbox add info@example.com --connector erp
        mxctl mailbox add sales@example.com --connector erp
        mxctl mailbox add gone@example.com --connector erp
        # First-try delivery is install_fresh's business; with an older guide's wiring (Debian's
        # chrooted trivial-rewrite cannot reach the socketmap) Postfix must re-read the table.
        sleep 1; postfix reload""")
    m.run("mxctl connector set erp smtp.host=127.0.0.1 smtp.port=2599 smtp.security=none "
          "smtp.auth=generic smtp.username=mx@example.com smtp.secret=-", stdin=SECRET + "\n")
    send_until(m, f, "info@example.com", "250")
    m.wait_for("test -n \"$(ls /var/mail/mx-connector/example.com/info/new)\"", 60,
               "info@'s message imported by the old package")
    # Accepted, then its mailbox removed before the import: ImportFailed (and a bounce that
    # waits for the unreachable SMTP server).
    m.run("systemctl stop mx-importer")
    send_until(m, f, "gone@example.com", "250")
    m.wait_for(f"test -n \"$(find {DROP}/new -type f)\"", 60,
               "the message for gone@ in the drop folder")
    m.run("mxctl mailbox remove gone@example.com && systemctl start mx-importer")
    m.wait_for(f"test -n \"$(find {DROP}/ImportFailed -type f ! -name '*.json')\"", 60,
               "gone@'s message in ImportFailed")


def snapshot(m):
    """What must survive the upgrade, as text."""
    return {
        "store (with secrets)": json.dumps(json.loads(
            m.run("mxctl export --with-secrets").stdout), sort_keys=True, indent=1),
        "ImportFailed": m.run(f"cd {DROP}/ImportFailed && find . -type f | sort").stdout,
        "mailboxes": m.run("cd /var/mail/mx-connector && find . -type f | sort").stdout,
        "configuration": m.run("md5sum /etc/mx-connector/mx-connector.toml").stdout,
        "account": m.run("id mxconnector").stdout,
    }


def upgraded(m, f, before, pids, new_schema):
    p = m.run("dpkg-query -W -f '${Version}' mx-connector")
    f.check("upgradebase" not in p.stdout, f"the new package is installed ({p.stdout})")
    after = snapshot(m)
    for k in before:
        f.check(before[k] == after[k], f"upgrade kept the {k}",
                f"before:\n{before[k][-1500:]}\nafter:\n{after[k][-1500:]}")
    f.check(SECRET in after["store (with secrets)"], "the SMTP secret is still readable")
    for unit, pid in pids.items():
        p = m.run(f"systemctl is-active {unit}; systemctl show -p MainPID --value {unit}",
                  check=False)
        state, new_pid = (p.stdout.split() + ["", ""])[:2]
        f.check(state == "active" and new_pid not in (str(pid), "0"),
                f"{unit} restarted by the upgrade (pid {pid} -> {new_pid}, {state})")
    p = m.run("mdb_dump -p -s meta /var/lib/mx-connector/store", check=False)
    lines = [ln.strip() for ln in p.stdout.splitlines()]
    version = lines[lines.index("schema_version") + 1] if "schema_version" in lines else None
    f.check(version == str(new_schema), f"store schema version {version} (want {new_schema})",
            p.stdout[-800:] + p.stderr)
    m.run("mxctl mailbox add new@example.com --connector erp")
    if send_until(m, f, "new@example.com", "250"):
        try:
            m.wait_for("test -n \"$(ls /var/mail/mx-connector/example.com/new/new)\"", 60)
            f.check(True, "mail imported after the upgrade")
        except AssertionError as e:
            f.check(False, "mail imported after the upgrade", str(e))


def purge(m, f):
    mail = m.run("cd /var/mail/mx-connector && find . -type f | sort").stdout
    failed = m.run(f"cd {DROP}/ImportFailed && find . -type f | sort").stdout
    p = m.run("apt purge mx-connector", check=False, timeout=300)
    f.check(p.returncode == 0, "apt purge mx-connector", p.stdout[-1500:] + p.stderr[-1500:])
    common.maintainer_output(f, "apt purge mx-connector", p)
    gone = ["/var/lib/mx-connector", "/etc/mx-connector", "/run/mx-connector",
            "/usr/sbin/mx-milter", "/usr/lib/systemd/system/mx-milter.service",
            "/etc/systemd/system/multi-user.target.wants/mx-milter.service",
            "/etc/systemd/system/multi-user.target.wants/mx-importer.service",
            # The mask of the remove step is lifted again by the purge.
            "/etc/systemd/system/mx-milter.service", "/etc/systemd/system/mx-importer.service"]
    for path in gone:
        p = m.run(f"test ! -e {path} && test ! -L {path}", check=False)
        f.check(p.returncode == 0, f"purge removed {path}")
    for unit in ("mx-milter", "mx-importer"):
        p = m.run(f"systemctl is-active {unit}", check=False)
        f.check(p.stdout.strip() in ("inactive", "unknown"), f"{unit} not running after purge",
                p.stdout)
    f.check(m.run("id mxconnector", check=False).returncode == 0,
            "the mxconnector account stays (owner of the mail kept)")
    f.check(m.run("cd /var/mail/mx-connector && find . -type f | sort",
                  check=False).stdout == mail, "purge kept the mailboxes")
    f.check(m.run(f"cd {DROP}/ImportFailed && find . -type f | sort",
                  check=False).stdout == failed, "purge kept the drop folder and ImportFailed")


if __name__ == "__main__":
    main()
