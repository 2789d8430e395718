// parse_worker: the daemon's side of parse_worker.hpp — starting (and restarting) the worker
// process, sending it one open file per request, matching its replies to the files in order,
// and the timeouts. The worker's own side lives in parse_worker_child.cpp.
#include "parse_worker.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <system_error>

#include <spdlog/spdlog.h>

#include "util/fd_passing.hpp"
#include "util/sanitizers.hpp"

namespace mx::importer {
namespace {

// One message for several files: the mode byte, then (size, mtime) per file, the fds as one
// SCM_RIGHTS (see parse_worker.hpp).
bool send_request(int sock, const std::vector<int>& fds, const std::vector<std::uint64_t>& sizes,
                  const std::vector<std::int64_t>& mtimes, bool envelope_only) {
    char body[1 + 16 * max_fds_per_request];
    body[0] = envelope_only ? 'e' : 'f';
    for (std::size_t i = 0; i < fds.size(); ++i) {
        std::memcpy(body + 1 + 16 * i, &sizes[i], 8);
        std::memcpy(body + 1 + 16 * i + 8, &mtimes[i], 8);
    }
    return util::send_fds(sock, body, 1 + 16 * fds.size(), fds.data(), fds.size(), MSG_DONTWAIT) >=
           0;
}

std::string describe_exit(int st) {
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS)
        return "parser killed by the sandbox (forbidden system call, signal " +
               std::to_string(SIGSYS) + ")";
    if (WIFSIGNALED(st)) return "parser crashed (signal " + std::to_string(WTERMSIG(st)) + ")";
    return "parser exited with status " + std::to_string(WEXITSTATUS(st));
}

// The startup log says whether hostile mail is parsed in the sandbox; said again only when
// that changes.
void log_sandbox_state(bool wanted, bool active, const std::string& error, int syscalls) {
    static std::atomic<int> last{-1};
    int state = !wanted ? 0 : active ? 1 : 2;
    if (last.exchange(state) == state) return;
    if (state == 1)
        spdlog::info(
            "parse worker sandbox active: seccomp-bpf, {} system calls allowed (no open, "
            "socket or exec; anything else kills the worker)",
            syscalls);
    else if (state == 2)
        spdlog::error(
            "parse worker sandbox NOT active ({}): hostile mail is parsed without a seccomp "
            "filter",
            error);
    else
        spdlog::warn("parse worker sandbox disabled: hostile mail is parsed without a filter");
}

// One reply line of the worker (see parse_worker.hpp for its forms).
parse_result decode_reply(std::string_view line) {
    parse_result r;
    try {
        auto j = nlohmann::json::parse(line);
        if (!j.value("ok", false)) {
            r.st = parse_result::status::io_error;
            r.err = j.value("errno", 0);
            r.error = j.value("error", "");
        } else if (j.contains("exception")) {
            r.st = parse_result::status::crashed;
            r.error = "parser error: " + j.value("exception", "");
        } else {
            r.st = parse_result::status::ok;
            r.size = j.value("size", std::uint64_t{0});
            r.mtime = j.value("mtime", std::int64_t{0});
            r.fingerprint = j.value("fingerprint", "");
            r.info = message_info_from_json(std::move(j.at("info")));
        }
    } catch (const std::exception& e) {
        r.st = parse_result::status::crashed;
        r.error = std::string("bad reply from parser: ") + e.what();
    }
    return r;
}

}  // namespace

void parse_process_exec::run() const noexcept {
    ::execv(path_.c_str(), const_cast<char* const*>(argv_));
    ::_exit(127);
}

void become_worker_process(pid_t parent, int request_fd, int reply_fd, std::uint64_t memory_limit) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);  // the parent died before the line above
    ::dup2(request_fd, 0);
    ::dup2(reply_fd, 1);
    ::close_range(3, ~0U, 0);
    reset_worker_process(memory_limit);
}

void reset_worker_process(std::uint64_t memory_limit) {
    for (int sig : {SIGPIPE, SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE, SIGTERM, SIGINT, SIGSYS})
        ::signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct rlimit rl {
        memory_limit, memory_limit
    };
    if (util::address_space_limit_usable) ::setrlimit(RLIMIT_AS, &rl);
    struct rlimit core {
        0, 0
    };
    ::setrlimit(RLIMIT_CORE, &core);
}

