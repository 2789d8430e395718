// parse_worker_child: the parse worker process's side of parse_worker.hpp — preparing the
// libraries before the sandbox, the seccomp allow-list, reading requests and answering them
// (analyse_fd). Everything here runs in the worker (or, for analyse_file, in tools and tests),
// never in the daemon: a crash or an exploit here costs one worker.
#include <dirent.h>
#include <fcntl.h>
#include <glib.h>
#include <iconv.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "parse_worker.hpp"
#include "util/fd_passing.hpp"
#include "util/hex.hpp"
#include "util/sandbox.hpp"

namespace mx::importer {
namespace {

constexpr auto json_replace = nlohmann::json::error_handler_t::replace;

std::string sha256(std::string_view data) {
    return util::sha256_hex(data);
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

nlohmann::json io_failure(const char* call, int err) {
    return {
        {"ok", false}, {"errno", err}, {"error", std::string(call) + ": " + std::strerror(err)}};
}

// fstat(2) as the fstat system call: glibc's wrapper uses newfstatat(fd, "", AT_EMPTY_PATH),
// and allowing newfstatat in the sandbox would allow stat() of any path.
int fd_stat(int fd, struct stat* st) {
#ifdef SYS_fstat
    return static_cast<int>(::syscall(SYS_fstat, fd, st));
#else
    return ::fstat(fd, st);
#endif
}

bool fault_injection_enabled() {
    const char* e = std::getenv("MX_IMPORTER_FAULT_INJECTION");
    return e && std::string_view(e) == "1";
}

// Test-only behaviour of a parser in trouble. Returns a note for the reply. "open PATH" does
// what an exploit after the secrets would do first: open and read a file by its path.
std::string fault_injection(std::string_view data) {
    if (!fault_injection_enabled()) return {};
    auto head = data.substr(0, std::min<std::size_t>(data.size(), 64 * 1024));
    if (head.find("X-Mx-Test-Fault: crash") != std::string_view::npos) ::abort();
    if (head.find("X-Mx-Test-Fault: hang") != std::string_view::npos)
        for (;;) ::pause();
    constexpr std::string_view open_fault = "X-Mx-Test-Fault: open ";
    if (auto at = head.find(open_fault); at != std::string_view::npos) {
        auto rest = head.substr(at + open_fault.size());
        std::string path(rest.substr(0, rest.find_first_of("\r\n")));
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return "fault injection: open " + path + ": " + std::strerror(errno);
        char buf[4096];
        ssize_t n = ::read(fd, buf, sizeof buf);
        ::close(fd);
        return "fault injection: read " + std::to_string(n) + " bytes of " + path;
    }
    return {};
}

// ---- preparing the worker for the sandbox ------------------------------------------------
// Everything that would open a file later (charset converter modules, the gconv cache, the
// OpenSSL configuration, GLib's charset aliases) is done once, before the filter is loaded.

// GLib's default log writer probes stderr (getpeername, isatty) and may send to journald over
// a new socket: under the filter a mere warning would kill the worker. Plain lines on fd 2.
GLogWriterOutput plain_log_writer(GLogLevelFlags, const GLogField* fields, gsize n, gpointer) {
    std::string line = "mx-importer parse worker: glib:";
    for (gsize i = 0; i < n; ++i)
        if (std::string_view(fields[i].key) == "MESSAGE" && fields[i].length < 0)
            line += std::string(" ") + static_cast<const char*>(fields[i].value);
    line += "\n";
    write_all(2, line);
    return G_LOG_WRITER_HANDLED;
}

// The folder glibc loads charset converters from: where the ISO-8859-15 one (never built in)
// was just mapped from.
std::string gconv_dir() {
    if (const char* e = std::getenv("GCONV_PATH"); e && *e) {
        std::string s(e);
        return s.substr(0, s.find(':'));
    }
    iconv_t cd = ::iconv_open("UTF-8", "ISO-8859-15");
    if (cd == reinterpret_cast<iconv_t>(-1)) return {};
    std::string dir;
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (dir.empty() && std::getline(maps, line)) {
        auto slash = line.find('/');
        if (slash == std::string::npos) continue;
        auto at = line.rfind("/gconv/");
        if (at != std::string::npos && at > slash) dir = line.substr(slash, at + 6 - slash);
    }
    ::iconv_close(cd);
    return dir;
}

// Opens one converter to UTF-8 per glibc converter module (gconv-modules and
// gconv-modules.d/*.conf) and never closes it: a module stays loaded while a descriptor uses
// it, so GMime's iconv_open() of any charset a message names finds its module in memory
// instead of dlopen()ing it under the filter. ~250 modules, ~150 ms, a few MB of mappings.
std::size_t preload_charset_converters() {
    // Never closed, on purpose; allocated and never destroyed, so the descriptors stay
    // reachable to the end (LeakSanitizer does not report them as lost at exit).
    static auto* keep = new std::vector<iconv_t>;
    std::string dir = gconv_dir();
    if (dir.empty()) return 0;
    std::vector<std::string> confs{dir + "/gconv-modules"};
    if (DIR* d = ::opendir((dir + "/gconv-modules.d").c_str())) {
        while (dirent* e = ::readdir(d)) {
            std::string n = e->d_name;
            if (n.size() > 5 && n.ends_with(".conf"))
                confs.push_back(dir + "/gconv-modules.d/" + n);
        }
        ::closedir(d);
    }
    std::set<std::string> modules;
    for (const auto& conf : confs) {
        std::ifstream in(conf);
        std::string line;
        while (std::getline(in, line)) {
            // module  FROM//  TO//  FILE  [COST]
            std::istringstream f(line);
            std::string kw, from, to, file;
            if (!(f >> kw >> from >> to >> file) || kw != "module" || to != "INTERNAL") continue;
            if (!modules.insert(file).second) continue;
            while (!from.empty() && from.back() == '/') from.pop_back();
            iconv_t cd = ::iconv_open("UTF-8", from.c_str());
            if (cd != reinterpret_cast<iconv_t>(-1)) keep->push_back(cd);
        }
    }
    return keep->size();
}

// A message touching the lazily initialised parts: GMime (RFC 2047 in several charsets),
// mimetic (multipart, base64, quoted-printable), OpenSSL's digest (reads openssl.cnf once).
constexpr std::string_view warm_up_message =
    "Return-Path: <a@example.test>\r\nDelivered-To: b@example.test\r\n"
    "From: =?ISO-8859-1?Q?J=F6rg?= <a@example.test>\r\nTo: b@example.test\r\n"
    "Subject: =?UTF-8?B?w6TDtsO8?= =?windows-1252?Q?=80?= =?ISO-2022-JP?B?GyRCJEYbKEI=?=\r\n"
    "Date: Tue, 1 Dec 2026 10:00:00 +0100\r\nMessage-ID: <warm-up@example.test>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
    "--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n\r\nJ=F6rg\r\n"
    "--b\r\nContent-Type: application/octet-stream; name=\"=?UTF-8?Q?=C3=A4.bin?=\"\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b--\r\n";

std::size_t g_converters = 0;

// What the worker may still do once it has its fds (see docs/importer.md). Everything else,
// above all open/openat, socket/connect, execve, clone/fork, kill, ptrace, kills it (SIGSYS).
sandbox::policy worker_policy(int in_fd, int out_fd) {
    using sandbox::allow;
    using sandbox::allow_if_arg;
    using sandbox::allow_if_clear;
    sandbox::policy p;
    p.allow = {
        // Seen under strace on the fuzz corpus, the golden mails and the hostile-file test:
        allow("read"),   // the received files (and nothing else to read)
        allow("fstat"),  // their size, mtime and type (fd_stat above)
        allow("close"),  // a file once answered
        allow_if_arg("recvmsg", 0, static_cast<std::uint64_t>(in_fd)),  // requests
        allow_if_arg("write", 0, static_cast<std::uint64_t>(out_fd)),   // replies
        allow_if_arg("write", 0, 2),                                    // diagnostics
        allow_if_clear("mmap", 2, PROT_EXEC),  // big files, big buffers; never executable
        allow("munmap"),
        allow("madvise"),
        allow("brk"),
        allow("exit_group"),
        // abort() (assertions, std::terminate, g_error, glibc's heap checks) must still end
        // in SIGABRT, so a crash is reported as what it is: the heap checks' message goes out
        // with writev on fd 2, then tgkill towards this very process only.
        allow_if_arg("writev", 0, 2),
        allow("rt_sigprocmask"),
        allow("getpid"),
        allow("gettid"),
        allow_if_arg("tgkill", 0, static_cast<std::uint64_t>(::getpid())),
        // Not seen, but part of what glibc/GLib may do on rarer paths and harmless: realloc
        // of a big block, a contended lock or once-initialisation, the clock when the vDSO
        // cannot answer, the end of a signal handler.
        allow("mremap"),
        allow("futex"),
        allow("clock_gettime"),
        allow("exit"),
        allow("rt_sigreturn"),
    };
    if (fault_injection_enabled()) p.allow.push_back(allow("pause"));  // the "hang" fault
    // No fd numbered beyond the files of the one request being answered (fds 0-2 are taken).
    int lowest_free = ::fcntl(0, F_DUPFD, 0);
    if (lowest_free >= 0) {
        ::close(lowest_free);
        p.max_open_files = static_cast<rlim_t>(lowest_free) + max_fds_per_request;
    }
    return p;
}

// One request: one byte ('e' envelope only, 'f' full), then 16 bytes per file (size, mtime;
// mtime 0: unknown), carrying the files' fds in one SCM_RIGHTS. A one-byte request is one file,
// unknown. Every file the parent counted gets a slot (fd -1 with an error when it did not
// arrive). Returns false at EOF (parent gone or done).
struct request_file {
    int fd = -1;
    std::uint64_t size = 0;
    std::int64_t mtime = 0;
    std::string error;
};

bool receive_request(int in_fd, std::vector<request_file>& files, bool& envelope_only) {
    char buf[1 + 16 * max_fds_per_request + 1];
    std::vector<int> fds;
    int msg_flags = 0;
    ssize_t n = util::recv_fds(in_fd, buf, sizeof buf, fds, max_fds_per_request, msg_flags);
    if (n <= 0) return false;
    auto len = static_cast<std::size_t>(n);
    bool well_formed = (msg_flags & MSG_TRUNC) == 0 && (buf[0] == 'e' || buf[0] == 'f') &&
                       (len == 1 || (len - 1) % 16 == 0);
    std::size_t count = len <= 1 ? 1 : (len - 1) / 16;
    envelope_only = buf[0] == 'e';
    files.assign(count, {});
    for (std::size_t i = 0; i < count; ++i) {
        auto& f = files[i];
        if (len > 1) {
            std::memcpy(&f.size, buf + 1 + 16 * i, 8);
            std::memcpy(&f.mtime, buf + 1 + 16 * i + 8, 8);
        }
        if (i < fds.size()) f.fd = fds[i];
        if (!well_formed)
            f.error = "bad request";
        else if (f.fd < 0)
            f.error = (msg_flags & MSG_CTRUNC) ? "file descriptor refused (limit)"
                                               : "request without a file descriptor";
    }
    for (std::size_t i = count; i < fds.size(); ++i) ::close(fds[i]);  // never asked about
    return true;
}
}  // namespace

void prepare_worker_once(const parse_limits& limits) {
    static std::once_flag once;
    std::call_once(once, [&] {
        g_log_set_writer_func(plain_log_writer, nullptr, nullptr);
        g_converters = preload_charset_converters();
        try {
            (void)analyse_message(warm_up_message, limits);
        } catch (const std::exception&) {
            // only the side effects matter
        }
        (void)sha256(warm_up_message);
        (void)nlohmann::json::parse(R"({"a":[1,2.5,"x"]})").dump();
    });
}

nlohmann::json analyse_fd(int fd, const parse_limits& limits, bool envelope_only,
                          std::uint64_t known_size, std::int64_t known_mtime) {
    struct stat st {};
    if (known_mtime != 0) {  // the parent's lstat of its private work file: no fstat here
        st.st_mode = S_IFREG;
        st.st_size = static_cast<off_t>(known_size);
        st.st_mtime = static_cast<time_t>(known_mtime);
    } else if (fd_stat(fd, &st) != 0) {
        return io_failure("fstat", errno);
    }
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
            if (n < 0) return io_failure("read", errno);
            if (n == 0) break;  // truncated meanwhile: parse what is there
            got += static_cast<std::size_t>(n);
        }
        size = got;
        data = std::string_view(small.data(), got);
    } else if (size > 0) {
        map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) return io_failure("mmap", errno);
        ::madvise(map, size, MADV_SEQUENTIAL);
        data = std::string_view(static_cast<const char*>(map), size);
    }
    std::string note;
    if (!envelope_only) note = fault_injection(data);
    message_info info;
    if (envelope_only) {
        auto h = mail::parse_header_block(data, limits);
        info.env = extract_envelope(h, limits);
        info.has_header_block = !h.fields.empty();
        info.note = "envelope only";
    } else {
        info = analyse_message(data, limits);
        if (!note.empty()) info.note = note;
    }
    nlohmann::json reply = {{"ok", true},
                            {"size", size},
                            {"mtime", static_cast<std::int64_t>(st.st_mtime)},
                            {"fingerprint", sha256(data)}};
    reply["info"] = to_json(info);  // moved in (an initializer list would copy it)
    if (map) ::munmap(map, size);
    return reply;
}

