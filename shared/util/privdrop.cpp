#include "util/privdrop.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <vector>

namespace mx::util {
namespace {

[[noreturn]] void fail(const char* call, const std::string& who) {
    throw std::system_error(errno, std::generic_category(), std::string(call) + " (" + who + ")");
}

[[noreturn]] void fail_check(const std::string& what) {
    throw std::system_error(EPERM, std::generic_category(), "privilege drop not complete: " + what);
}

bool write_all(int fd, const std::string& s) {
    const char* p = s.data();
    std::size_t left = s.size();
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        left -= static_cast<std::size_t>(n);
    }
    return true;
}

// Fills a.groups (what initgroups() would set): permission checks on behalf of an account
// need its supplementary groups too.
account with_groups(account a) {
    int n = 32;
    std::vector<gid_t> g(static_cast<std::size_t>(n));
    while (::getgrouplist(a.name.c_str(), a.gid, g.data(), &n) < 0) {
        if (n <= static_cast<int>(g.size())) n = static_cast<int>(g.size()) * 2;
        g.resize(static_cast<std::size_t>(n));
    }
    g.resize(static_cast<std::size_t>(n));
    a.groups = std::move(g);
    return a;
}

}  // namespace

std::optional<account> lookup_account(const std::string& name) {
    long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
    std::vector<char> buf(size > 0 ? static_cast<std::size_t>(size) : 16384);
    passwd pw{};
    passwd* res = nullptr;
    while (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &res) == ERANGE)
        buf.resize(buf.size() * 2);
    if (!res) return std::nullopt;
    return with_groups(account{pw.pw_name, pw.pw_uid, pw.pw_gid, {}});
}

std::optional<account> lookup_uid(uid_t uid) {
    long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
    std::vector<char> buf(size > 0 ? static_cast<std::size_t>(size) : 16384);
    passwd pw{};
    passwd* res = nullptr;
    while (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) == ERANGE)
        buf.resize(buf.size() * 2);
    if (!res) return std::nullopt;
    return with_groups(account{pw.pw_name, pw.pw_uid, pw.pw_gid, {}});
}

namespace {
std::atomic<long long> cached_euid{-1};
}  // namespace

uid_t effective_uid() noexcept {
    long long v = cached_euid.load(std::memory_order_relaxed);
    if (v < 0) {
        v = static_cast<long long>(::geteuid());
        cached_euid.store(v, std::memory_order_relaxed);
    }
    return static_cast<uid_t>(v);
}

void drop_privileges(const account& a) {
    // Forgotten before and after the switch (also when it throws half-way).
    cached_euid.store(-1, std::memory_order_relaxed);
    struct forget {
        ~forget() { cached_euid.store(-1, std::memory_order_relaxed); }
    } forget_after;
    if (::geteuid() != 0 && ::getuid() == a.uid && ::geteuid() == a.uid && ::getgid() == a.gid)
        return;  // already that account (started by hand as it)
    if (::initgroups(a.name.c_str(), a.gid) != 0) fail("initgroups", a.name);
    if (::setgid(a.gid) != 0) fail("setgid", a.name);
    if (::setuid(a.uid) != 0) fail("setuid", a.name);
    // Verify rather than trust: all three uids and gids, and no way back.
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (::getresuid(&ru, &eu, &su) != 0) fail("getresuid", a.name);
    if (::getresgid(&rg, &eg, &sg) != 0) fail("getresgid", a.name);
    if (ru != a.uid || eu != a.uid || su != a.uid) fail_check("uids are not all " + a.name);
    if (rg != a.gid || eg != a.gid || sg != a.gid) fail_check("gids are not all " + a.name);
    if (a.uid != 0 && (::setuid(0) == 0 || ::seteuid(0) == 0))
        fail_check("setuid(0) succeeded after the switch");
    if (a.gid != 0 && a.uid != 0 && (::setgid(0) == 0 || ::setegid(0) == 0))
        fail_check("setgid(0) succeeded after the switch");
}

std::string run_as(const account& a, const std::function<std::string()>& fn) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) fail("pipe2", a.name);
    pid_t pid = ::fork();
    if (pid < 0) {
        int e = errno;
        ::close(p[0]);
        ::close(p[1]);
        errno = e;
        fail("fork", a.name);
    }
    if (pid == 0) {
        ::close(p[0]);
        // First byte: 'o' result follows, 'e' error text follows.
        int rc = 0;
        try {
            drop_privileges(a);
            std::string out = fn();
            rc = write_all(p[1], "o" + out) ? 0 : 1;
        } catch (const std::exception& e) {
            (void)write_all(p[1], std::string("e") + e.what());
            rc = 1;
        } catch (...) {
            (void)write_all(p[1], "eunknown error");
            rc = 1;
        }
        ::_exit(rc);  // no atexit handlers, no flushing of the parent's stdio buffers twice
    }
    ::close(p[1]);
    std::string got;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(p[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
    }
    ::close(p[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!got.empty() && got.front() == 'e') throw run_as_error(got.substr(1));
    if (WIFSIGNALED(status))
        throw run_as_error("child running as " + a.name + " killed by signal " +
                           std::to_string(WTERMSIG(status)));
    if (got.empty() || got.front() != 'o' || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw run_as_error("child running as " + a.name + " failed");
    return got.substr(1);
}

}  // namespace mx::util
