"""The admin guide's commands, as the install tests run them on a real machine.

Promises:
- `steps(path)` returns, in document order, what a new admin types: section 3's blocks (the
  marked ones when section 3 has an `<!-- install-test -->` marker or a marked
  `mxctl postfix ...` block, else every `sh` block of section 3 before its Sendmail part) and
  every `<!-- doc-test -->` / `<!-- install-test -->` block of the guide.
  Nothing is rewritten: on the installed machine the guide's paths are the real ones.
- `apt_install_line(path)` is the guide's `apt install ./mx-connector_...deb` line.
- `run_step` applies the doc tests' expectations ("# exit N", "# 250", "# 550 5.1.1").
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ops"))
from test_docs import expectation  # noqa: E402

MARK = re.compile(r"^<!--\s*(doc-test|install-test)(?::\s*(\w+))?\s*-->\s*$")
SECTION = re.compile(r"^##\s+(\d+)\.")


def blocks(path):
    """[(line, section, subsection, marker, mode, text)] of every fenced sh block."""
    out = []
    lines = open(path).read().splitlines()
    section, sub, marker, mode = 0, "", None, "block"
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        m = SECTION.match(s)
        if m:
            section, sub = int(m.group(1)), ""
        elif s.startswith("### "):
            sub = s[4:]
        mk = MARK.match(s)
        if mk:
            marker, mode = mk.group(1), mk.group(2) or "block"
        elif s.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            if s in ("```sh", "```bash"):
                body = [ln[len(lines[i]) - len(lines[i].lstrip()):] for ln in lines[i + 1:j]]
                out.append((i + 2, section, sub, marker, mode, "\n".join(body)))
            marker, mode = None, "block"
            i = j
        elif s and not s.startswith("<!--"):
            marker, mode = None, "block"
        i += 1
    return out


def steps(path):
    """(line, mode, text, why) to run on the installed machine, in document order."""
    found = blocks(path)
    postfix = [b for b in found if b[1] == 3 and not b[2].lower().startswith("sendmail")]
    # Marked mode: section 3 says which of its blocks an admin runs (an install-test marker,
    # or a marked `mxctl postfix ...` block); then its other blocks (the manual way) are
    # reading only. Unmarked (the guide before `mxctl postfix setup`): all of them run.
    marked = any(b[3] == "install-test" or (b[3] == "doc-test" and "mxctl postfix" in b[5])
                 for b in postfix)
    out = []
    for line, section, sub, marker, mode, text in found:
        in_postfix = (line, section, sub, marker, mode, text) in postfix
        if marker == "install-test" or marker == "doc-test":
            out.append((line, mode, text, marker))
        elif in_postfix and not marked:
            out.append((line, mode, text, "section 3"))
    return out, marked


def apt_install_line(path):
    for _, section, _, _, _, text in blocks(path):
        for ln in text.splitlines():
            if section == 1 and re.match(r"^\s*apt install \./mx-connector_\S+\.deb\s*$", ln):
                return ln.strip()
    raise AssertionError(f"{path}: no 'apt install ./mx-connector_...deb' line in section 1")


def run_step(machine, where, mode, text):
    """Run one block (or each line of a 'lines' block); [failure texts]."""
    failures = []
    if mode != "lines":
        p = machine.run(text, check=False)
        print(f"[{'ok' if p.returncode == 0 else 'FAIL'}] {where}: block of "
              f"{len(text.splitlines())} line(s) (exit {p.returncode})", flush=True)
        if p.returncode != 0:
            failures.append(f"{where}: exit {p.returncode}\n{text}\n--- output\n"
                            f"{(p.stdout + p.stderr)[-3000:]}")
        return failures
    for cmdline in text.splitlines():
        if not cmdline.strip() or cmdline.lstrip().startswith("#"):
            continue
        cmd, kind, want = expectation(cmdline)
        p = machine.run(cmd, check=False)
        out = p.stdout + p.stderr
        if kind == "exit":
            ok = p.returncode == want
        elif kind == "smtp":
            ok = want in out and ((p.returncode == 0) == want.startswith("2"))
        else:
            ok = p.returncode == 0
        print(f"[{'ok' if ok else 'FAIL'}] {where}: {cmd}  (exit {p.returncode})", flush=True)
        if not ok:
            failures.append(f"{where}: {cmd}: expected {kind or 'exit'} {want}, got exit "
                            f"{p.returncode}\n{out[-2000:]}")
    return failures
