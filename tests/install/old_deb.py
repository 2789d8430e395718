"""The .deb of an earlier commit (the upgrade test's starting point), built once per commit.

Promises:
- `base_ref(root)`: MX_UPGRADE_BASE if set, else the newest tag before HEAD, else HEAD~1.
- `old_deb(root, build, ref)` returns (deb, admin_guide, store_schema_version) of that commit.
  The .deb is cached by commit hash under MX_INSTALL_CACHE/debs: built only when missing,
  from `git archive` of the commit (the repository's worktrees are untouched) in
  BUILD/install-old/<commit>/src/build, products only (-DBUILD_TESTING=OFF), unoptimised,
  without debug information and in unity batches (-O0, no -g, old_unity.cmake: the upgrade
  test needs the old package's files, maintainer scripts and state, not its speed; a CI run
  from nothing builds it every time), versioned "<version>~upgradebase" so that the tree's
  own .deb is an upgrade of it.
"""
import os
import re
import shutil
import subprocess

import machine as mach


def git(root, *args):
    p = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {p.stderr.strip()} (a shallow clone needs "
                             f"`git fetch --deepen=1` or MX_UPGRADE_BASE)")
    return p.stdout.strip()


def base_ref(root):
    ref = os.environ.get("MX_UPGRADE_BASE")
    if ref:
        return ref
    p = subprocess.run(["git", "-C", root, "describe", "--tags", "--abbrev=0", "HEAD^"],
                       capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else "HEAD~1"


def schema_version(store_hpp_text):
    m = re.search(r"store_schema_version\s*=\s*(\d+)", store_hpp_text)
    return int(m.group(1)) if m else None


def old_deb(root, build, ref):
    commit = git(root, "rev-parse", f"{ref}^{{commit}}")
    cache = os.path.join(mach.CACHE, "debs", commit)
    deb_link = os.path.join(cache, "mx-connector.deb")
    guide = os.path.join(cache, "admin-guide.md")
    store = git(root, "show", f"{commit}:shared/global/store.hpp")
    if not os.path.exists(deb_link):
        print(f"install: building the .deb of {ref} ({commit[:12]}): not cached", flush=True)
        build_old(root, build, commit, cache)
    else:
        print(f"install: the .deb of {ref} ({commit[:12]}) from the cache", flush=True)
    return os.path.realpath(deb_link), guide, schema_version(store)


def build_old(root, build, commit, cache):
    work = os.path.join(build, "install-old", commit[:12])
    src = os.path.join(work, "src")
    obj = os.path.join(src, "build")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(src)
    archive = subprocess.Popen(["git", "-C", root, "archive", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", src], stdin=archive.stdout, check=True)
    assert archive.wait() == 0, "git archive failed"
    version = re.search(r"project\(\w+\s+VERSION\s+([0-9.]+)",
                        open(os.path.join(src, "CMakeLists.txt")).read()).group(1)
    launcher = []
    if shutil.which("ccache"):
        launcher = ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache", "-DCMAKE_C_COMPILER_LAUNCHER=ccache"]
    # Debug with its flags emptied: -O0 and no -g (the old CMakeLists adds _FORTIFY_SOURCE,
    # which needs optimisation, only outside Debug). No -Werror: the commit was checked with
    # its own flags when it landed; -O0 only changes which warnings GCC can see. Unity batches
    # even for commits older than MX_UNITY_BUILD (old_unity.cmake).
    hook = os.path.join(os.path.dirname(os.path.abspath(__file__)), "old_unity.cmake")
    mach.sh(["cmake", "-S", src, "-B", obj, "-DCMAKE_BUILD_TYPE=Debug",
             "-DCMAKE_CXX_FLAGS_DEBUG=", "-DCMAKE_C_FLAGS_DEBUG=",
             f"-DCMAKE_PROJECT_INCLUDE={hook}",
             "-DMX_WERROR=OFF", "-DBUILD_TESTING=OFF", *launcher], timeout=600)
    mach.sh(["cmake", "--build", obj, f"-j{os.cpu_count() or 2}"], timeout=3600)
    p = mach.sh(["cpack", "-G", "DEB", "-D", f"CPACK_DEBIAN_PACKAGE_VERSION={version}~upgradebase"],
                cwd=obj, timeout=1800)
    deb = re.search(r"package: (\S+\.deb) generated", p.stdout).group(1)
    os.makedirs(cache, exist_ok=True)
    shutil.copy(deb, cache)
    shutil.copy(os.path.join(src, "docs/admin-guide.md"), os.path.join(cache, "admin-guide.md"))
    tmp = os.path.join(cache, "mx-connector.deb.tmp")
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(os.path.basename(deb), tmp)
    os.rename(tmp, os.path.join(cache, "mx-connector.deb"))  # the cache entry is complete
    shutil.rmtree(work, ignore_errors=True)
