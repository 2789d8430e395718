#include "util/spawn.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mx::util {
namespace {

constexpr std::size_t max_output = 1u << 20;

// The child's side: async-signal-safe calls only (the caller may have threads).
[[noreturn]] void exec_child(const std::vector<char*>& args, const run_options& o, int out_fd,
                             int err_fd) {
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    if (o.uid) {
        if (::setgroups(o.groups.size(), o.groups.data()) != 0 || ::setgid(o.gid) != 0 ||
            ::setuid(*o.uid) != 0)
            _exit(126);
    }
    if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) != 0) _exit(127);
    ::execvp(args[0], args.data());
    _exit(127);
}

// Reads both pipes until both are closed or the deadline passes; false on timeout.
bool collect(int out_fd, int err_fd, std::chrono::steady_clock::time_point deadline,
             run_result& r) {
    pollfd p[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    std::string* sink[2] = {&r.out, &r.err};
    int open_count = 2;
    char buf[4096];
    while (open_count > 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) return false;
        int n = ::poll(p, 2, static_cast<int>(left));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) continue;
        for (int i = 0; i < 2; ++i) {
            if (p[i].fd < 0 || p[i].revents == 0) continue;
            ssize_t got = ::read(p[i].fd, buf, sizeof buf);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                p[i].fd = -1;
                --open_count;
                continue;
            }
            if (sink[i]->size() < max_output) sink[i]->append(buf, static_cast<std::size_t>(got));
        }
    }
    return true;
}

}  // namespace

run_result run_program(const std::vector<std::string>& argv, const run_options& o) {
    run_result r;
    if (argv.empty()) {
        r.error = "nothing to run";
        return r;
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
        r.error = std::string("pipe2: ") + std::strerror(errno);
        return r;
    }
    if (::pipe2(err, O_CLOEXEC) != 0) {
        r.error = std::string("pipe2: ") + std::strerror(errno);
        ::close(out[0]);
        ::close(out[1]);
        return r;
    }
    pid_t pid = ::fork();
    if (pid == 0) exec_child(args, o, out[1], err[1]);
    ::close(out[1]);
    ::close(err[1]);
    if (pid < 0) {
        r.error = std::string("fork: ") + std::strerror(errno);
        ::close(out[0]);
        ::close(err[0]);
        return r;
    }
    bool done = collect(out[0], err[0], std::chrono::steady_clock::now() + o.timeout, r);
    if (!done) {
        ::kill(pid, SIGKILL);
        r.timed_out = true;
    }
    ::close(out[0]);
    ::close(err[0]);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (done && WIFEXITED(st)) r.status = WEXITSTATUS(st);
    if (r.status == 127 && r.error.empty()) r.error = argv[0] + ": cannot run";
    return r;
}

}  // namespace mx::util