// ---- worker_factory (see parse_worker.hpp) ---------------------------------------------------

namespace {

// Waits up to `ms` for one SOCK_SEQPACKET message on sock; its length, 0 at EOF, -1 on error or
// timeout.
ssize_t recv_within(int sock, void* buf, std::size_t size, int ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) return -1;
        struct pollfd p {
            sock, POLLIN, 0
        };
        int rc = ::poll(&p, 1, static_cast<int>(left));
        if (rc < 0 && errno == EINTR) continue;
        if (rc <= 0) return -1;
        ssize_t n = ::recv(sock, buf, size, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        return n;
    }
}

}  // namespace

worker_factory::worker_factory(worker_options opts) : opts_(std::move(opts)) {
    opts_.factory.reset();
    std::lock_guard lk(mu_);
    start_or_give_up();
}

bool worker_factory::start_or_give_up() {
    // Twice: one killed while it prepared itself is no reason to exec every worker.
    if (start() || start()) return true;
    usable_ = false;
    spdlog::warn("parse worker factory unusable: each parse worker is exec'd and prepares itself");
    return false;
}

void worker_factory::lost() noexcept {
    int st = 0;
    if (pid_ > 0 && ::waitpid(pid_, &st, WNOHANG) == pid_) {
        spdlog::warn("parse worker factory ended ({}); starting it again",
                     WIFSIGNALED(st) ? "signal " + std::to_string(WTERMSIG(st))
                                     : "status " + std::to_string(WEXITSTATUS(st)));
        pid_ = -1;
    }
    stop();
}

worker_factory::~worker_factory() noexcept {
    std::lock_guard lk(mu_);
    stop();
}

std::uint64_t worker_factory::spawned() const {
    std::lock_guard lk(mu_);
    return spawned_;
}

std::uint64_t worker_factory::renewed() const {
    std::lock_guard lk(mu_);
    return renewed_;
}

pid_t worker_factory::pid() const {
    std::lock_guard lk(mu_);
    return pid_;
}

bool worker_factory::start() {
    if (opts_.exec_path.empty()) return false;
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return false;
    parse_process_exec factory(opts_.exec_path, "--parse-worker-factory",
                               opts_.limits.max_header_bytes, opts_.sandbox);
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
        ::close(sv[0]);
        ::close(sv[1]);
        return false;
    }
    if (pid == 0) {
        // No PR_SET_PDEATHSIG here: the factory ends at EOF on its socket (the daemon's end
        // closes when the daemon ends, however it ends), and only its workers need one.
        if (::getppid() != parent) ::_exit(1);
        ::dup2(sv[1], 0);
        ::close_range(3, ~0U, 0);
        reset_worker_process(opts_.memory_limit);
        factory.run();
    }
    ::close(sv[1]);
    pid_ = pid;
    sock_ = sv[0];
    return await_hello();
}

bool worker_factory::await_hello() {
    // Prepared, and single-threaded (else forking it is not safe). False (and the factory
    // stopped) when it cannot say so.
    char hello[256];
    ssize_t n = recv_within(sock_, hello, sizeof hello - 1, 30000);
    int threads = 0;
    if (n > 0) {
        try {
            threads = nlohmann::json::parse(std::string_view(hello, static_cast<std::size_t>(n)))
                          .value("threads", 0);
        } catch (const std::exception&) {
        }
    }
    if (threads != 1) {
        spdlog::warn("parse worker factory not ready: {}",
                     n <= 0 ? "no hello" : "it runs " + std::to_string(threads) + " threads");
        stop();
        return false;
    }
    return true;
}

void worker_factory::stop() noexcept {
    if (sock_ >= 0) ::close(sock_);
    sock_ = -1;
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        int st;
        while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
        }
    }
    pid_ = -1;
}

