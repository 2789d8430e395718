// target_exec: "exec:/absolute/command ARGS" — runs the command once per (message, recipient)
// with the message on stdin and the envelope in the environment, like Postfix pipe(8).
//
// No shell: the spec is split into argv by split_command() (quotes, backslashes; nothing is
// expanded). The child gets its own process group, stdin = the claimed file, stdout and
// stderr = one pipe we read (bounded), every other descriptor closed, default signal
// dispositions, and a fixed environment. It runs as the daemon's user (mx-importer drops
// privileges at start-up). On timeout the whole group gets SIGTERM, then SIGKILL.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include <spdlog/spdlog.h>

#include "global/logging.hpp"
#include "message_parse.hpp"
#include "target_http.hpp"

namespace mx::importer {
namespace {

std::string env_safe(std::string_view v) {
    std::string out;
    for (unsigned char c : v)
        if (c >= 0x20 && c != 0x7f) out.push_back(static_cast<char>(c));
    return out.substr(0, 4096);
}

struct sysexit {
    int code;
    const char* name;
    const char* status;
};
// Postfix's sys_exits table (enhanced status per sysexits code).
constexpr sysexit sysexits[] = {
    {64, "EX_USAGE", "5.3.0"},     {65, "EX_DATAERR", "5.6.0"}, {66, "EX_NOINPUT", "5.3.0"},
    {67, "EX_NOUSER", "5.1.1"},    {68, "EX_NOHOST", "5.1.2"},  {69, "EX_UNAVAILABLE", "5.3.0"},
    {70, "EX_SOFTWARE", "5.3.0"},  {71, "EX_OSERR", "5.3.0"},   {72, "EX_OSFILE", "5.3.0"},
    {73, "EX_CANTCREAT", "5.2.0"}, {74, "EX_IOERR", "5.3.0"},   {75, "EX_TEMPFAIL", "4.3.0"},
    {76, "EX_PROTOCOL", "5.5.0"},  {77, "EX_NOPERM", "5.7.0"},  {78, "EX_CONFIG", "5.3.5"},
};

class exec_target final : public import_target {
  public:
    exec_target(const config& cfg, exec_options o, std::string spec)
        : cfg_(cfg), o_(std::move(o)), spec_(std::move(spec)), slot_dir_(cfg.run_dir / "targets") {}

    std::string describe() const override { return "exec:" + o_.argv[0]; }

    std::string plan(const delivery& d) override {
        return idempotency_key(d.fingerprint, d.recipient);
    }

    result deliver(const delivery& d, const std::string& planned, sync_set&) override {
        try {
            static std::atomic<bool> warned{false};
            if (::geteuid() == 0 && !warned.exchange(true))
                spdlog::warn(
                    "exec target {} runs as root: set `user` in the configuration so "
                    "mx-importer drops privileges",
                    log_safe(o_.argv[0]));
            auto env = environment(d, planned);
            bool bounded = true;
            auto slot = acquire_slot(slot_dir_, spec_, o_.concurrency, o_.timeout, bounded);
            if (!slot && bounded)
                return {result_kind::temporary,
                        "4.4.5",
                        "exec " + o_.argv[0] + ": all " + std::to_string(o_.concurrency) +
                            " slots stayed busy",
                        {}};
            auto out = run_command(o_.argv, env, d.source, o_.timeout, o_.max_output);
            auto r = classify_exit(out, "command " + reason_text(o_.argv[0], 200));
            if (r.kind == result_kind::imported) r.location = planned;
            return r;
        } catch (const std::exception& e) {
            return {result_kind::temporary,
                    "4.3.0",
                    "exec " + o_.argv[0] + ": " + reason_text(e.what()),
                    {}};
        }
    }

    // A command cannot be asked: run it again with the same MX_IDEMPOTENCY_KEY.
    bool delivered(const std::string&) override { return false; }

  private:
    std::vector<std::string> environment(const delivery& d, const std::string& key) const {
        std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8",
                                        "SHELL=/bin/sh"};
        auto add = [&](const char* k, std::string_view v) {
            env.push_back(std::string(k) + "=" + env_safe(v));
        };
        add("RECIPIENT", d.recipient);
        auto at = d.recipient.rfind('@');
        add("LOCAL", at == std::string::npos ? d.recipient : d.recipient.substr(0, at));
        add("DOMAIN", at == std::string::npos ? "" : d.recipient.substr(at + 1));
        if (d.info) {
            add("SENDER", d.info->env.sender);
            add("ORIGINAL_RECIPIENT", d.info->env.original_recipient.empty()
                                          ? d.recipient
                                          : d.info->env.original_recipient);
            add("MX_MESSAGE_ID", d.info->message_id);
            add("MX_QUEUE_ID", d.info->queue_id);
        }
        add("MX_MAILBOX", d.mailbox);
        add("MX_CONNECTOR", d.connector);
        add("MX_FINGERPRINT", d.fingerprint);
        add("MX_IDEMPOTENCY_KEY", key);
        add("MX_SIZE", std::to_string(d.size));
        add("MX_ARRIVAL", std::to_string(d.arrival));
        // Our own home, not root's: commands that need one get something harmless.
        add("HOME", "/");
        return env;
    }

