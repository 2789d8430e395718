#!/usr/bin/env python3
"""Docs test: every command block marked runnable in README.md and docs/admin-guide.md is
executed, in document order, against a private stack started with scripts/up.

Markers (an HTML comment on the line before a fenced block):
  <!-- doc-test -->         the block runs with `bash -eo pipefail` and must exit 0
  <!-- doc-test: lines -->  each line runs alone; a trailing comment says what to expect:
                            "# exit N" -> exit status N; "# 250" -> exit 0 and the code in
                            the output; "# 550 5.1.1 ..." -> non-zero exit and that reply in
                            the output; no comment -> exit 0
Production paths are mapped into the stack (see MAPPING); PATH holds the built programs,
MX_CONFIG the stack's config and MAIL_CONFIG its Postfix, so the commands run unchanged.
A document without any marked block fails the test (markers must not silently vanish).

Usage: test_docs.py --root SRC --build BUILD [--port N] [--list]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import opslib

DOCS = ["README.md", "docs/admin-guide.md"]
MARK = re.compile(r"^<!--\s*doc-test(?::\s*(\w+))?\s*-->\s*$")


def extract(path):
    """[(line_no, mode, text)] of the marked blocks of one Markdown file."""
    lines = open(path).read().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = MARK.match(lines[i].strip())
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j >= len(lines) or not lines[j].lstrip().startswith("```"):
            raise AssertionError(f"{path}:{i + 1}: doc-test marker not followed by a code block")
        k = j + 1
        body = []
        while k < len(lines) and not lines[k].lstrip().startswith("```"):
            body.append(lines[k])
            k += 1
        blocks.append((j + 1, m.group(1) or "block", "\n".join(body)))
        i = k + 1
    return blocks


def mapping(st, work):
    state = os.path.join(st.var, "state")
    return [
        ("/var/spool/mx-connector", os.path.join(work, "spool")),
        ("/var/lib/mx-connector", state),
        ("/var/mail/mx-connector", os.path.join(st.var, "mail")),
        ("/var/backups/mx-connector", os.path.join(work, "backups")),
        ("/var/lib/prometheus/node-exporter", os.path.join(work, "prometheus")),
        ("/tmp/mailboxes.csv", os.path.join(work, "mailboxes.csv")),
        ("127.0.0.1:2525", f"127.0.0.1:{st.port}"),
        ("--server 127.0.0.1 ", f"--server 127.0.0.1:{st.port} "),
    ]


def apply_mapping(text, pairs):
    for a, b in pairs:
        text = text.replace(a, b)
    return text


def expectation(line):
    """(command, kind, value): kind exit -> int, smtp -> str, None -> exit 0."""
    cmd, _, comment = line.partition(" #")
    comment = comment.strip()
    m = re.search(r"\bexit (\d+)\b", comment)
    if m:
        return cmd.strip(), "exit", int(m.group(1))
    m = re.match(r"([245]\d\d(?: [245]\.\d{1,3}\.\d{1,3})?)", comment)
    if m:
        return cmd.strip(), "smtp", m.group(1)
    return cmd.strip(), None, 0


def run_shell(script, env, cwd):
    return subprocess.run(["bash", "-eo", "pipefail", "-c", script], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--port", type=int, default=2612)
    ap.add_argument("--list", action="store_true", help="print the blocks and exit")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    blocks = []
    for doc in DOCS:
        found = extract(os.path.join(root, doc))
        assert found, f"{doc} has no doc-test blocks"
        blocks += [(doc, *b) for b in found]
    if a.list:
        for doc, line, mode, text in blocks:
            print(f"--- {doc}:{line} ({mode})\n{text}")
        return
    st = opslib.Stack(root, a.build, a.port)
    work = tempfile.mkdtemp(prefix="mx-docs-")
    try:
        run(st, root, blocks, work)
    finally:
        st.cleanup()
        subprocess.run(["rm", "-rf", work])
    print(f"docs: OK ({len(blocks)} blocks)")


def run(st, root, blocks, work):
    st.up(quiet=True)
    build = st.build
    # README's relative paths (build/..., var/...) resolve in a folder of symlinks.
    cwd = os.path.join(work, "repo")
    os.makedirs(cwd)
    os.symlink(build, os.path.join(cwd, "build"))
    os.symlink(st.var, os.path.join(cwd, "var"))
    os.makedirs(os.path.join(work, "spool"))
    os.chmod(work, 0o755)
    os.chmod(os.path.join(work, "spool"), 0o755)
    env = dict(os.environ,
               PATH=os.pathsep.join([os.path.join(build, "admin"), os.path.join(build, "milter"),
                                     os.path.join(build, "importer"),
                                     "/usr/sbin", "/sbin", os.environ.get("PATH", "")]),
               MX_CONFIG=st.conf, MAIL_CONFIG=os.path.join(st.var, "postfix", "etc"))
    pairs = mapping(st, work)
    failures = []
    for doc, line, mode, text in blocks:
        where = f"{doc}:{line}"
        script = apply_mapping(text, pairs)
        if mode == "lines":
            for cmdline in script.splitlines():
                if not cmdline.strip() or cmdline.lstrip().startswith("#"):
                    continue
                cmd, kind, want = expectation(cmdline)
                p = run_shell(cmd, env, cwd)
                out = p.stdout + p.stderr
                if kind == "exit":
                    ok = p.returncode == want
                elif kind == "smtp":  # 2xx: success and the code; 4xx/5xx: refused with it
                    ok = want in out and ((p.returncode == 0) == want.startswith("2"))
                else:
                    ok = p.returncode == 0
                print(f"[{'ok' if ok else 'FAIL'}] {where}: {cmd}  (exit {p.returncode})")
                if not ok:
                    failures.append(f"{where}: {cmd}: expected {kind or 'exit'} {want}, "
                                    f"got exit {p.returncode}\n{out[-2000:]}")
        else:
            p = run_shell(script, env, cwd)
            ok = p.returncode == 0
            print(f"[{'ok' if ok else 'FAIL'}] {where}: block of {len(script.splitlines())} "
                  f"line(s) (exit {p.returncode})")
            if not ok:
                failures.append(f"{where}: exit {p.returncode}\n{script}\n--- output\n"
                                f"{(p.stdout + p.stderr)[-3000:]}")
    assert not failures, "\n\n".join(failures)
    # The mail the docs sent really arrived.
    opslib.wait_for(lambda: any(os.scandir(os.path.join(st.var, "mail", "example.com", "info",
                                                        "new")))
                    if os.path.isdir(os.path.join(st.var, "mail", "example.com", "info", "new"))
                    else None, 60, "the documented swaks message in info@example.com's Maildir")


if __name__ == "__main__":
    main()