nlohmann::json analyse_file(const std::string& path, const parse_limits& limits,
                            bool envelope_only) {
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return io_failure("open", errno);
    fd_closer g{fd};
    return analyse_fd(fd, limits, envelope_only);
}

int parse_worker_main(int in_fd, int out_fd, const parse_limits& limits, bool sandbox) {
    ::prctl(PR_SET_NAME, "mx-parse-worker");  // what ps and top show (the exe is mx-importer)
    prepare_worker_once(limits);
    nlohmann::json hello = {{"sandbox", false}};
    if (sandbox) {
        auto p = worker_policy(in_fd, out_fd);
        try {
            sandbox::enter(p);
            hello = {{"sandbox", true},
                     {"syscalls", sandbox::syscall_count(p)},
                     {"converters", g_converters}};
        } catch (const std::exception& e) {
            hello = {{"sandbox", false}, {"error", e.what()}};
        }
    }
    if (!write_all(out_fd, hello.dump(-1, ' ', false, json_replace) + "\n")) ::_exit(1);
    std::vector<request_file> files;
    for (;;) {
        bool envelope_only = false;
        // EOF: the parent is done. _exit: nothing to flush, and no exit-time handler of any
        // library gets to make a system call the filter forbids.
        if (!receive_request(in_fd, files, envelope_only)) ::_exit(0);
        // One reply per file as soon as it is answered: the parent blames a hang or a crash
        // on the first file it has no answer for.
        for (auto& f : files) {
            fd_closer g{f.fd};
            nlohmann::json reply;
            if (!f.error.empty()) {
                reply = {{"ok", false}, {"errno", EBADF}, {"error", f.error}};
            } else {
                try {
                    reply = analyse_fd(f.fd, limits, envelope_only, f.size, f.mtime);
                } catch (const std::exception& e) {
                    // A parser exception is an answer too (the message is unparseable), not a
                    // crash.
                    reply = {{"ok", true}, {"exception", e.what()}};
                }
            }
            if (!write_all(out_fd, reply.dump(-1, ' ', false, json_replace) + "\n")) ::_exit(1);
        }
    }
}