    const config& cfg_;
    exec_options o_;
    std::string spec_;
    std::filesystem::path slot_dir_;
};

}  // namespace

std::vector<std::string> split_command(std::string_view s) {
    std::vector<std::string> out;
    std::string cur;
    bool in_word = false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == ' ' || c == '\t') {
            if (in_word) out.push_back(std::move(cur)), cur.clear(), in_word = false;
            continue;
        }
        if (c == '\n' || c == '\r' || c == '\0')
            throw target_error("exec command contains a line break or NUL");
        in_word = true;
        if (c == '\'') {
            auto end = s.find('\'', i + 1);
            if (end == std::string_view::npos) throw target_error("exec command: unterminated '");
            cur.append(s.substr(i + 1, end - i - 1));
            i = end;
        } else if (c == '"') {
            std::size_t j = i + 1;
            for (; j < s.size() && s[j] != '"'; ++j) {
                if (s[j] == '\\' && j + 1 < s.size() && (s[j + 1] == '"' || s[j + 1] == '\\')) ++j;
                cur.push_back(s[j]);
            }
            if (j >= s.size()) throw target_error("exec command: unterminated \"");
            i = j;
        } else if (c == '\\') {
            if (i + 1 >= s.size()) throw target_error("exec command ends with a backslash");
            cur.push_back(s[++i]);
        } else {
            cur.push_back(c);
        }
    }
    if (in_word) out.push_back(std::move(cur));
    if (out.empty()) throw target_error("exec target needs a command");
    return out;
}

exec_options parse_exec_spec(std::string_view rest, const config_reader& targets) {
    exec_options o;
    o.argv = split_command(rest);
    if (o.argv[0].empty() || o.argv[0][0] != '/')
        throw target_error("exec target needs an absolute command path, got '" +
                           reason_text(o.argv[0], 200) + "'");
    o.timeout = std::chrono::milliseconds(
        static_cast<std::int64_t>(targets.number("exec_timeout_seconds", 60, 1, 86400) * 1000));
    if (auto ms = targets.integer("exec_timeout_ms", 0, 0, 86400000); ms > 0)
        o.timeout = std::chrono::milliseconds(ms);
    o.max_output = static_cast<std::size_t>(targets.integer("exec_max_output", 4096, 64, 1 << 20));
    o.concurrency = static_cast<unsigned>(targets.integer("exec_concurrency", 4, 1, 1024));
    return o;
}