pid_t worker_factory::spawn(int request_fd, int reply_fd, bool renew) {
    std::lock_guard lk(mu_);
    for (int attempt = 0; usable_ && attempt < 2; ++attempt) {
        if (pid_ < 0) {
            // Started again only by its owner thread: a worker's parent-death signal follows
            // the thread that started the factory.
            if (std::this_thread::get_id() != owner_ || !start_or_give_up()) return -1;
            renew = false;  // a new exec: new layout already
        }
        if (renew) {
            // The same process execs itself again (its parent, so the workers' parent-death
            // thread, stays the same): a new address-space layout, prepared anew.
            ssize_t n;
            do {
                n = ::send(sock_, "R", 1, MSG_NOSIGNAL);
            } while (n < 0 && errno == EINTR);
            if (n != 1 || !await_hello()) {
                lost();  // the next attempt starts a new one
                continue;
            }
            ++renewed_;
            renew = false;
        }
        std::uint64_t limit = opts_.memory_limit;
        int fds[2] = {request_fd, reply_fd};
        ssize_t n = util::send_fds(sock_, &limit, sizeof limit, fds, 2, 0);
        std::int32_t answer = 0;
        if (n > 0 && recv_within(sock_, &answer, sizeof answer, 10000) ==
                         static_cast<ssize_t>(sizeof answer)) {
            if (answer > 0) {
                ++spawned_;
                return static_cast<pid_t>(answer);
            }
            spdlog::warn("parse worker factory could not fork: {}", std::strerror(-answer));
            return -1;
        }
        lost();
    }
    return -1;
}

parse_worker::parse_worker(worker_options opts, bool wait) : opts_(std::move(opts)) {
    spawn();
    if (wait) await_hello();
}

void parse_worker::ready() {
    if (hello_pending_) await_hello();
}

parse_worker::~parse_worker() noexcept {
    stop();
}

void parse_worker::spawn() {
    // Fork mode: the child inherits the prepared state instead of preparing it every restart.
    if (opts_.exec_path.empty()) prepare_worker_once(opts_.limits);
    int req[2], rep[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, req) != 0)
        throw std::system_error(errno, std::generic_category(), "socketpair");
    if (::pipe2(rep, O_CLOEXEC) != 0) {
        int e = errno;
        ::close(req[0]);
        ::close(req[1]);
        throw std::system_error(e, std::generic_category(), "pipe2");
    }
    // After a crash or a hang (an exploit's attempt, perhaps) the factory renews itself first:
    // the next worker does not share the failed one's address-space layout.
    pid_t pid = opts_.factory ? opts_.factory->spawn(req[1], rep[1], after_failure_) : -1;
    after_failure_ = false;
    if (pid > 0) {
        adopt(pid, req, rep);
        return;
    }
    parse_process_exec worker(opts_.exec_path, "--parse-worker", opts_.limits.max_header_bytes,
                              opts_.sandbox);
    pid_t parent = ::getpid();
    pid = ::fork();
    if (pid < 0) {
        int e = errno;
        for (int fd : {req[0], req[1], rep[0], rep[1]}) ::close(fd);
        throw std::system_error(e, std::generic_category(), "fork");
    }
    if (pid == 0) {
        become_worker_process(parent, req[1], rep[1], opts_.memory_limit);
        if (!opts_.exec_path.empty()) worker.run();
        ::_exit(parse_worker_main(0, 1, opts_.limits, opts_.sandbox));
    }
    adopt(pid, req, rep);
}

void parse_worker::adopt(pid_t pid, const int req[2], const int rep[2]) {
    ::close(req[1]);
    ::close(rep[1]);
    ::signal(SIGPIPE, SIG_IGN);  // a dead worker is seen as EOF/EPIPE, never a fatal signal
    pid_ = pid;
    to_worker_ = req[0];
    from_worker_ = rep[0];
    rbuf_.clear();
    sandboxed_ = false;
    hello_pending_ = true;
}