namespace {

std::size_t count_threads() {
    std::size_t n = 0;
    if (DIR* d = ::opendir("/proc/self/task")) {
        while (dirent* e = ::readdir(d))
            if (e->d_name[0] != '.') ++n;
        ::closedir(d);
    }
    return n;
}

// One request of the daemon: the worker's RLIMIT_AS and its two fds, or "R" (len 1, no fds).
// False at EOF.
bool receive_spawn(int sock, std::uint64_t& memory_limit, int (&fds)[2], bool& well_formed,
                   std::size_t& len) {
    std::vector<int> got;
    int msg_flags = 0;
    ssize_t n = util::recv_fds(sock, &memory_limit, sizeof memory_limit, got, 2, msg_flags);
    fds[0] = got.size() > 0 ? got[0] : -1;
    fds[1] = got.size() > 1 ? got[1] : -1;
    if (n <= 0) return false;
    len = static_cast<std::size_t>(n);
    well_formed = n == static_cast<ssize_t>(sizeof memory_limit) && got.size() == 2 &&
                  (msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == 0;
    return true;
}

}  // namespace

int parse_worker_factory_main(int sock, const parse_limits& limits, bool sandbox) {
    ::prctl(PR_SET_NAME, "mx-parse-zygote");
    prepare_worker_once(limits);
    nlohmann::json hello = {{"threads", count_threads()}, {"converters", g_converters}};
    const parse_process_exec renewed("/proc/self/exe", "--parse-worker-factory",
                                     limits.max_header_bytes, sandbox);
    std::string h = hello.dump();
    if (::send(sock, h.data(), h.size(), MSG_NOSIGNAL) < 0) return 1;
    const pid_t daemon = ::getppid();
    for (;;) {
        std::uint64_t memory_limit = 0;
        int fds[2];
        bool well_formed = false;
        std::size_t len = 0;
        if (!receive_spawn(sock, memory_limit, fds, well_formed, len)) ::_exit(0);  // daemon gone
        if (len == 1 && fds[0] < 0) renewed.run();  // "R" (fd 0, the socket, survives)
        std::int32_t answer = -EINVAL;
        if (well_formed) {
            // fork() with CLONE_PARENT: the worker is the daemon's child, not ours. A raw
            // clone skips glibc's fork handlers, which is sound only because this process is
            // single-threaded (checked by the daemon through the hello).
            long pid =
                ::syscall(SYS_clone, CLONE_PARENT | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
            if (pid == 0) {
                become_worker_process(daemon, fds[0], fds[1], memory_limit);
                ::_exit(parse_worker_main(0, 1, limits, sandbox));
            }
            answer = pid > 0 ? static_cast<std::int32_t>(pid) : -errno;
        }
        for (int fd : fds)
            if (fd >= 0) ::close(fd);
        if (::send(sock, &answer, sizeof answer, MSG_NOSIGNAL) < 0) ::_exit(0);
    }
}

}  // namespace mx::importer
