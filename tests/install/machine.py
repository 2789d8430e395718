"""A fresh Debian 12 machine for the install tests: a debootstrap tree booted with
`systemd-nspawn --boot`, commands run inside with nsenter (no machined on the host).

Promises:
- The base tree (debootstrap minbase + systemd, Debian's archive as the host's apt uses it) is
  built once and cached under MX_INSTALL_CACHE (default /var/cache/mx-connector-test); each
  test copies it, so every run starts from the same fresh system.
- Packages are downloaded with the host's network in a non-booted nspawn (`provision`); the
  booted machine has a private network (loopback only): its Postfix on port 25 never meets the
  host's or another test's, and apt installs from the downloaded archives only.
- `Machine.boot()` raises Skip (the tests exit 77 with its reason) when this host cannot
  boot a container at all: nspawn exits, or no running systemd within the time limit.
Security: runs as root on the host; everything it creates lives under a temporary folder
that `cleanup()` removes (after the container is powered off or killed).
"""
import fcntl
import glob
import os
import shutil
import subprocess
import tempfile
import time

SKIP = 77
CACHE = os.environ.get("MX_INSTALL_CACHE", "/var/cache/mx-connector-test")
SUITE = "bookworm"
BASE_PACKAGES = "systemd,systemd-sysv,dbus,procps"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Skip(Exception):
    """The host cannot run this test (the message says why)."""


def sh(args, check=True, timeout=900, **kw):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def host_mirror():
    """The Debian archive URI the host's apt uses (deb822 .sources or sources.list)."""
    files = sorted(glob.glob("/etc/apt/sources.list.d/*.sources")) + ["/etc/apt/sources.list"]
    for f in files:
        if not os.path.exists(f):
            continue
        for line in open(f):
            words = line.split()
            if f.endswith(".sources") and words[:1] == ["URIs:"]:
                uri = words[1]
            elif words[:1] == ["deb"]:
                uri = next(w for w in words[1:] if not w.startswith("["))
            else:
                continue
            if "security" not in uri:
                return uri.rstrip("/")
    return "http://deb.debian.org/debian"


def nspawn_args(tree):
    # --register=no/--keep-unit: there is no systemd-machined (nor a host systemd) here.
    return ["systemd-nspawn", "-q", "-D", tree, "--register=no", "--keep-unit"]


def base_tree():
    """Path of the cached base tree, built (debootstrap) under a lock when missing."""
    os.makedirs(CACHE, exist_ok=True)
    base = os.path.join(CACHE, f"base-{SUITE}")
    with open(os.path.join(CACHE, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(base, ".complete")):
            return base
        if not shutil.which("debootstrap"):
            raise Skip("debootstrap is not installed (scripts/deps --tests installs it)")
        shutil.rmtree(base, ignore_errors=True)
        tmp = base + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        p = sh(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE, tmp,
                host_mirror()], check=False, timeout=1200)
        if p.returncode != 0:
            raise AssertionError(f"debootstrap from {host_mirror()} failed (no archive?):\n"
                       f"{p.stdout[-1500:]}{p.stderr[-1500:]}")
        # The host's sources (updates and security too): the .deb was built against them.
        host_sources = sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
        if host_sources:
            os.remove(os.path.join(tmp, "etc/apt/sources.list"))
            for f in host_sources:
                shutil.copy(f, os.path.join(tmp, "etc/apt/sources.list.d"))
        # An admin answers apt's question; the tests run the guide's `apt install` unchanged.
        with open(os.path.join(tmp, "etc/apt/apt.conf.d/90mx-test"), "w") as f:
            f.write('APT::Get::Assume-Yes "true";\nBinary::apt::APT::Keep-Downloaded-Packages '
                    '"true";\nAPT::Keep-Downloaded-Packages "true";\n')
        sh(nspawn_args(tmp) + ["apt-get", "update", "-qq"], timeout=600)
        open(os.path.join(tmp, ".complete"), "w").close()
        os.rename(tmp, base)
        return base