exec_outcome run_command(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                         const std::filesystem::path& stdin_path, std::chrono::milliseconds timeout,
                         std::size_t max_output) {
    exec_outcome out;
    // Everything the child needs is prepared before fork(): after it, only async-signal-safe
    // calls until execve (the daemon may have threads).
    std::vector<char*> av, ev;
    for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
    av.push_back(nullptr);
    for (const auto& e : env) ev.push_back(const_cast<char*>(e.c_str()));
    ev.push_back(nullptr);

    int in = ::open(stdin_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0) {
        out.spawn_error = "open " + stdin_path.string() + ": " + std::strerror(errno);
        return out;
    }
    int pout[2], perr[2];
    if (::pipe2(pout, O_CLOEXEC) != 0) {
        out.spawn_error = std::string("pipe2: ") + std::strerror(errno);
        ::close(in);
        return out;
    }
    if (::pipe2(perr, O_CLOEXEC) != 0) {
        out.spawn_error = std::string("pipe2: ") + std::strerror(errno);
        ::close(in), ::close(pout[0]), ::close(pout[1]);
        return out;
    }
    pid_t pid = ::fork();
    if (pid < 0) {
        out.spawn_error = std::string("fork: ") + std::strerror(errno);
        ::close(in), ::close(pout[0]), ::close(pout[1]), ::close(perr[0]), ::close(perr[1]);
        return out;
    }
    if (pid == 0) {
        ::setpgid(0, 0);
        // fds 0..3 = stdin, stdout, stderr, exec-error pipe; everything else closed.
        int err_fd = ::fcntl(perr[1], F_DUPFD_CLOEXEC, 10);
        int out_fd = ::fcntl(pout[1], F_DUPFD_CLOEXEC, 10);
        int in_fd = ::fcntl(in, F_DUPFD_CLOEXEC, 10);
        if (err_fd < 0 || out_fd < 0 || in_fd < 0 || ::dup2(in_fd, 0) < 0 ||
            ::dup2(out_fd, 1) < 0 || ::dup2(out_fd, 2) < 0 || ::dup2(err_fd, 3) < 0)
            ::_exit(126);
        ::fcntl(3, F_SETFD, FD_CLOEXEC);
        ::syscall(SYS_close_range, 4U, ~0U, 0U);
        struct sigaction sa {};
        sa.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &sa, nullptr);  // SIGPIPE too
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::execve(av[0], av.data(), ev.data());
        int e = errno;
        ssize_t w = ::write(3, &e, sizeof e);
        (void)w;
        ::_exit(127);
    }
    ::setpgid(pid, pid);  // both sides: no race with an early kill
    ::close(in);
    ::close(pout[1]);
    ::close(perr[1]);
    int exec_errno = 0;
    ssize_t n;
    while ((n = ::read(perr[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR) {
    }
    ::close(perr[0]);
    if (n == static_cast<ssize_t>(sizeof exec_errno)) {
        ::close(pout[0]);
        while (::waitpid(pid, &out.wait_status, 0) < 0 && errno == EINTR) {
        }
        out.spawn_error = "cannot execute " + argv[0] + ": " + std::strerror(exec_errno);
        return out;
    }

    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    ::fcntl(pout[0], F_SETFL, ::fcntl(pout[0], F_GETFL) | O_NONBLOCK);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    bool exited = false, pipe_open = true;
    char buf[16384];
    auto drain = [&] {
        for (;;) {
            ssize_t r = ::read(pout[0], buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                if (r == 0) pipe_open = false;
                return;
            }
            out.output_total += static_cast<std::uint64_t>(r);
            if (out.output.size() < max_output)
                out.output.append(buf, std::min<std::size_t>(static_cast<std::size_t>(r),
                                                             max_output - out.output.size()));
        }
    };
    while (!exited) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now())
                      .count();
        if (ms <= 0) {
            out.timed_out = true;
            break;
        }
        struct pollfd pf[2] = {{pipe_open ? pout[0] : -1, POLLIN, 0}, {pidfd, POLLIN, 0}};
        int wait_ms = static_cast<int>(std::min<long>(ms, pidfd >= 0 ? 60000 : 50));
        int pr = ::poll(pf, 2, wait_ms);
        if (pr < 0 && errno != EINTR) break;
        if (pipe_open && (pf[0].revents & (POLLIN | POLLHUP | POLLERR))) drain();
        if (pidfd < 0 || (pf[1].revents & POLLIN)) {
            int ws = 0;
            pid_t w = ::waitpid(pid, &ws, WNOHANG);
            if (w == pid) {
                out.wait_status = ws;
                exited = true;
            }
        }
    }
    if (out.timed_out) {
        ::kill(-pid, SIGTERM);
        auto grace = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        while (std::chrono::steady_clock::now() < grace) {
            int ws = 0;
            if (::waitpid(pid, &ws, WNOHANG) == pid) {
                out.wait_status = ws;
                exited = true;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        ::kill(-pid, SIGKILL);  // the group: grandchildren too
        if (!exited)
            while (::waitpid(pid, &out.wait_status, 0) < 0 && errno == EINTR) {
            }
    }
    if (pipe_open) drain();  // what the command wrote just before it ended
    ::close(pout[0]);
    if (pidfd >= 0) ::close(pidfd);
    return out;
}

result classify_exit(const exec_outcome& o, const std::string& what) {
    if (!o.spawn_error.empty())
        return {result_kind::temporary, "4.3.5", reason_text(o.spawn_error, 300), {}};
    std::string text = reason_text(o.output, 300);
    if (o.output_total > o.output.size())
        text += " [" + std::to_string(o.output_total) + " bytes of output, kept " +
                std::to_string(o.output.size()) + "]";
    auto with_output = [&](std::string s) { return text.empty() ? s : s + ": " + text; };
    if (o.timed_out)
        return {result_kind::temporary, "4.3.0", with_output(what + " time limit exceeded"), {}};
    if (WIFSIGNALED(o.wait_status))
        return {result_kind::temporary,
                "4.3.0",
                with_output(what + " died with signal " + std::to_string(WTERMSIG(o.wait_status))),
                {}};
    int code = WIFEXITED(o.wait_status) ? WEXITSTATUS(o.wait_status) : 1;
    if (code == 0) return {result_kind::imported, "2.0.0", with_output(what + " exited 0"), {}};
    const char* name = "";
    const char* status = "5.3.0";
    for (const auto& s : sysexits)
        if (s.code == code) name = s.name, status = s.status;
    std::string head =
        what + " exited " + std::to_string(code) + (*name ? std::string(" (") + name + ")" : "");
    if (code == 75) return {result_kind::temporary, "4.3.0", with_output(head), {}};
    return {result_kind::permanent, status, with_output(head), {}};
}

std::unique_ptr<import_target> make_exec_target(const config& cfg, std::string_view rest) {
    return std::make_unique<exec_target>(cfg, parse_exec_spec(rest, config_reader(cfg, "targets")),
                                         "exec:" + std::string(rest));
}

}  // namespace mx::importer
