#!/usr/bin/env python3
"""lintian on the .deb built from this tree (cpack in BUILD, like the install tests): no error
and no warning. A tag the package accepts is overridden in packaging/debian/lintian-overrides
(installed as /usr/share/lintian/overrides/mx-connector) with its reason; info tags are
printed. Exit 77 (skipped) when lintian is not installed (scripts/deps).

Usage: test_lintian.py --root SRC --build BUILD [--deb PATH]
"""
import argparse
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--deb", help="check this .deb instead of running cpack in BUILD")
    a = ap.parse_args()
    if not shutil.which("lintian"):
        print("SKIPPED: lintian is not installed (scripts/deps --tests installs it)", file=sys.stderr)
        sys.exit(77)
    deb = a.deb or common.build_dir_deb(os.path.abspath(a.build))
    # --no-cfg: no user or host profile changes what is checked. Info tags are shown but do
    # not fail the test (hardening flags and the like are the build's business). No
    # --show-overrides: with it lintian 2.116 exits 2 for an overridden tag.
    p = subprocess.run(["lintian", "--no-cfg", "--display-info", "--fail-on", "error,warning",
                        deb],
                       capture_output=True, text=True, timeout=900)
    lines = [ln for ln in p.stdout.splitlines() if ln[:2] in ("E:", "W:", "I:")]
    for ln in lines:
        print(ln)
    bad = [ln for ln in lines if ln[:2] in ("E:", "W:")]
    if p.returncode != 0 or bad:
        print(p.stderr, file=sys.stderr)
        raise SystemExit(f"lintian: {len(bad)} error/warning tag(s) on {os.path.basename(deb)} "
                         f"(exit {p.returncode}): fix them in packaging/ or override them with "
                         f"a reason in packaging/debian/lintian-overrides")
    print(f"lintian: {os.path.basename(deb)}: no errors, no warnings "
          f"({sum(ln.startswith('I:') for ln in lines)} info tags)")


if __name__ == "__main__":
    main()
