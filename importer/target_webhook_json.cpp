// target_webhook_json: the JSON body of a webhook delivery, built in a converter child with an
// address-space and CPU limit and a wall-clock timeout, so a hostile message can crash or stall
// only that child — never mx-importer or mxctl. The child writes the finished document to a
// pipe. The document itself is message_json's (GMime), which mx_targets does not link: a
// program that links it registers it (set_message_converter: mx-importer, tests) and the
// forked child calls it in-process; otherwise the child execs `mx-importer --message-json`
// found next to the running executable (mxctl: no MIME library in its address space).
// Security: the executable's own directory (/proc/self/exe), never $PATH or the environment,
// names the converter, so a root mxctl runs only what sits beside it.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

#include "message_parse.hpp"
#include "target_http.hpp"
#include "util/sanitizers.hpp"

namespace mx::importer {

namespace {

// What the converter child reported.
struct child_outcome {
    enum kind { ok, io_error, failed, killed, timed_out } kind = failed;
    std::string text;  // the document (ok) or why not
    int signal = 0;
};

// Reads `file` and runs `make` (file bytes -> document) in a forked child under the limits of
// `o`; the child never returns to the caller. Nothing the bytes do reaches this process.
std::atomic<message_converter> g_converter{nullptr};

// The argv of `mx-importer --message-json`, built before fork (no allocation in the child's
// exec path).
std::vector<std::string> converter_argv(const std::filesystem::path& file,
                                        const json_body_options& o, const nlohmann::json& top) {
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    auto exe = (ec ? std::filesystem::path("/usr/sbin") : self.parent_path()) / "mx-importer";
    return {exe.string(),
            "--message-json",
            file.string(),
            "--inline-max",
            std::to_string(o.inline_max),
            "--top",
            top.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

[[noreturn]] void exec_converter(const std::vector<std::string>& args, int out_fd) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (::dup2(out_fd, 1) == 1) ::execv(argv[0], argv.data());
    std::string why = "Eexec " + args[0] + ": " + std::strerror(errno);
    [[maybe_unused]] auto w = ::write(out_fd, why.data(), why.size());
    ::_exit(3);
}

child_outcome run_converter(const std::filesystem::path& file, const json_body_options& o,
                            const nlohmann::json& top) {
    child_outcome res;
    const message_converter convert = g_converter.load();
    std::vector<std::string> exec_args;
    if (!convert) exec_args = converter_argv(file, o, top);
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
        res.kind = child_outcome::io_error;
        res.text = std::string("pipe2: ") + std::strerror(errno);
        return res;
    }
    pid_t pid = ::fork();
    if (pid < 0) {
        int e = errno;
        ::close(p[0]);
        ::close(p[1]);
        res.kind = child_outcome::io_error;
        res.text = std::string("fork: ") + std::strerror(e);
        return res;
    }
    if (pid == 0) {
        // Child: limits first, then the hostile bytes. Nothing here returns to the caller.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        struct rlimit as {
            o.memory_limit, o.memory_limit
        };
        // Not in ASan/TSan builds: their shadow memory is far above any limit (sanitizers.hpp).
        if (util::address_space_limit_usable) ::setrlimit(RLIMIT_AS, &as);
        rlim_t cpu = static_cast<rlim_t>(o.timeout.count() / 1000 + 2);
        struct rlimit c {
            cpu, cpu
        };
        ::setrlimit(RLIMIT_CPU, &c);
        if (!convert) exec_converter(exec_args, p[1]);
        int status = 0;
        std::string doc;
        try {
            int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            if (fd < 0) throw target_error(std::string("open: ") + std::strerror(errno));
            struct stat sb {};
            ::fstat(fd, &sb);
            std::string_view data;
            if (sb.st_size > 0) {
                void* map = ::mmap(nullptr, static_cast<std::size_t>(sb.st_size), PROT_READ,
                                   MAP_PRIVATE, fd, 0);
                if (map == MAP_FAILED)
                    throw target_error(std::string("mmap: ") + std::strerror(errno));
                data = {static_cast<const char*>(map), static_cast<std::size_t>(sb.st_size)};
            }
            doc = convert(data, o.inline_max, top);
        } catch (const std::exception& e) {
            doc = std::string("E") + e.what();
            status = 3;
        }
        const char* q = doc.data();
        std::size_t left = doc.size();
        while (left > 0) {
            ssize_t w = ::write(p[1], q, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) ::_exit(4);
            q += w;
            left -= static_cast<std::size_t>(w);
        }
        ::_exit(status);
    }
    ::close(p[1]);
    std::string body;
    auto deadline = std::chrono::steady_clock::now() + o.timeout;
    bool timed_out = false;
    char buf[65536];
    for (;;) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now())
                      .count();
        if (ms <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pf {
            p[0], POLLIN, 0
        };
        int pr = ::poll(&pf, 1, static_cast<int>(std::min<long>(ms, 1000)));
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) continue;
        ssize_t r = ::read(p[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        body.append(buf, static_cast<std::size_t>(r));
    }
    ::close(p[0]);
    if (timed_out) ::kill(pid, SIGKILL);
    int ws = 0;
    while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) {
        res.kind = child_outcome::timed_out;
        res.text = "JSON conversion did not finish in time";
        return res;
    }
    if (WIFSIGNALED(ws)) {
        res.kind = child_outcome::killed;
        res.signal = WTERMSIG(ws);
        res.text = "converter killed by signal " + std::to_string(res.signal);
        return res;
    }
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
        std::string why = body.size() > 1 && body[0] == 'E' ? body.substr(1) : "converter failed";
        bool io =
            why.rfind("open:", 0) == 0 || why.rfind("mmap:", 0) == 0 || why.rfind("exec ", 0) == 0;
        res.kind = io ? child_outcome::io_error : child_outcome::failed;
        res.text = std::move(why);
        return res;
    }
    res.kind = child_outcome::ok;
    res.text = std::move(body);
    return res;
}

}  // namespace

