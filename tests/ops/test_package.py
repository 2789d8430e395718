#!/usr/bin/env python3
"""Package test: `cmake --install . --prefix TMP` installs binaries, units, sysusers/tmpfiles,
example config and man pages; cpack builds mx-connector_<version>_amd64.deb whose contents
(`dpkg -c`) and control data (`dpkg -I`: depends, conffiles, maintainer scripts) are right;
the units pass `systemd-analyze verify` against the installed tree; the man pages render.

Usage: test_package.py --root SRC --build BUILD
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile


def sh(*args, cwd=None, env=None, check=True):
    p = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def project_version(root):
    text = open(os.path.join(root, "CMakeLists.txt")).read()
    return re.search(r"project\(\w+\s+VERSION\s+([0-9.]+)", text).group(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--build", required=True)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    tmp = tempfile.mkdtemp(prefix="mx-pkg-")
    try:
        run(os.path.abspath(a.root), build, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("package: OK")


def run(root, build, tmp):
    version = project_version(root)

    # 1. cmake --install into a temporary prefix.
    prefix = os.path.join(tmp, "prefix")
    sh("cmake", "--install", build, "--prefix", prefix)
    expected = [
        "sbin/mx-milter", "sbin/mx-importer", "sbin/mxctl",
        "lib/systemd/system/mx-milter.service", "lib/systemd/system/mx-importer.service",
        "lib/sysusers.d/mx-connector.conf", "lib/tmpfiles.d/mx-connector.conf",
        "etc/mx-connector/mx-connector.toml",
        "share/man/man8/mx-milter.8.gz", "share/man/man8/mx-importer.8.gz",
        "share/man/man8/mxctl.8.gz",
        "share/doc/mx-connector/admin-guide.md", "share/doc/mx-connector/architecture.md",
        "share/doc/mx-connector/configuration.md",
        "share/doc/mx-connector/examples/mx-connector.toml",
    ]
    missing = [e for e in expected if not os.path.exists(os.path.join(prefix, e))]
    assert not missing, f"cmake --install did not install {missing}"
    for b in ("mx-milter", "mx-importer", "mxctl"):
        assert os.access(os.path.join(prefix, "sbin", b), os.X_OK)
    # The installed example config is valid for the installed milter.
    p = sh(os.path.join(prefix, "sbin", "mx-milter"), "--config",
           os.path.join(prefix, "etc/mx-connector/mx-connector.toml"), "--check-config",
           check=False)
    assert p.returncode == 0, f"example config rejected: {p.stdout}{p.stderr}"
    # Man pages render without groff warnings.
    for page in ("mx-milter", "mx-importer", "mxctl"):
        p = subprocess.run(["man", "--warnings", "-l",
                            os.path.join(prefix, "share/man/man8", page + ".8.gz")],
                           capture_output=True, text=True, env=dict(os.environ, MANWIDTH="80"))
        assert p.returncode == 0 and page.upper() in p.stdout, p.stderr
        assert not p.stderr.strip(), f"man {page}: {p.stderr}"

    # 2. The units are valid systemd units (checked against the installed binaries).
    if shutil.which("systemd-analyze"):
        units = [os.path.join(prefix, "lib/systemd/system", u)
                 for u in ("mx-milter.service", "mx-importer.service")]
        staged = os.path.join(tmp, "staged")
        os.makedirs(staged)
        for u in units:
            text = open(u).read().replace("/usr/sbin/", os.path.join(prefix, "sbin") + "/")
            open(os.path.join(staged, os.path.basename(u)), "w").write(text)
        p = sh("systemd-analyze", "verify", "--man=no",
               *[os.path.join(staged, os.path.basename(u)) for u in units], check=False)
        # Any remark about our unit files (unknown keys, bad values) fails the test.
        problems = [l for l in (p.stdout + p.stderr).splitlines() if ".service:" in l]
        assert p.returncode == 0 and not problems, f"systemd-analyze verify:\n{p.stdout}{p.stderr}"
        for u in units:
            text = open(u).read()
            for want in ("Type=notify", "Restart=on-failure", "NoNewPrivileges=yes",
                         "ProtectSystem=strict", "ReadWritePaths=", "PrivateTmp=yes"):
                assert want in text, f"{os.path.basename(u)} lacks {want}"

    # 3. cpack: mx-connector_<version>_amd64.deb.
    out = os.path.join(tmp, "deb")
    sh("cpack", "-G", "DEB", "-B", out, "--config", os.path.join(build, "CPackConfig.cmake"),
       cwd=build)
    deb = os.path.join(out, f"mx-connector_{version}_amd64.deb")
    assert os.path.exists(deb), f"{deb} not built; have {os.listdir(out)}"
    listing = sh("dpkg", "-c", deb).stdout
    for path in ("./usr/sbin/mx-milter", "./usr/sbin/mx-importer", "./usr/sbin/mxctl",
                 "./usr/lib/systemd/system/mx-milter.service",
                 "./usr/lib/systemd/system/mx-importer.service",
                 "./usr/lib/sysusers.d/mx-connector.conf",
                 "./usr/lib/tmpfiles.d/mx-connector.conf",
                 "./etc/mx-connector/mx-connector.toml",
                 "./usr/share/man/man8/mx-milter.8.gz", "./usr/share/man/man8/mx-importer.8.gz",
                 "./usr/share/man/man8/mxctl.8.gz", "./usr/share/man/man8/mx-console.8.gz",
                 "./usr/share/doc/mx-connector/copyright",
                 "./usr/share/doc/mx-connector/changelog.gz",
                 "./usr/share/doc/mx-connector/admin-guide.md"):
        assert re.search(r"\s" + re.escape(path) + r"$", listing, re.M), \
            f"{path} missing from the package:\n{listing}"
    info = sh("dpkg", "-I", deb).stdout
    assert "Package: mx-connector" in info and f"Version: {version}" in info, info
    assert "Architecture: amd64" in info, info
    depends = re.search(r"^ Depends: (.*)$", info, re.M).group(1)
    for lib in ("libmilter", "liblmdb", "libsystemd", "postfix", "postfix-lmdb"):
        assert lib in depends, f"Depends lacks {lib}: {depends}"
    control = os.path.join(tmp, "control")
    sh("dpkg-deb", "-e", deb, control)
    assert open(os.path.join(control, "conffiles")).read().split() == \
        ["/etc/mx-connector/mx-connector.toml"]
    for script in ("postinst", "prerm", "postrm"):
        path = os.path.join(control, script)
        assert os.access(path, os.X_OK), f"{script} not executable"
        sh("sh", "-n", path)
    # 4. The package's contents unpack into a root with the same tree as cmake --install.
    root_dir = os.path.join(tmp, "root")
    sh("dpkg-deb", "-x", deb, root_dir)
    p = sh(os.path.join(root_dir, "usr/sbin/mxctl"), "--help")
    assert "doctor" in p.stdout
    print(f"package: {os.path.basename(deb)} ({os.path.getsize(deb)} bytes), Depends: {depends}")


if __name__ == "__main__":
    main()
