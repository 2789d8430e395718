#!/usr/bin/python3
"""Import throughput of the webhook target against the Maildir target, side by side, same run.

N messages of ~10 KB are dropped into a connector's drop folder and imported by
`mx-importer --drain` (wall time from start to exit, parse worker included) for:
  maildir       the default target (hard link + one syncfs per batch)
  webhook-raw   webhook:http://127.0.0.1:8120/ok (message/rfc822 body, HMAC signature)
  webhook-json  the same with #format=json (MIME walk in a forked child per delivery)
  webhook-raw-py the raw body against the Python receiver (reference for receiver cost)
Receivers (own processes, HTTP/1.1 keep-alive, both verify every signature): http_sink.cpp
(C++, port 8120) and tests/targets/receiver.py (Python http.server, port 8121).
Prints a table and a JSON line.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RECEIVER = os.path.join(HERE, "..", "..", "targets", "receiver.py")
PORT = 8120
SECRET = "bench-secret"


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def body_10k(i):
    line = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, message %06d.\r\n" % i)
    return line * (10240 // len(line))


def scenario(args, root, name, target):
    drop = os.path.join(root, name, "drop")
    state = os.path.join(root, name, "state")
    os.makedirs(os.path.join(drop, "new"))
    cfg = os.path.join(root, name, "mx.toml")
    with open(cfg, "w") as f:
        f.write('state_dir = "%s"\nrun_dir = "%s/run"\nmail_root = "%s/mail"\n'
                'hostname = "bench"\nlog_level = "warn"\n[importer]\neml_settle_seconds = 0\n'
                % (state, os.path.join(root, name), os.path.join(root, name)))
    mx = [args.mxctl, "--config", cfg]
    run(mx + ["connector", "add", "bench", "--drop-folder", drop, "--domain", "bench.test"])
    run(mx + ["mailbox", "add", "in@bench.test", "--connector", "bench"])
    if target:
        run(mx + ["mailbox", "set", "in@bench.test", "target=" + target, "target.secret=-"],
            input=SECRET + "\n")
    for i in range(args.messages):
        data = ("Return-Path: <s@remote.test>\r\nDelivered-To: in@bench.test\r\n"
                "From: s@remote.test\r\nTo: in@bench.test\r\nSubject: bench %d\r\n"
                "Message-ID: <b%d.%s@remote.test>\r\n\r\n%s" % (i, i, name, body_10k(i)))
        p = os.path.join(drop, "new", "%d.M%d.bench" % (int(time.time()), i))
        with open(p, "w", newline="") as f:
            f.write(data)
    run(["sync"])
    t0 = time.monotonic()
    p = subprocess.run([args.importer, "--config", cfg, "--drain"], capture_output=True, text=True)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit("%s: importer failed: %s" % (name, p.stderr[-2000:]))
    left = os.listdir(os.path.join(drop, "new"))
    failed = [n for n in os.listdir(os.path.join(drop, "ImportFailed"))] \
        if os.path.isdir(os.path.join(drop, "ImportFailed")) else []
    if left or failed:
        sys.exit("%s: %d left, %d failed" % (name, len(left), len(failed)))
    return dt


def start(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    p.stdout.readline()  # "listening on ..."
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--importer", required=True)
    ap.add_argument("--mxctl", required=True)
    ap.add_argument("--sink", required=True, help="http_sink binary (C++ keep-alive receiver)")
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--json-messages", type=int, default=1000)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="mx-bench-targets-", dir=os.environ.get("MX_BENCH_DIR"))
    procs = [start([args.sink, str(PORT), SECRET]),
             start([sys.executable, RECEIVER, "--port", str(PORT + 1), "--secret", SECRET])]
    try:
        sink = "webhook:http://127.0.0.1:%d/ok" % PORT
        py = "webhook:http://127.0.0.1:%d/ok" % (PORT + 1)
        n, nj = args.messages, args.json_messages
        plan = [("maildir", n, None), ("webhook-raw", n, sink),
                ("webhook-json", nj, sink + "#format=json"), ("webhook-raw-py", nj, py)]
        results = {}
        for name, count, target in plan:
            args.messages = count
            results[name] = (count, scenario(args, root, name, target))
        base = results["maildir"][0] / results["maildir"][1]
        print("%-15s %8s %9s %10s %8s" % ("target", "messages", "seconds", "msgs/s", "ratio"))
        out = {}
        for k, (count, dt) in results.items():
            rate = count / dt
            out[k] = {"messages": count, "seconds": round(dt, 3), "msgs_per_s": round(rate, 1),
                      "ratio_vs_maildir": round(rate / base, 3)}
            print("%-15s %8d %9.2f %10.1f %8.2f" % (k, count, dt, rate, rate / base))
        print(json.dumps(out))
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