void set_message_converter(message_converter fn) {
    g_converter.store(fn);
}

result build_json_body(const delivery& d, const std::string& key, const json_body_options& o,
                       std::string& body) {
    body.clear();
    nlohmann::json env;
    if (d.info) {
        env = {{"sender", d.info->env.sender},
               {"sender_known", d.info->env.sender_known},
               {"original_recipient", d.info->env.original_recipient}};
    }
    env["recipient"] = d.recipient;
    nlohmann::json top = {{"envelope", env},
                          {"connector", d.connector},
                          {"mailbox", d.mailbox},
                          {"idempotency_key", key},
                          {"fingerprint", d.fingerprint},
                          {"size", d.size},
                          {"arrival", d.arrival},
                          {"message_id", d.info ? d.info->message_id : ""}};
    auto out = run_converter(d.source, o, top);
    switch (out.kind) {
        case child_outcome::ok:
            body = std::move(out.text);
            return {result_kind::imported, "2.0.0", "json", {}};
        case child_outcome::timed_out:
            return {result_kind::temporary, "4.3.0", out.text, {}};
        case child_outcome::io_error:
            return {
                result_kind::temporary,
                "4.3.0",
                out.text.rfind("pipe2:", 0) == 0 || out.text.rfind("fork:", 0) == 0
                    ? out.text
                    : "the message could not be converted to JSON: " + reason_text(out.text, 200),
                {}};
        case child_outcome::killed:
            // The MIME walk died on this message: it will die again. Same verdict as unparseable.
            return {result_kind::permanent,
                    "5.6.0",
                    "the message could not be converted to JSON (" + out.text + ")",
                    {}};
        case child_outcome::failed:
            break;
    }
    return {result_kind::permanent,
            "5.6.0",
            "the message could not be converted to JSON: " + reason_text(out.text, 200),
            {}};
}

std::optional<nlohmann::json> message_file_to_json(const std::filesystem::path& file,
                                                   const json_body_options& o, std::string& why) {
    auto out = run_converter(file, o, nlohmann::json::object());
    if (out.kind != child_outcome::ok) {
        why = reason_text(out.text, 200);
        return std::nullopt;
    }
    auto j = nlohmann::json::parse(out.text, nullptr, false);
    if (j.is_discarded()) {
        why = "the converter's output is not JSON";
        return std::nullopt;
    }
    return j;
}

}  // namespace mx::importer
