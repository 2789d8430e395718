#include "parse_worker.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <spdlog/spdlog.h>

namespace mx::importer {
namespace {

constexpr auto json_replace = nlohmann::json::error_handler_t::replace;

std::string hex(const unsigned char* p, std::size_t n) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    s.reserve(n * 2);
    for (std::size_t i = 0; i < n; ++i) {
        s.push_back(digits[p[i] >> 4]);
        s.push_back(digits[p[i] & 15]);
    }
    return s;
}

std::string sha256(std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("EVP_Digest failed");
    return hex(md, len);
}

bool write_all(int fd, std::string_view s) {
    while (!s.empty()) {
        ssize_t n = ::write(fd, s.data(), s.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        s.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

struct fd_closer {
    int fd;
    ~fd_closer() {
        if (fd >= 0) ::close(fd);
    }
};

void fault_injection(std::string_view data) {
    const char* e = std::getenv("MX_IMPORTER_FAULT_INJECTION");
    if (!e || std::string_view(e) != "1") return;
    auto head = data.substr(0, std::min<std::size_t>(data.size(), 64 * 1024));
    if (head.find("X-Mx-Test-Fault: crash") != std::string_view::npos) ::abort();
    if (head.find("X-Mx-Test-Fault: hang") != std::string_view::npos)
        for (;;) ::pause();
}

}  // namespace

nlohmann::json analyse_file(const std::string& path, const parse_limits& limits,
                            bool envelope_only) {
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return {{"ok", false},
                {"errno", errno},
                {"error", std::string("open: ") + std::strerror(errno)}};
    fd_closer g{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        return {{"ok", false},
                {"errno", errno},
                {"error", std::string("fstat: ") + std::strerror(errno)}};
    if (!S_ISREG(st.st_mode))
        return {{"ok", false}, {"errno", EINVAL}, {"error", "not a regular file"}};
    std::string_view data;
    void* map = nullptr;
    std::size_t size = static_cast<std::size_t>(st.st_size);
    // Small files: one read() into a reused buffer (cheaper than mmap/munmap per message).
    static std::string small;
    if (size > 0 && size <= 1024 * 1024) {
        small.resize(size);
        std::size_t got = 0;
        while (got < size) {
            ssize_t n = ::read(fd, small.data() + got, size - got);
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n < 0)
                return {{"ok", false},
                        {"errno", errno},
                        {"error", std::string("read: ") + std::strerror(errno)}};
            if (n == 0) break;  // truncated meanwhile: parse what is there
            got += static_cast<std::size_t>(n);
        }
        size = got;
        data = std::string_view(small.data(), got);
    } else if (size > 0) {
        map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED)
            return {{"ok", false},
                    {"errno", errno},
                    {"error", std::string("mmap: ") + std::strerror(errno)}};
        ::madvise(map, size, MADV_SEQUENTIAL);
        data = std::string_view(static_cast<const char*>(map), size);
    }
    if (!envelope_only) fault_injection(data);
    message_info info;
    if (envelope_only) {
        auto h = scan_headers(data, limits);
        info.env = extract_envelope(h, limits);
        info.has_header_block = !h.fields.empty();
        info.note = "envelope only";
    } else {
        info = analyse_message(data, limits);
    }
    nlohmann::json reply = {{"ok", true},
                            {"size", size},
                            {"mtime", static_cast<std::int64_t>(st.st_mtime)},
                            {"fingerprint", sha256(data)},
                            {"info", to_json(info)}};
    if (map) ::munmap(map, size);
    return reply;
}

int parse_worker_main(int in_fd, int out_fd, const parse_limits& limits) {
    std::string buf;
    char chunk[65536];
    for (;;) {
        std::size_t nl;
        while ((nl = buf.find('\n')) == std::string::npos) {
            ssize_t n = ::read(in_fd, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return 0;
            buf.append(chunk, static_cast<std::size_t>(n));
        }
        std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        nlohmann::json reply;
        try {
            auto req = nlohmann::json::parse(line);
            reply = analyse_file(req.at("path").get<std::string>(), limits,
                                 req.value("envelope_only", false));
        } catch (const std::exception& e) {
            // A parser exception is an answer too (the message is unparseable), not a crash.
            reply = {{"ok", true}, {"exception", e.what()}};
        }
        if (!write_all(out_fd, reply.dump(-1, ' ', false, json_replace) + "\n")) return 1;
    }
}

parse_worker::parse_worker(worker_options opts) : opts_(std::move(opts)) {
    start();
}

parse_worker::~parse_worker() noexcept {
    stop();
}

void parse_worker::start() {
    int req[2], rep[2];
    if (::pipe2(req, O_CLOEXEC) != 0)
        throw std::system_error(errno, std::generic_category(), "pipe2");
    if (::pipe2(rep, O_CLOEXEC) != 0) {
        int e = errno;
        ::close(req[0]);
        ::close(req[1]);
        throw std::system_error(e, std::generic_category(), "pipe2");
    }
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
        int e = errno;
        for (int fd : {req[0], req[1], rep[0], rep[1]}) ::close(fd);
        throw std::system_error(e, std::generic_category(), "fork");
    }
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(1);
        ::dup2(req[0], 0);
        ::dup2(rep[1], 1);
        ::close_range(3, ~0U, 0);
        // Default dispositions: a crash must end this process, whatever the parent installed
        // (test frameworks catch SIGSEGV/SIGABRT; the daemon ignores SIGPIPE).
        for (int sig : {SIGPIPE, SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE, SIGTERM, SIGINT})
            ::signal(sig, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        struct rlimit rl {
            opts_.memory_limit, opts_.memory_limit
        };
        ::setrlimit(RLIMIT_AS, &rl);
        struct rlimit core {
            0, 0
        };
        ::setrlimit(RLIMIT_CORE, &core);
        if (!opts_.exec_path.empty()) {
            std::string hb = std::to_string(opts_.limits.max_header_bytes);
            const char* argv[] = {opts_.exec_path.c_str(), "--parse-worker", "--max-header-bytes",
                                  hb.c_str(), nullptr};
            ::execv(opts_.exec_path.c_str(), const_cast<char* const*>(argv));
            ::_exit(127);
        }
        ::_exit(parse_worker_main(0, 1, opts_.limits));
    }
    ::close(req[0]);
    ::close(rep[1]);
    ::signal(SIGPIPE, SIG_IGN);  // a dead worker is seen as EOF/EPIPE, never a fatal signal
    pid_ = pid;
    to_worker_ = req[1];
    from_worker_ = rep[0];
    rbuf_.clear();
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
                                                    bool envelope_only) {
    std::vector<parse_result> results(paths.size());
    std::size_t next_send = 0, next_reply = 0;
    std::string wbuf;
    using clock = std::chrono::steady_clock;
    auto deadline_for = [&](std::size_t i) {
        std::uint64_t mb = i < sizes.size() ? sizes[i] >> 20 : 0;
        return clock::now() + opts_.base_timeout + opts_.timeout_per_mb * static_cast<long>(mb);
    };
    auto deadline = deadline_for(0);
    auto restart_after_failure = [&](parse_result::status st, const std::string& why) {
        stop();
        ++restarts_;
        results[next_reply].st = st;
        results[next_reply].error = why;
        ++next_reply;
        next_send = next_reply;  // re-send everything after the culprit
        wbuf.clear();
        start();
        deadline = deadline_for(next_reply);
    };
    while (next_reply < paths.size()) {
        // Keep a bounded number of requests in flight so neither pipe can fill up both ways.
        while (next_send < paths.size() && next_send - next_reply < 64 && wbuf.size() < 32768) {
            wbuf += nlohmann::json{{"path", paths[next_send].string()},
                                   {"envelope_only", envelope_only}}
                        .dump(-1, ' ', false, json_replace) +
                    "\n";
            ++next_send;
        }
        struct pollfd pfd[2] = {{from_worker_, POLLIN, 0}, {to_worker_, POLLOUT, 0}};
        int nfds = wbuf.empty() ? 1 : 2;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
        if (left.count() <= 0) {
            spdlog::warn("parse worker {} timed out on {}; restarting it", pid_,
                         paths[next_reply].string());
            restart_after_failure(parse_result::status::timeout, "parser timed out");
            continue;
        }
        int rc = ::poll(pfd, static_cast<nfds_t>(nfds),
                        static_cast<int>(std::min<long>(left.count(), 1000)));
        if (rc < 0 && errno != EINTR)
            throw std::system_error(errno, std::generic_category(), "poll");
        if (rc <= 0) continue;
        if (nfds == 2 && (pfd[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = ::write(to_worker_, wbuf.data(), wbuf.size());
            if (n > 0)
                wbuf.erase(0, static_cast<std::size_t>(n));
            else if (n < 0 && errno != EINTR && errno != EAGAIN) {
                // EPIPE: the worker is gone; the read side reports it.
                wbuf.clear();
            }
        }
        if (pfd[0].revents & (POLLIN | POLLERR | POLLHUP)) {
            char chunk[65536];
            ssize_t n = ::read(from_worker_, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                int st = 0;
                ::waitpid(pid_, &st, 0);
                std::string why =
                    WIFSIGNALED(st)
                        ? "parser crashed (signal " + std::to_string(WTERMSIG(st)) + ")"
                        : "parser exited with status " + std::to_string(WEXITSTATUS(st));
                spdlog::warn("parse worker {} died on {}: {}; restarting it", pid_,
                             paths[next_reply].string(), why);
                pid_ = -1;
                restart_after_failure(parse_result::status::crashed, why);
                continue;
            }
            rbuf_.append(chunk, static_cast<std::size_t>(n));
            std::size_t nl;
            while (next_reply < paths.size() && (nl = rbuf_.find('\n')) != std::string::npos) {
                auto& r = results[next_reply];
                try {
                    auto j = nlohmann::json::parse(std::string_view(rbuf_).substr(0, nl));
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
                        r.info = message_info_from_json(j.at("info"));
                    }
                } catch (const std::exception& e) {
                    r.st = parse_result::status::crashed;
                    r.error = std::string("bad reply from parser: ") + e.what();
                }
                rbuf_.erase(0, nl + 1);
                ++next_reply;
                if (next_reply < paths.size()) deadline = deadline_for(next_reply);
            }
        }
    }
    return results;
}

}  // namespace mx::importer
