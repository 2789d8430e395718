#!/usr/bin/env python3
"""sd_notify: both daemons speak systemd's notify protocol (the units are Type=notify).

A unix datagram socket stands in for systemd (NOTIFY_SOCKET). Proves: mx-milter sends READY=1
only once its milter socket accepts connections, WATCHDOG=1 when WATCHDOG_USEC is set, and
STOPPING=1 on SIGTERM, then exits 0; mx-importer sends READY=1 from its running main loop
(also without a store yet) and WATCHDOG=1, and exits 0 on SIGTERM.

Usage: test_sd_notify.py --root SRC --build BUILD [--port N]
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def collect(sock, until, timeout):
    """Datagrams until one contains `until`; returns them all."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except socket.timeout:
            break
        if until in got[-1]:
            return got
    raise AssertionError(f"no {until!r} within {timeout}s; got {got}")


def start(exe, conf, notify, watchdog_usec=None):
    env = dict(os.environ, NOTIFY_SOCKET=notify)
    env.pop("MX_CONFIG", None)
    if watchdog_usec:
        # WATCHDOG_PID must be the daemon's pid: the shell execs into it, keeping its pid.
        env["WATCHDOG_USEC"] = str(watchdog_usec)
        cmd = ["sh", "-c", 'WATCHDOG_PID=$$ exec "$0" --config "$1"', exe, conf]
    else:
        cmd = [exe, "--config", conf]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--port", type=int, default=2613)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    tmp = tempfile.mkdtemp(prefix="mx-notify-")
    procs = []
    try:
        conf = os.path.join(tmp, "mx-connector.toml")
        with open(conf, "w") as f:
            f.write('state_dir = "state"\nrun_dir = "run"\nmail_root = "mail"\n'
                    'hostname = "notify.test"\n[milter]\n'
                    f'socket = "unix:{tmp}/run/milter.sock"\n'
                    f'socketmap = "unix:{tmp}/run/socketmap.sock"\n')
        os.makedirs(os.path.join(tmp, "run"))
        notify = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify)

        # mx-milter: READY only when the milter socket answers.
        p = start(os.path.join(build, "milter", "mx-milter"), conf, notify, 1000000)
        procs.append(p)
        msgs = collect(sock, "READY=1", 60)
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(os.path.join(tmp, "run", "milter.sock"))  # must not raise: it listens
        c.close()
        assert any("STATUS=serving unix:" in m for m in msgs), msgs
        collect(sock, "WATCHDOG=1", 10)
        p.send_signal(signal.SIGTERM)
        collect(sock, "STOPPING=1", 30)
        assert p.wait(60) == 0, p.stdout.read().decode()
        print("mx-milter: READY after the socket listens, WATCHDOG, STOPPING, exit 0")

        # mx-importer: READY from its main loop, no store needed yet.
        p = start(os.path.join(build, "importer", "mx-importer"), conf, notify, 2000000)
        procs.append(p)
        collect(sock, "READY=1", 60)
        collect(sock, "WATCHDOG=1", 10)
        assert p.poll() is None, "mx-importer exited after READY"
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0, p.stdout.read().decode()
        print("mx-importer: READY, WATCHDOG, exit 0")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("sd_notify: OK")


if __name__ == "__main__":
    main()