class Machine:
    """One booted Debian 12 container in a temporary folder."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"mx-install-{name}-", dir="/var/tmp")
        self.tree = os.path.join(self.dir, "tree")
        self.proc = None
        self.leader = None
        self.console = os.path.join(self.dir, "console.log")

    # -- set-up ----------------------------------------------------------------------------
    def create(self):
        base = base_tree()
        sh(["cp", "-a", "--reflink=auto", base, self.tree])
        with open(os.path.join(self.tree, "etc/hostname"), "w") as f:
            f.write("mx\n")
        with open(os.path.join(self.tree, "etc/hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n127.0.1.1 mx.example.test mx\n")
        # A throw-away machine: dpkg need not fsync every unpacked file (as in Debian's
        # container images); what the packages do is unchanged.
        with open(os.path.join(self.tree, "etc/dpkg/dpkg.cfg.d/mx-test-unsafe-io"), "w") as f:
            f.write("force-unsafe-io\n")

    def put(self, host_path, dest):
        """Copy a host file into the tree (before boot or while running: same folder)."""
        target = os.path.join(self.tree, dest.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(host_path, target)
        return dest

    def provision(self, packages, debs=()):
        """Download (not install) packages and the dependencies of local .debs, with the
        host's network, so the booted machine installs them without one."""
        inside = [self.put(d, f"/root/debs/{os.path.basename(d)}") for d in debs]
        p = sh(nspawn_args(self.tree) + ["--setenv=DEBIAN_FRONTEND=noninteractive", "apt-get",
                                         "install", "-qq", "--download-only", *packages, *inside],
               check=False, timeout=900)
        if p.returncode != 0:
            # One retry after refreshing the lists (the cached ones may be stale).
            sh(nspawn_args(self.tree) + ["apt-get", "update", "-qq"], timeout=600)
            sh(nspawn_args(self.tree) + ["apt-get", "install", "-qq", "--download-only",
                                         *packages, *inside], timeout=900)
        return inside

    # -- boot / power off ------------------------------------------------------------------
    def boot(self, timeout=120):
        log = open(self.console, "w")
        self.proc = subprocess.Popen(nspawn_args(self.tree) + [
            "--boot", "-M", f"mx{self.name}{os.getpid()}"[:64], "--private-network",
            "--console=read-only"], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Skip(f"systemd-nspawn --boot exited {self.proc.returncode}:\n"
                           f"{open(self.console).read()[-2000:]}")
            self.leader = self._find_leader()
            if self.leader:
                p = self.run("systemctl is-system-running --wait", check=False, timeout=max(
                    5, int(deadline - time.monotonic())))
                state = p.stdout.strip()
                if state in ("running", "degraded"):
                    return state
                if state not in ("starting", "initializing", ""):
                    raise AssertionError(f"machine booted to '{state}'\n{p.stderr}")
            time.sleep(0.5)
        raise Skip(f"systemd-nspawn --boot: no running systemd after {timeout} s:\n"
                   f"{open(self.console).read()[-2000:]}")

    def _find_leader(self):
        """The container's PID 1 seen from the host: the `systemd` below our nspawn."""
        children = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    stat = open(f"/proc/{d}/stat").read()
                except OSError:
                    continue
                comm = stat[stat.index("(") + 1:stat.rindex(")")]
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
                children.setdefault(ppid, []).append((int(d), comm))
        todo = [self.proc.pid]
        while todo:
            for pid, comm in children.get(todo.pop(), []):
                if comm == "systemd":
                    return pid
                todo.append(pid)
        return None

    def poweroff(self, timeout=90):
        if not self.proc or self.proc.poll() is not None:
            return
        self.run("systemctl poweroff", check=False, timeout=30)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own nspawn process: it takes the container with it
            self.proc.wait(30)

    def cleanup(self):
        try:
            self.poweroff()
        finally:
            if os.environ.get("MX_INSTALL_KEEP"):
                print(f"install: kept {self.dir}")
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    # -- commands --------------------------------------------------------------------------
    def run(self, script, check=True, timeout=300, stdin=None):
        """bash -eo pipefail -c SCRIPT inside the machine, as root, with a login-like env."""
        p = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "--", "/usr/bin/env", "-i", f"PATH={PATH}",
             "HOME=/root", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", "/bin/bash", "-eo",
             "pipefail", "-c", script], input=stdin, capture_output=True, text=True,
            timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"in machine: {script}\nexit {p.returncode}\n--- stdout\n"
                                 f"{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}")
        return p

    def wait_for(self, script, timeout=60, what=None):
        deadline = time.monotonic() + timeout
        while True:
            p = self.run(script, check=False)
            if p.returncode == 0:
                return p
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out ({timeout} s) waiting for "
                                     f"{what or script}\n{p.stdout}\n{p.stderr}")
            time.sleep(0.5)

    def exists(self, path):
        return os.path.lexists(os.path.join(self.tree, path.lstrip("/")))