void parse_worker::await_hello() {
    hello_pending_ = false;
    // The hello: the worker is prepared and (normally) inside its sandbox. One that cannot get
    // this far cannot parse anything: that is the caller's failure, not one file's.
    // A worker killed before its hello (the OOM killer, an operator) is replaced once: only
    // a second death in a row means it cannot start.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    bool replaced = false;
    std::size_t nl;
    while ((nl = rbuf_.find('\n')) == std::string::npos) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        struct pollfd pfd {
            from_worker_, POLLIN, 0
        };
        int rc = left.count() > 0 ? ::poll(&pfd, 1, static_cast<int>(left.count())) : 0;
        if (rc < 0 && errno == EINTR) continue;
        ssize_t n = 0;
        if (rc > 0) {
            char chunk[4096];
            n = ::read(from_worker_, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR) continue;
            if (n > 0) {
                rbuf_.append(chunk, static_cast<std::size_t>(n));
                continue;
            }
        }
        std::string why = rc == 0 ? "no answer within 30 s" : "it ended";
        if (rc != 0 && n <= 0) {
            int st = 0;
            if (::waitpid(pid_, &st, 0) == pid_) why = describe_exit(st), pid_ = -1;
        }
        stop();
        if (rc != 0 && !replaced) {
            spdlog::warn("parse worker ended before it was ready ({}); starting another", why);
            replaced = true;
            after_failure_ = true;
            spawn();
            hello_pending_ = false;
            deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
            continue;
        }
        throw std::runtime_error("parse worker did not start: " + why);
    }
    try {
        auto j = nlohmann::json::parse(std::string_view(rbuf_).substr(0, nl));
        sandboxed_ = j.value("sandbox", false);
        log_sandbox_state(opts_.sandbox, sandboxed_, j.value("error", std::string()),
                          j.value("syscalls", 0));
    } catch (const std::exception& e) {
        stop();
        throw std::runtime_error(std::string("parse worker did not start: bad hello: ") + e.what());
    }
    rbuf_.erase(0, nl + 1);
}

void parse_worker::stop() noexcept {
    if (to_worker_ >= 0) ::close(to_worker_);
    if (from_worker_ >= 0) ::close(from_worker_);
    to_worker_ = from_worker_ = -1;
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        int st;
        while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
        }
    }
    pid_ = -1;
}

parse_result parse_worker::parse(const std::filesystem::path& path, std::uint64_t size_hint,
                                 bool envelope_only) {
    return parse_batch({path}, {size_hint}, envelope_only).front();
}

