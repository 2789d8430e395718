"""Steps shared by the install tests: stock Postfix, the package, the guide's wiring, SMTP.

Promises: every step runs inside the booted machine (machine.Machine) the way an admin would
type it; failures that do not stop the rest of the test are collected in `Findings` so one
run reports all of them.
"""
import os
import re
import subprocess
import sys
import time

import guide
import machine as mach

# What the tests download besides the package's own dependencies: Debian's Postfix (installed
# first, as the admin has it) and what the guide's commands use (swaks, mdb_copy).
PACKAGES = ["postfix", "postfix-lmdb", "swaks", "lmdb-utils"]


class Timer:
    """Prints the cost of each phase (the test's cost is reported, never asserted)."""

    def __init__(self):
        self.t0 = self.last = time.monotonic()

    def lap(self, what):
        now = time.monotonic()
        print(f"install: {what}: {now - self.last:.1f} s (total {now - self.t0:.1f} s)",
              flush=True)
        self.last = now


class Findings:
    def __init__(self):
        self.items = []

    def check(self, ok, what, detail=""):
        print(f"[{'ok' if ok else 'FAIL'}] {what}", flush=True)
        if not ok:
            self.items.append(f"{what}\n{detail}".rstrip())
        return ok

    def dump(self):
        for item in self.items:
            print(f"--- finding: {item}")

    def extend(self, items):
        self.items += items

    def assert_none(self):
        assert not self.items, f"{len(self.items)} finding(s):\n\n" + "\n\n".join(self.items)


def start(name, debs):
    """A booted fresh Debian 12 with the packages downloaded; Skip when nspawn cannot boot."""
    m = mach.Machine(name)
    m.create()
    inside = m.provision(PACKAGES, debs)
    t0 = time.monotonic()
    m.boot()
    print(f"install: machine booted in {time.monotonic() - t0:.1f} s", flush=True)
    return m, inside


def stock_postfix(m):
    """Debian's Postfix, "Internet Site", as the installer's debconf questions set it up."""
    m.run("echo 'postfix postfix/main_mailer_type select Internet Site' | debconf-set-selections\n"
          "echo 'postfix postfix/mailname string mx.example.test' | debconf-set-selections\n"
          "apt-get install -qq postfix >/dev/null")
    m.wait_for("systemctl is-active postfix@-.service", 60, "postfix@- active")


def postfix_warnings(m):
    """Lines of `postconf` stderr (e.g. 'overriding earlier entry')."""
    p = m.run("postconf >/dev/null", check=False)
    return [ln for ln in p.stderr.splitlines() if ln.strip()]


def install_package(m, f, guide_path, deb_inside):
    """The guide's `apt install ./mx-connector_...deb`, in the folder holding our .deb."""
    line = guide.apt_install_line(guide_path)
    cmd = re.sub(r"\./mx-connector_\S+\.deb", "./" + os.path.basename(deb_inside), line)
    p = m.run(f"cd {os.path.dirname(deb_inside)} && {cmd}", check=False, timeout=600)
    f.check(p.returncode == 0, f"{cmd}", p.stdout[-2000:] + p.stderr[-2000:])
    maintainer_output(f, cmd, p)
    for unit in ("mx-milter", "mx-importer"):
        p = m.wait_for(f"systemctl is-active {unit}", 30, f"{unit} active after install")
    return p


def maintainer_output(f, what, p):
    """Our maintainer scripts' messages are shown; a warning or error from them is a finding."""
    lines = [ln for ln in (p.stdout + p.stderr).splitlines()
             if "mx-connector" in ln and re.search(r"(?i)warn|error|fail|mx-connector:", ln)]
    for ln in lines:
        print(f"      {ln}", flush=True)
    bad = [ln for ln in lines if re.search(r"(?i)warn|error|fail", ln)]
    f.check(not bad, f"{what}: no warnings from the package's scripts", "\n".join(bad))


def wire_postfix(m, f, guide_path, fragment_dir):
    """Section 3 of the guide (and the other marked blocks), run as written. When section 3 has
    no install-test markers, its master.cf step is prose only ("replace the virtual line"):
    done here with postconf -M from the installed fragment, and said so."""
    todo, marked = guide.steps(guide_path)
    ran_master = marked
    for line, mode, text, why in todo:
        if why == "doc-test" and not ran_master and line > first_section(guide_path, 4):
            ran_master = True
            master_by_hand(m, f, fragment_dir)
        f.extend(guide.run_step(m, f"admin-guide.md:{line} ({why})", mode, text))
    return todo


def first_section(path, n):
    for i, ln in enumerate(open(path).read().splitlines(), 1):
        if ln.startswith(f"## {n}."):
            return i
    return 10 ** 9


def master_by_hand(m, f, fragment_dir):
    print("install: the guide's master.cf step has no command; applying "
          "master.cf.fragment's virtual service with postconf -M", flush=True)
    frag = f"{fragment_dir}/master.cf.fragment"
    p = m.run(f"""
        svc=$(grep -v '^#' {frag} | sed '/^$/d' | tr '\\n' ' ' | sed 's/  */ /g')
        postconf -M "virtual/unix=$svc"
        postfix reload""", check=False)
    f.check(p.returncode == 0, "master.cf: virtual service from master.cf.fragment",
            p.stdout + p.stderr)


def swaks(m, to, sender="alice@sender.test"):
    p = m.run(f"swaks --server 127.0.0.1 --from {sender} --to {to} --timeout 30 "
              f"--header 'Subject: install test to {to}'", check=False, timeout=120)
    return p.returncode, p.stdout + p.stderr


def expect_smtp(m, f, to, code):
    rc, out = swaks(m, to)
    # The reply to RCPT TO (swaks: "<-  250 2.1.5 Ok", "<** 550 5.1.1 ...").
    m_ = re.search(r"-> RCPT TO:<[^>]*>\n<[-*~]*\s+(\d{3}[^\n]*)", out)
    reply = m_.group(1) if m_ else "(no reply to RCPT)"
    ok = reply.startswith(code) and ((rc == 0) == code.startswith("2"))
    f.check(ok, f"RCPT {to}: {code} (got {reply.strip()[:60]})", out[-1500:])
    return ok


def maildir_count(m, address):
    local, domain = address.split("@")
    p = m.run(f"ls /var/mail/mx-connector/{domain}/{local}/new 2>/dev/null | wc -l", check=False)
    return int(p.stdout.strip() or 0)


def unit_pid(m, unit):
    return int(m.run(f"systemctl show -p MainPID --value {unit}").stdout.strip())


def journal(m, units=("mx-milter", "mx-importer", "postfix@-")):
    args = " ".join(f"-u {u}" for u in units)
    return m.run(f"journalctl --no-pager -n 80 {args}", check=False).stdout


def build_dir_deb(build, version=None):
    """cpack in BUILD (everything is built by then); the .deb's path."""
    args = ["cpack", "-G", "DEB"]
    if version:
        args += ["-D", f"CPACK_DEBIAN_PACKAGE_VERSION={version}"]
    p = subprocess.run(args, cwd=build, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise AssertionError(f"cpack failed\n{p.stdout}\n{p.stderr}")
    m = re.search(r"package: (\S+\.deb) generated", p.stdout)
    assert m, p.stdout
    return m.group(1)


def main_wrapper(run):
    try:
        run()
    except mach.Skip as e:
        print(f"SKIP: this host cannot boot a systemd-nspawn container, so the install test "
              f"did not run: {e}", flush=True)
        sys.exit(mach.SKIP)
