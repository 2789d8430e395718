"""mxtest: what the Python integration tests share — running commands, waiting for a condition,
talking SMTP with swaks, a private stack (scripts/mx-stack) with its mxctl, skipping.

Imported as `import mxtest`: the CMake test definitions put tests/lib on PYTHONPATH (run a test
by hand with PYTHONPATH=tests/lib). Python 3 stdlib only.

Promises: run() raises AssertionError with the command's output when it fails (check=True);
wait_for() polls until the condition gives a true value or the time is up and never asserts
wall-clock durations; skip() exits 77, which CTest reports as skipped (SKIP_RETURN_CODE).
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STACK = os.path.join(ROOT, "scripts", "mx-stack")


def build_dir(argv=None):
    """BUILD_DIR from the command line (argv[1]), else <source>/build."""
    argv = sys.argv if argv is None else argv
    return os.path.abspath(argv[1] if len(argv) > 1 else os.path.join(ROOT, "build"))


def port(env, default):
    """The test's port: $env when set (to move a test off a busy port), else default."""
    return int(os.environ.get(env, str(default)))


def run(cmd, check=True, **kw):
    """Runs cmd with stdout and stderr together as text; on check, a failure raises."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout}")
    return p


def skip(why):
    print(f"SKIPPED: {why}", file=sys.stderr)
    sys.exit(77)


def require(root=True, tools=()):
    """Skips (exit 77) unless run as root (when asked) with every tool installed."""
    if root and os.geteuid() != 0:
        skip("needs root")
    for tool in tools:
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            skip(f"{tool} not installed (scripts/deps)")


def wait_for(condition, timeout=20, interval=0.2):
    """condition() until it returns a true value (returned) or `timeout` seconds have passed
    (then its last value)."""
    deadline = time.time() + timeout
    while True:
        value = condition()
        if value or time.time() >= deadline:
            return value
        time.sleep(interval)


def log_text(path, *expected, timeout=10):
    """The text of a daemon's log once every `expected` string is in it, or after `timeout`
    seconds (then as it is). mx-milter and mx-importer buffer their info lines and write them
    within a second, so a line can follow the event it reports."""
    def read():
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""
    text = wait_for(lambda: (lambda t: t if all(e in t for e in expected) else "")(read()),
                    timeout=timeout, interval=0.1)
    return text or read()


def files_with(pattern, marker):
    """Texts of the files matching the glob pattern that contain marker."""
    found = []
    for path in glob.glob(pattern):
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if marker in text:
            found.append(text)
    return found


SMTP_REPLY = re.compile(r"^<(?:\*\*|-) +(\d{3}(?: [245]\.\d+\.\d+)?.*)$", re.M)


def swaks(port, *to, quit_after=None, subject=None, body=None, client=None,
          sender="sender@sender.test", helo="client.test"):
    """One SMTP session with swaks to 127.0.0.1:port: (swaks output, the server's replies)."""
    cmd = ["swaks", "--server", f"127.0.0.1:{port}", "--from", sender, "--to", ",".join(to),
           "--helo", helo, "--timeout", "30"]
    if client:
        cmd += ["--local-interface", client]
    if quit_after:
        cmd += ["--quit-after", quit_after]
    if subject is not None:
        cmd += ["--header", f"Subject: {subject}"]
    if body is not None:
        cmd += ["--body", body]
    out = run(cmd, check=False).stdout
    return out, SMTP_REPLY.findall(out)


class Stack:
    """A private Postfix + mx-milter (+ mx-importer) from scripts/mx-stack in `folder`."""

    def __init__(self, folder, port, build, *options):
        self.dir = folder
        self.build = build
        self.conf = os.path.join(folder, "mx-connector.toml")
        self.drop = os.path.join(folder, "drop")
        self.mail = os.path.join(folder, "mail")
        self.log = os.path.join(folder, "log")
        run([STACK, "start", folder, "--port", str(port), "--build", build, *options])

    def mxctl(self, *args, check=True):
        return run([os.path.join(self.build, "admin", "mxctl"), "--config", self.conf, *args],
                   check=check).stdout

    def stop_milter(self):
        run([STACK, "stop-milter", self.dir])

    def start_milter(self):
        run([STACK, "start-milter", self.dir])

    def stop(self):
        run([STACK, "stop", self.dir], check=False)

    def add_demo_connectors(self):
        """The connectors most tests start from: demo (example.test: info, sales) and the
        inactive off (off.test)."""
        self.mxctl("connector", "add", "demo", "--drop-folder", f"{self.drop}/demo",
                   "--domain", "example.test")
        for box in ("info", "sales"):
            self.mxctl("mailbox", "add", f"{box}@example.test", "--connector", "demo")
        self.mxctl("connector", "add", "off", "--drop-folder", f"{self.drop}/off",
                   "--domain", "off.test", "--inactive")


def temp_dir(prefix, parent=None):
    """A fresh folder others can enter (0755): daemons switch to their own account."""
    d = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(d, 0o755)
    return d


def run_main(skip_reason, make_context, body):
    """The main() of a test that runs inside a context (a cluster, a stack): with skip_reason
    set, says why and returns 77 (CTest: skipped); else runs body(ctx) inside
    `with make_context() as ctx`, prints the one-line summary body returns with the seconds the
    whole run took, sets ctx.ok (the context removes its folder only then) and returns 0. A
    failed assertion propagates: the test fails, the folder is kept for a look."""
    if skip_reason:
        print(f"skipped: {skip_reason}")
        return 77
    t0 = time.monotonic()
    with make_context() as ctx:
        summary = body(ctx)
        print(f"{summary} ({time.monotonic() - t0:.0f} s)")
        ctx.ok = True
    return 0


def remove_dir(folder):
    """Removes a test folder, or keeps it (and says where) with MX_KEEP_TEST_DIR set."""
    if os.environ.get("MX_KEEP_TEST_DIR"):
        print(f"kept {folder}", file=sys.stderr)
    else:
        shutil.rmtree(folder, ignore_errors=True)