std::vector<parse_result> parse_worker::parse_batch(const std::vector<std::filesystem::path>& paths,
                                                    const std::vector<std::uint64_t>& sizes,
                                                    bool envelope_only,
                                                    const std::vector<std::int64_t>& mtimes) {
    ready();
    std::vector<parse_result> results(paths.size());
    std::size_t next_send = 0;
    std::deque<std::size_t> in_flight;  // sent, not answered yet, in order
    bool send_blocked = false;          // the socket was full: wait for POLLOUT
    using clock = std::chrono::steady_clock;
    // Sizes for the timeouts: the caller's hint, else fstat of the descriptor opened below
    // (no second path lookup per file).
    std::vector<std::uint64_t> size_of(paths.size());
    for (std::size_t i = 0; i < size_of.size() && i < sizes.size(); ++i) size_of[i] = sizes[i];
    auto deadline_for = [&](std::size_t i) {
        std::uint64_t mb = size_of[i] >> 20;
        return clock::now() + opts_.base_timeout + opts_.timeout_per_mb * static_cast<long>(mb);
    };
    clock::time_point deadline{};
    auto restart_after_failure = [&](parse_result::status st, const std::string& why, int sig) {
        stop();
        ++restarts_;
        if (!in_flight.empty()) {  // the request being worked on is the culprit
            std::size_t culprit = in_flight.front();
            results[culprit].st = st;
            results[culprit].error = why;
            results[culprit].term_signal = sig;
            next_send = culprit + 1;  // re-send everything after it
        }
        in_flight.clear();
        send_blocked = false;
        after_failure_ = true;
        start();
    };
    while (next_send < paths.size() || !in_flight.empty()) {
        // Keep a bounded number of requests (and so of fds) in flight. Each file is opened
        // here, by the parent, so the worker needs no right to open anything; up to
        // max_fds_per_request of them travel in one message.
        // A message is sent when a whole one fits (fewer, fuller messages).
        while (!send_blocked && next_send < paths.size() &&
               in_flight.size() + max_fds_per_request <= 64) {
            std::vector<int> fds;
            std::vector<std::size_t> idx;
            std::vector<std::uint64_t> req_sizes;
            std::vector<std::int64_t> req_mtimes;
            std::size_t i = next_send;
            for (; i < paths.size() && fds.size() < max_fds_per_request; ++i) {
                int fd = ::open(paths[i].c_str(),
                                O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
                if (fd < 0) {
                    int e = errno;
                    results[i] = {};
                    results[i].st = parse_result::status::io_error;
                    results[i].err = e;
                    results[i].error = std::string("open: ") + std::strerror(e);
                    continue;
                }
                if (size_of[i] == 0) {
                    struct stat sb {};
                    if (::fstat(fd, &sb) == 0) size_of[i] = static_cast<std::uint64_t>(sb.st_size);
                }
                fds.push_back(fd);
                idx.push_back(i);
                req_sizes.push_back(size_of[i]);
                req_mtimes.push_back(i < mtimes.size() ? mtimes[i] : 0);
            }
            if (fds.empty()) {  // everything tried failed to open
                next_send = i;
                continue;
            }
            bool sent = send_request(to_worker_, fds, req_sizes, req_mtimes, envelope_only);
            int e = errno;
            for (int fd : fds) ::close(fd);  // the worker has its own copies now
            if (!sent) {
                // EAGAIN: full, wait. EPIPE and the like: the worker is gone, the read side
                // sees the EOF and restarts it. Opened again when sent again.
                next_send = idx.front();
                send_blocked = true;
                if (e != EAGAIN && e != EWOULDBLOCK && in_flight.empty()) {
                    int st = 0;
                    ::waitpid(pid_, &st, 0);
                    pid_ = -1;
                    spdlog::warn("parse worker died while idle ({}); restarting it",
                                 describe_exit(st));
                    restart_after_failure(parse_result::status::crashed, "", 0);
                }
                break;
            }
            if (in_flight.empty()) deadline = deadline_for(idx.front());
            for (auto k : idx) in_flight.push_back(k);
            next_send = i;
        }
        if (in_flight.empty()) {  // everything left failed to open, or the worker restarted
            if (send_blocked) {
                struct pollfd out {
                    to_worker_, POLLOUT, 0
                };
                ::poll(&out, 1, 1000);
                send_blocked = false;
            }
            continue;
        }
        struct pollfd pfd[2] = {{from_worker_, POLLIN, 0}, {to_worker_, POLLOUT, 0}};
        nfds_t nfds = send_blocked ? 2 : 1;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
        if (left.count() <= 0) {
            spdlog::warn("parse worker {} timed out on {}; restarting it", pid_,
                         paths[in_flight.front()].string());
            restart_after_failure(parse_result::status::timeout, "parser timed out", 0);
            continue;
        }
        int rc = ::poll(pfd, nfds, static_cast<int>(std::min<long>(left.count(), 1000)));
        if (rc < 0 && errno != EINTR)
            throw std::system_error(errno, std::generic_category(), "poll");
        if (rc <= 0) continue;
        if (nfds == 2 && (pfd[1].revents & (POLLOUT | POLLERR | POLLHUP))) send_blocked = false;
        if (pfd[0].revents & (POLLIN | POLLERR | POLLHUP)) {
            char chunk[65536];
            ssize_t n = ::read(from_worker_, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                int st = 0;
                ::waitpid(pid_, &st, 0);
                std::string why = describe_exit(st);
                spdlog::warn("parse worker {} died on {}: {}; restarting it", pid_,
                             paths[in_flight.front()].string(), why);
                pid_ = -1;
                restart_after_failure(parse_result::status::crashed, why,
                                      WIFSIGNALED(st) ? WTERMSIG(st) : 0);
                continue;
            }
            rbuf_.append(chunk, static_cast<std::size_t>(n));
            std::size_t nl;
            while (!in_flight.empty() && (nl = rbuf_.find('\n')) != std::string::npos) {
                results[in_flight.front()] = decode_reply(std::string_view(rbuf_).substr(0, nl));
                rbuf_.erase(0, nl + 1);
                in_flight.pop_front();
                if (!in_flight.empty()) deadline = deadline_for(in_flight.front());
            }
        }
    }
    return results;
}

}  // namespace mx::importer