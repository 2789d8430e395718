// mxctl doctor: checks an installation end to end and prints every finding with its fix.
//
// What it looks at (each a "check" with status ok | warn | fail):
//   config      the TOML file loads; the daemon user and the socket group exist
//   store       the LMDB store opens read-only and is owned by the daemon user
//   secrets     the secret store is 0700/0600 and owned by the daemon user
//   daemons     mx-milter / mx-importer heartbeats in shared memory are fresh
//   postfix     smtpd_milters names our socket (chroot-aware), milter_default_action is
//               tempfail (also per-milter overrides), we are not in non_smtpd_milters
//   milter      the milter socket accepts a connection and answers a milter OPTNEG; the
//               socketmap answers a netstring request
//   domains     every connector domain is known to Postfix (virtual/relay domains, queried
//               through Postfix's own tables with postmap, so socketmap wiring is exercised)
//   drop        each active connector's drop folder exists, the importer's account can claim
//               files in it and Postfix's delivery account can write into it
//   failed      files waiting in ImportFailed (warn) and an old backlog in the drop folder
//   smtp        each connector's SMTP server (deduplicated) accepts TCP and sends a 220 banner
//   oauth       Google/Microsoft mailboxes have a client id and a refresh token; cached access
//               tokens that are about to expire can be renewed
// Exit status: 0 when nothing failed, 1 when a check failed (with --strict also on warnings).
// Security: only reads; external programs (postconf, postmap) run without a shell with a
// deadline; no secret value is ever printed (only whether it is set).
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "global/smtp_route.hpp"
#include "../importer/target_health.hpp"
#include "mxctl.hpp"
#include "util/fs.hpp"
#include "util/privdrop.hpp"

namespace mx::admin {
namespace {

enum class level { ok, warn, fail };

std::string_view to_string(level l) {
    switch (l) {
        case level::ok:
            return "ok";
        case level::warn:
            return "warn";
        case level::fail:
            return "fail";
    }
    return "fail";
}

struct finding {
    std::string check;
    level status = level::ok;
    std::string message;
    std::string fix;
};

class report {
  public:
    void ok(const std::string& check, const std::string& msg) { add(check, level::ok, msg, {}); }
    void warn(const std::string& check, const std::string& msg, const std::string& fix) {
        add(check, level::warn, msg, fix);
    }
    void fail(const std::string& check, const std::string& msg, const std::string& fix) {
        add(check, level::fail, msg, fix);
    }
    const std::vector<finding>& findings() const { return f_; }
    bool any(level l) const {
        return std::any_of(f_.begin(), f_.end(), [l](const finding& x) { return x.status == l; });
    }

  private:
    void add(const std::string& c, level l, const std::string& m, const std::string& fix) {
        f_.push_back({c, l, m, fix});
    }
    std::vector<finding> f_;
};

// ---- running programs ------------------------------------------------------------------

struct run_result {
    int status = -1;  // exit status; -1: could not run or killed (timeout)
    std::string out;  // stdout (stderr appended when merge_stderr)
};

// Runs argv without a shell, collecting stdout, killing it after `timeout`.
run_result run_program(const std::vector<std::string>& argv, const std::string& cwd = {},
                       std::chrono::milliseconds timeout = std::chrono::seconds(10),
                       bool merge_stderr = false) {
    run_result r;
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return r;
    pid_t pid = ::fork();
    if (pid < 0) {
        ::close(fds[0]);
        ::close(fds[1]);
        return r;
    }
    if (pid == 0) {
        ::dup2(fds[1], 1);
        int devnull = ::open("/dev/null", O_RDWR);
        if (devnull >= 0) ::dup2(devnull, 0);
        if (merge_stderr)
            ::dup2(fds[1], 2);
        else if (devnull >= 0)
            ::dup2(devnull, 2);
        if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) _exit(127);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execvp(args[0], args.data());
        _exit(127);
    }
    ::close(fds[1]);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    bool killed = false;
    char buf[4096];
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) {
            ::kill(pid, SIGKILL);
            killed = true;
            break;
        }
        pollfd p{fds[0], POLLIN, 0};
        int n = ::poll(&p, 1, static_cast<int>(left));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) continue;
        ssize_t got = ::read(fds[0], buf, sizeof buf);
        if (got <= 0) break;
        if (r.out.size() < (1u << 20)) r.out.append(buf, static_cast<std::size_t>(got));
    }
    ::close(fds[0]);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!killed && WIFEXITED(st)) r.status = WEXITSTATUS(st);
    return r;
}

std::string trim(std::string s) {
    auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return {};
    auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

// Splits a Postfix list value (commas and/or whitespace), keeping "{ ... }" groups whole.
std::vector<std::string> split_postfix_list(const std::string& v) {
    std::vector<std::string> out;
    std::string cur;
    int depth = 0;
    for (char c : v) {
        if (c == '{') ++depth;
        if (c == '}' && depth > 0) --depth;
        if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n')) {
            if (!trim(cur).empty()) out.push_back(trim(cur));
            cur.clear();
            continue;
        }
        cur += c;
    }
    if (!trim(cur).empty()) out.push_back(trim(cur));
    return out;
}

// ---- Postfix ----------------------------------------------------------------------------

class postfix_config {
  public:
    explicit postfix_config(std::string dir) : dir_(std::move(dir)) {}
    const std::string& dir() const { return dir_; }
    // postconf -c DIR -x -h NAME (expanded value); nullopt when postconf fails.
    std::optional<std::string> get(const std::string& name) {
        if (auto it = cache_.find(name); it != cache_.end()) return it->second;
        auto r = run_program({"postconf", "-c", dir_, "-x", "-h", name});
        std::optional<std::string> v;
        if (r.status == 0) v = trim(r.out);
        cache_[name] = v;
        return v;
    }
    // master.cf services running smtpd, as "name/type chroot-flag".
    std::vector<std::pair<std::string, bool>> smtpd_services() {
        std::vector<std::pair<std::string, bool>> out;
        auto r = run_program({"postconf", "-c", dir_, "-M"});
        if (r.status != 0) return out;
        std::istringstream in(r.out);
        std::string line;
        while (std::getline(in, line)) {
            std::istringstream ls(line);
            std::string name, type, priv, unpriv, chroot, wakeup, maxproc, cmd;
            if (!(ls >> name >> type >> priv >> unpriv >> chroot >> wakeup >> maxproc >> cmd))
                continue;
            if (cmd != "smtpd" || (type != "inet" && type != "pass")) continue;
            // "-" means the default: y before Postfix 3.0 master.cf defaults, n since; Debian
            // writes it explicitly.
            out.emplace_back(name + "/" + type, chroot == "y");
        }
        return out;
    }

    // Lookup table types this Postfix can open (postconf -m): Debian ships lmdb, cdb, pcre,
    // ... as separate packages (postfix-lmdb), so a table in main.cf may be of a type the
    // installed Postfix cannot read — then every lookup through it is a 451.
    std::optional<std::set<std::string>> map_types() {
        auto r = run_program({"postconf", "-c", dir_, "-m"});
        if (r.status != 0) return std::nullopt;
        std::set<std::string> out;
        std::istringstream in(r.out);
        for (std::string t; in >> t;) out.insert(t);
        return out;
    }

  private:
    std::string dir_;
    std::map<std::string, std::optional<std::string>> cache_;
};

// Our milter socket as Postfix writes it. libmilter says inet:PORT@HOST, Postfix
// inet:HOST:PORT; unix sockets are compared as absolute paths of this machine.
struct milter_endpoint {
    bool is_unix = false;
    std::string path;  // unix
    std::string host;  // inet
    std::string port;
};

std::optional<milter_endpoint> parse_libmilter_spec(const std::string& spec) {
    milter_endpoint e;
    for (std::string_view prefix : {"unix:", "local:"}) {
        if (spec.rfind(prefix, 0) == 0) {
            e.is_unix = true;
            e.path = spec.substr(prefix.size());
            return e;
        }
    }
    for (std::string_view prefix : {"inet:", "inet6:"}) {
        if (spec.rfind(prefix, 0) == 0) {
            std::string rest = spec.substr(prefix.size());
            auto at = rest.find('@');
            e.port = rest.substr(0, at);
            e.host = at == std::string::npos ? "127.0.0.1" : rest.substr(at + 1);
            if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']')
                e.host = e.host.substr(1, e.host.size() - 2);
            return e;
        }
    }
    return std::nullopt;
}

// A Postfix milter list entry (possibly "{ addr, default_action = accept }").
struct postfix_milter_entry {
    std::string address;
    std::string default_action;  // per-milter override, empty when none
};

postfix_milter_entry parse_postfix_milter(const std::string& entry) {
    postfix_milter_entry e;
    std::string s = trim(entry);
    if (!s.empty() && s.front() == '{') {
        s = s.substr(1, s.size() >= 2 && s.back() == '}' ? s.size() - 2 : s.size() - 1);
        std::vector<std::string> parts;
        std::string cur;
        for (char c : s) {
            if (c == ',') {
                parts.push_back(trim(cur));
                cur.clear();
            } else {
                cur += c;
            }
        }
        parts.push_back(trim(cur));
        if (!parts.empty()) e.address = parts[0];
        for (std::size_t i = 1; i < parts.size(); ++i) {
            auto eq = parts[i].find('=');
            if (eq == std::string::npos) continue;
            if (trim(parts[i].substr(0, eq)) == "default_action")
                e.default_action = trim(parts[i].substr(eq + 1));
        }
        return e;
    }
    e.address = s;
    return e;
}

// Does a Postfix milter address designate our endpoint? (queue_dir: for relative and chrooted
// unix paths.)
bool same_endpoint(const std::string& postfix_addr, const milter_endpoint& ours,
                   const std::string& queue_dir, bool chrooted) {
    namespace fs = std::filesystem;
    if (ours.is_unix) {
        std::string p;
        if (postfix_addr.rfind("unix:", 0) == 0)
            p = postfix_addr.substr(5);
        else if (postfix_addr.rfind("local:", 0) == 0)
            p = postfix_addr.substr(6);
        else if (!postfix_addr.empty() && postfix_addr.front() == '/')
            p = postfix_addr;
        else
            return false;
        fs::path candidate = fs::path(p).is_relative() ? fs::path(queue_dir) / p
                             : chrooted ? fs::path(queue_dir) / fs::path(p).relative_path()
                                        : fs::path(p);
        return candidate.lexically_normal() == fs::path(ours.path).lexically_normal();
    }
    if (postfix_addr.rfind("inet:", 0) != 0) return false;
    std::string rest = postfix_addr.substr(5);
    auto colon = rest.rfind(':');
    if (colon == std::string::npos) return false;
    std::string host = rest.substr(0, colon), port = rest.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    auto loopback = [](const std::string& h) {
        return h == "127.0.0.1" || h == "localhost" || h == "::1";
    };
    return port == ours.port && (host == ours.host || (loopback(host) && loopback(ours.host)));
}

// ---- sockets ----------------------------------------------------------------------------

struct fd_guard {
    int fd = -1;
    explicit fd_guard(int f) : fd(f) {}
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
};

// Connects with a deadline; returns the fd or -1 with `err` set.
int connect_with_timeout(const sockaddr* sa, socklen_t len, int family, int timeout_ms,
                         std::string& err) {
    int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        err = std::string("socket: ") + std::strerror(errno);
        return -1;
    }
    if (::connect(fd, sa, len) != 0) {
        if (errno != EINPROGRESS) {
            err = std::string("connect: ") + std::strerror(errno);
            ::close(fd);
            return -1;
        }
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) {
            err = "connect: timed out";
            ::close(fd);
            return -1;
        }
        int so = 0;
        socklen_t sl = sizeof so;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl);
        if (so != 0) {
            err = std::string("connect: ") + std::strerror(so);
            ::close(fd);
            return -1;
        }
    }
    return fd;
}

int connect_unix(const std::string& path, int timeout_ms, std::string& err) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path) {
        err = "socket path too long";
        return -1;
    }
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    return connect_with_timeout(reinterpret_cast<sockaddr*>(&sa), sizeof sa, AF_UNIX, timeout_ms,
                                err);
}

int connect_tcp(const std::string& host, const std::string& port, int timeout_ms,
                std::string& err) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
        err = std::string("getaddrinfo: ") + ::gai_strerror(rc);
        return -1;
    }
    int fd = -1;
    for (auto* ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = connect_with_timeout(ai->ai_addr, ai->ai_addrlen, ai->ai_family, timeout_ms, err);
    ::freeaddrinfo(res);
    return fd;
}

bool write_all(int fd, const std::string& data, int timeout_ms) {
    std::size_t off = 0;
    while (off < data.size()) {
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) return false;
        ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return false;
        off += static_cast<std::size_t>(n);
    }
    return true;
}

// Reads until `done(buffer)` or the deadline; false on timeout/EOF before done.
template <typename Done>
bool read_until(int fd, std::string& buf, int timeout_ms, Done&& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    char tmp[2048];
    while (!done(buf)) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) return false;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
        ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0) return false;
        buf.append(tmp, static_cast<std::size_t>(n));
        if (buf.size() > 65536) return false;
    }
    return true;
}

std::uint32_t be32(const std::string& s, std::size_t off) {
    return (static_cast<std::uint32_t>(static_cast<unsigned char>(s[off])) << 24) |
           (static_cast<std::uint32_t>(static_cast<unsigned char>(s[off + 1])) << 16) |
           (static_cast<std::uint32_t>(static_cast<unsigned char>(s[off + 2])) << 8) |
           static_cast<std::uint32_t>(static_cast<unsigned char>(s[off + 3]));
}

void put32(std::string& s, std::uint32_t v) {
    s.push_back(static_cast<char>(v >> 24));
    s.push_back(static_cast<char>(v >> 16));
    s.push_back(static_cast<char>(v >> 8));
    s.push_back(static_cast<char>(v));
}

// Sends SMFIC_OPTNEG as an MTA would (protocol version 6, every action and step offered) and
// returns "version V, actions 0x.., protocol 0x.." or throws with what went wrong.
std::string milter_optneg(const milter_endpoint& ep) {
    std::string err;
    int raw =
        ep.is_unix ? connect_unix(ep.path, 5000, err) : connect_tcp(ep.host, ep.port, 5000, err);
    if (raw < 0) throw std::runtime_error(err);
    fd_guard fd(raw);
    std::string pkt;
    put32(pkt, 13);  // 'O' + 3 * 4 bytes
    pkt.push_back('O');
    put32(pkt, 6);         // SMFI_PROT_VERSION
    put32(pkt, 0x1FF);     // all SMFIF_* actions
    put32(pkt, 0x1FFFFF);  // all SMFIP_* protocol steps may be skipped
    if (!write_all(fd.fd, pkt, 5000))
        throw std::runtime_error("write: " + std::string(std::strerror(errno)));
    std::string buf;
    bool got = read_until(fd.fd, buf, 5000, [](const std::string& b) {
        return b.size() >= 4 && b.size() >= 4 + be32(b, 0);
    });
    if (!got) throw std::runtime_error("no OPTNEG answer within 5 s");
    std::uint32_t len = be32(buf, 0);
    if (len < 13 || buf[4] != 'O')
        throw std::runtime_error("unexpected answer (command '" + std::string(1, buf[4]) + "')");
    std::ostringstream os;
    os << "version " << be32(buf, 5) << ", actions 0x" << std::hex << be32(buf, 9)
       << ", protocol 0x" << be32(buf, 13);
    std::string quit;
    put32(quit, 1);
    quit.push_back('Q');
    (void)write_all(fd.fd, quit, 1000);
    return os.str();
}

// One socketmap request; returns the reply payload ("OK ...", "NOTFOUND ", ...).
std::string socketmap_query(const std::string& path, const std::string& request) {
    std::string err;
    int raw = connect_unix(path, 5000, err);
    if (raw < 0) throw std::runtime_error(err);
    fd_guard fd(raw);
    std::string ns = std::to_string(request.size()) + ":" + request + ",";
    if (!write_all(fd.fd, ns, 5000)) throw std::runtime_error("write failed");
    std::string buf;
    bool got = read_until(fd.fd, buf, 5000, [](const std::string& b) {
        auto colon = b.find(':');
        if (colon == std::string::npos) return false;
        std::size_t n = 0;
        try {
            n = std::stoul(b.substr(0, colon));
        } catch (...) {
            return true;  // garbage: stop reading, reported below
        }
        return b.size() >= colon + 1 + n + 1;
    });
    auto colon = buf.find(':');
    if (!got || colon == std::string::npos)
        throw std::runtime_error("no netstring answer within 5 s");
    std::size_t n = std::stoul(buf.substr(0, colon));
    return buf.substr(colon + 1, n);
}

// Reads an SMTP greeting ("220 ..." possibly multi-line) with a deadline.
std::string smtp_banner(const std::string& host, int port, int timeout_ms) {
    std::string err;
    int raw = connect_tcp(host, std::to_string(port), timeout_ms, err);
    if (raw < 0) throw std::runtime_error(err);
    fd_guard fd(raw);
    std::string buf;
    bool got = read_until(fd.fd, buf, timeout_ms, [](const std::string& b) {
        // complete when a line "NNN " (not "NNN-") ends with LF
        std::size_t start = 0;
        while (true) {
            auto nl = b.find('\n', start);
            if (nl == std::string::npos) return false;
            if (nl - start >= 4 && b[start + 3] == ' ') return true;
            if (nl - start < 4) return true;
            start = nl + 1;
        }
    });
    (void)write_all(fd.fd, "QUIT\r\n", 1000);
    if (!got)
        throw std::runtime_error("no greeting within " + std::to_string(timeout_ms / 1000) + " s");
    auto line = buf.substr(0, buf.find('\n'));
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.size() > 200) line.resize(200);
    for (char& c : line)
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    return line;
}

// ---- files ------------------------------------------------------------------------------

struct account {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;
    std::string name;
};

std::optional<account> lookup_account(const std::string& name) {
    struct passwd* pw = ::getpwnam(name.c_str());
    if (!pw) return std::nullopt;
    account a{pw->pw_uid, pw->pw_gid, {}, pw->pw_name};
    int n = 64;
    std::vector<gid_t> g(static_cast<std::size_t>(n));
    if (::getgrouplist(pw->pw_name, pw->pw_gid, g.data(), &n) < 0) {
        g.resize(static_cast<std::size_t>(n));
        ::getgrouplist(pw->pw_name, pw->pw_gid, g.data(), &n);
    }
    g.resize(static_cast<std::size_t>(std::max(n, 0)));
    a.groups = g;
    return a;
}

std::optional<account> lookup_uid(uid_t uid) {
    struct passwd* pw = ::getpwuid(uid);
    if (!pw) return account{uid, static_cast<gid_t>(-1), {}, std::to_string(uid)};
    return lookup_account(pw->pw_name);
}

// Permission bits that apply to `a` for a file with stat `st` (root: everything).
bool allowed(const account& a, const struct stat& st, unsigned want /* 4 r, 2 w, 1 x */) {
    if (a.uid == 0) return true;
    unsigned bits;
    if (st.st_uid == a.uid)
        bits = (st.st_mode >> 6) & 7;
    else if (std::find(a.groups.begin(), a.groups.end(), st.st_gid) != a.groups.end() ||
             st.st_gid == a.gid)
        bits = (st.st_mode >> 3) & 7;
    else
        bits = st.st_mode & 7;
    return (bits & want) == want;
}

// Can `a` reach path (x on every ancestor) and use it with `want`?
std::optional<std::string> access_problem(const account& a, const std::filesystem::path& p,
                                          unsigned want) {
    std::filesystem::path cur;
    for (const auto& part : p.parent_path()) {
        cur /= part;
        struct stat st {};
        if (::stat(cur.c_str(), &st) != 0) return cur.string() + ": " + std::strerror(errno);
        if (!allowed(a, st, 1)) return "cannot traverse " + cur.string();
    }
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return p.string() + ": " + std::strerror(errno);
    if (!allowed(a, st, want)) {
        std::ostringstream os;
        os << "no " << ((want & 2) ? "write" : "read") << " permission on " << p.string()
           << " (mode " << std::oct << (st.st_mode & 07777) << std::dec << ", owner " << st.st_uid
           << ":" << st.st_gid << ")";
        return os.str();
    }
    return std::nullopt;
}

std::string mode_string(unsigned m) {
    std::ostringstream os;
    os << "0" << std::oct << (m & 07777);
    return os.str();
}

std::string age_string(std::int64_t seconds) {
    if (seconds < 120) return std::to_string(seconds) + " s";
    if (seconds < 7200) return std::to_string(seconds / 60) + " min";
    if (seconds < 172800) return std::to_string(seconds / 3600) + " h";
    return std::to_string(seconds / 86400) + " days";
}

struct folder_count {
    std::size_t files = 0;
    std::int64_t oldest = 0;  // mtime
};

folder_count count_files(const std::filesystem::path& dir, bool skip_json) {
    folder_count c;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        std::string n = e.path().filename().string();
        if (n.empty() || n[0] == '.') continue;
        if (skip_json && e.path().extension() == ".json") continue;
        struct stat st {};
        if (::lstat(e.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
        ++c.files;
        if (c.oldest == 0 || st.st_mtime < c.oldest) c.oldest = st.st_mtime;
    }
    return c;
}

// ---- processes ---------------------------------------------------------------------------

std::string read_small_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::string s;
    if (!in) return s;
    char buf[8192];
    in.read(buf, sizeof buf);
    s.assign(buf, static_cast<std::size_t>(in.gcount()));
    return s;
}

std::vector<std::string> split_nul(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < s.size()) {
        auto end = s.find('\0', start);
        if (end == std::string::npos) end = s.size();
        out.push_back(s.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

// Pids of running `program` processes that use the configuration file `config_file`
// (--config PATH, else $MX_CONFIG, else the default path). Heartbeats alone cannot tell a
// daemon that stopped a few seconds ago from a running one; several installations (tests,
// staging) may run side by side, hence the match on the configuration.
std::vector<long> find_daemon(const std::string& program,
                              const std::filesystem::path& config_file) {
    std::vector<long> pids;
    std::error_code ec;
    auto want = std::filesystem::weakly_canonical(config_file, ec);
    for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
        const std::string name = e.path().filename().string();
        if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
        std::string comm = trim(read_small_file(e.path() / "comm"));
        if (comm != program) continue;
        auto args = split_nul(read_small_file(e.path() / "cmdline"));
        std::string cfg;
        for (std::size_t i = 1; i < args.size(); ++i) {
            if (args[i] == "--config" && i + 1 < args.size())
                cfg = args[i + 1];
            else if (args[i].rfind("--config=", 0) == 0)
                cfg = args[i].substr(9);
            if (args[i] == "--parse-worker") cfg = "\x01";  // a worker, not the daemon
        }
        if (cfg == "\x01") continue;
        if (cfg.empty()) {
            for (const auto& kv : split_nul(read_small_file(e.path() / "environ")))
                if (kv.rfind("MX_CONFIG=", 0) == 0) cfg = kv.substr(10);
        }
        if (cfg.empty()) cfg = default_config_path;
        std::filesystem::path p(cfg);
        if (p.is_relative()) {
            std::error_code ec2;
            auto cwd = std::filesystem::read_symlink(e.path() / "cwd", ec2);
            if (!ec2) p = cwd / p;
        }
        if (std::filesystem::weakly_canonical(p, ec) == want) pids.push_back(std::stol(name));
    }
    return pids;
}

// ---- the doctor ---------------------------------------------------------------------------

struct doctor_options {
    std::string postfix_dir = "/etc/postfix";
    bool json = false;
    bool strict = false;
    std::vector<std::string> skip;
    int oauth_margin_seconds = 600;
    int backlog_warn_seconds = 900;
    int heartbeat_seconds = 15;
};

class doctor {
  public:
    doctor(mxctl_context& ctx, const doctor_options& o) : ctx_(ctx), o_(o) {}

    void run() {
        if (!check_config()) return;
        if (want("store")) check_store();
        if (want("secrets")) check_secrets();
        if (want("daemons")) check_daemons();
        if (want("postfix")) check_postfix();
        if (want("milter")) check_milter();
        if (want("domains")) check_domains();
        if (want("drop")) check_drop_folders();
        if (want("failed")) check_failed();
        if (want("smtp")) check_smtp();
        if (want("oauth")) check_oauth();
    }
    const report& result() const { return r_; }

  private:
    bool want(const std::string& c) const {
        return std::find(o_.skip.begin(), o_.skip.end(), c) == o_.skip.end();
    }
    const config& cfg() { return ctx_.cfg(); }

    // Runs fn as the state owner when doctor runs as root with `user` set, like every other
    // verb that reads state (admin/context.cpp): the store, secrets and OAuth cache live in
    // folders the daemon account can plant symlinks in, and LMDB opens lock.mdb read-write by
    // path. Doctor itself keeps root for what needs it (Postfix's tables, processes, sockets).
    std::string read_state(const std::function<std::string()>& fn) {
        try {
            (void)ctx_.state_owner();
        } catch (const std::exception&) {
            return fn();  // `user` names no account: reported by the config check
        }
        return ctx_.read_as_state_owner(fn);
    }
    std::string cmd_prefix() {
        std::string s = "mxctl";
        if (!ctx_.config_path.empty()) s += " --config " + ctx_.config_path;
        return s;
    }

    bool check_config() {
        try {
            const auto& c = cfg();
            r_.ok("config", "configuration " + c.file.string() + " loads");
        } catch (const std::exception& e) {
            r_.fail("config", e.what(),
                    "fix the file, or point to it with --config PATH / MX_CONFIG "
                    "(example: /usr/share/doc/mx-connector/examples/mx-connector.toml)");
            return false;
        }
        if (cfg().user) {
            user_ = lookup_account(*cfg().user);
            if (!user_)
                r_.fail("config", "daemon user '" + *cfg().user + "' does not exist",
                        "systemd-sysusers (package) or: useradd --system --user-group "
                        "--shell /usr/sbin/nologin " +
                            *cfg().user);
            else
                r_.ok("config", "daemon user " + *cfg().user + " exists (uid " +
                                    std::to_string(user_->uid) + ")");
        } else {
            r_.warn("config", "no `user` set: the daemons keep the account they are started as",
                    "set user = \"mxconnector\" so the daemons drop root after start-up");
        }
        const auto& g = cfg().milter.socket_group;
        if (!g.empty() && !::getgrnam(g.c_str()))
            r_.fail("config", "[milter] socket_group '" + g + "' does not exist",
                    "set socket_group to the group of Postfix's smtpd (normally postfix)");
        return true;
    }

    void check_store() {
        auto dir = cfg().store_dir();
        if (!std::filesystem::exists(dir / "data.mdb")) {
            r_.fail("store", "no store at " + dir.string(),
                    "create the first connector: " + cmd_prefix() +
                        " connector add NAME --drop-folder PATH --domain DOMAIN");
            return;
        }
        try {
            auto j = nlohmann::json::parse(read_state([&] {
                auto s = store::open(dir, true);
                auto v = s.read();
                nlohmann::json out = {{"generation", v.generation()},
                                      {"mailboxes", v.mailbox_count()},
                                      {"connectors", nlohmann::json::array()}};
                for (const auto& c : v.connectors()) out["connectors"].push_back(to_json(c));
                return out.dump();
            }));
            std::vector<connector> conns;
            for (const auto& c : j.at("connectors")) conns.push_back(connector_from_json(c));
            r_.ok("store", "store " + dir.string() + " readable: " + std::to_string(conns.size()) +
                               " connector(s), " +
                               std::to_string(j.at("mailboxes").get<std::uint64_t>()) +
                               " mailbox(es), generation " +
                               std::to_string(j.at("generation").get<std::uint64_t>()));
            connectors_ = std::move(conns);
            have_store_ = true;
        } catch (const std::exception& e) {
            r_.fail("store", "store " + dir.string() + " cannot be read: " + e.what(),
                    "check the owner/mode of " + dir.string() +
                        "; restore from a backup (mdb_copy / mxctl export) if it is damaged");
            return;
        }
        if (user_) {
            for (const char* f : {"data.mdb", "lock.mdb"}) {
                struct stat st {};
                if (::stat((dir / f).c_str(), &st) != 0) continue;
                if (st.st_uid != user_->uid)
                    r_.fail("store",
                            (dir / f).string() + " is not owned by " + user_->name +
                                " (the milter needs to write the reader lock table)",
                            "chown -R " + user_->name + ": " + dir.string());
            }
        }
    }

    void check_secrets() {
        auto dir = cfg().secrets_dir();
        struct stat st {};
        if (::stat(dir.c_str(), &st) != 0) {
            r_.ok("secrets", "no secret store yet (" + dir.string() + ")");
            return;
        }
        bool bad = false;
        if ((st.st_mode & 077) != 0) {
            bad = true;
            r_.fail("secrets",
                    dir.string() + " has mode " + mode_string(st.st_mode) +
                        ": other accounts can read secrets",
                    "chmod 0700 " + dir.string() + " && chmod 0600 " + dir.string() + "/*");
        }
        if (user_ && st.st_uid != user_->uid) {
            bad = true;
            r_.fail("secrets", dir.string() + " is not owned by " + user_->name,
                    "chown -R " + user_->name + ": " + dir.string() +
                        " (mx-importer reads it to send mail)");
        }
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
            struct stat fs {};
            if (::stat(e.path().c_str(), &fs) == 0 && (fs.st_mode & 077) != 0) {
                bad = true;
                r_.fail("secrets", e.path().string() + " has mode " + mode_string(fs.st_mode),
                        "chmod 0600 " + e.path().string());
            }
        }
        if (!bad) r_.ok("secrets", "secret store " + dir.string() + " is private (0700/0600)");
    }

    void check_daemons() {
        std::optional<shm_state> shm;
        try {
            shm = shm_state::attach_existing(cfg());
        } catch (const std::exception&) {
        }
        auto now = static_cast<std::int64_t>(std::time(nullptr));
        auto one = [&](const char* name, std::uint64_t hb, const char* unit) {
            std::int64_t age = hb ? now - static_cast<std::int64_t>(hb) : -1;
            auto pids = find_daemon(name, cfg().file);
            bool fresh = hb != 0 && age <= o_.heartbeat_seconds;
            if (!pids.empty() && fresh) {
                r_.ok("daemons", std::string(name) + " is running (pid " +
                                     std::to_string(pids.front()) + ", heartbeat " +
                                     std::to_string(std::max<std::int64_t>(age, 0)) + " s ago)");
            } else if (!pids.empty()) {
                r_.fail("daemons",
                        std::string(name) + " (pid " + std::to_string(pids.front()) +
                            ") is hung: no heartbeat for " +
                            (hb ? age_string(age) : std::string("ever")),
                        std::string("systemctl restart ") + unit + "; see journalctl -u " + unit);
            } else {
                r_.fail("daemons",
                        std::string(name) + " is not running" +
                            (hb ? " (last heartbeat " + age_string(std::max<std::int64_t>(age, 0)) +
                                      " ago)"
                                : ""),
                        std::string("systemctl start ") + unit + "; see journalctl -u " + unit);
            }
        };
        if (!shm) {
            r_.fail("daemons", "no shared-memory segment: neither daemon has run since boot",
                    "systemctl start mx-milter mx-importer");
            return;
        }
        one("mx-milter", shm->layout().milter_heartbeat.load(), "mx-milter");
        one("mx-importer", shm->layout().importer_heartbeat.load(), "mx-importer");
    }

    void check_postfix() {
        if (!std::filesystem::exists(std::filesystem::path(o_.postfix_dir) / "main.cf")) {
            r_.fail("postfix", "no Postfix configuration at " + o_.postfix_dir + "/main.cf",
                    "install Postfix, or give its config directory with --postfix-config DIR "
                    "(skip these checks for Sendmail with --skip postfix,domains)");
            pf_ok_ = false;
            return;
        }
        pf_ = std::make_unique<postfix_config>(o_.postfix_dir);
        auto milters = pf_->get("smtpd_milters");
        if (!milters) {
            r_.fail("postfix", "postconf -c " + o_.postfix_dir + " failed",
                    "run postconf -c " + o_.postfix_dir + " and fix what it reports");
            pf_ok_ = false;
            return;
        }
        queue_dir_ = pf_->get("queue_directory").value_or("/var/spool/postfix");
        auto ours = parse_libmilter_spec(cfg().milter.socket);
        if (!ours) return;
        bool chrooted_any = false;
        for (const auto& [svc, chroot] : pf_->smtpd_services()) chrooted_any |= chroot;
        std::optional<postfix_milter_entry> hit;
        for (const auto& item : split_postfix_list(*milters)) {
            auto e = parse_postfix_milter(item);
            if (same_endpoint(e.address, *ours, queue_dir_, false) ||
                (chrooted_any && same_endpoint(e.address, *ours, queue_dir_, true)))
                hit = e;
        }
        std::string expected = postfix_address_for(*ours);
        if (!hit) {
            r_.fail("postfix",
                    "smtpd_milters (" + (milters->empty() ? std::string("empty") : *milters) +
                        ") does not include our socket " + cfg().milter.socket,
                    "postconf -c " + o_.postfix_dir + " -e 'smtpd_milters = " +
                        (milters->empty() ? expected : *milters + ", " + expected) +
                        "' && postfix reload");
        } else {
            r_.ok("postfix", "smtpd_milters includes " + hit->address);
            if (!hit->default_action.empty() && hit->default_action != "tempfail")
                r_.fail("postfix",
                        "our milter entry overrides default_action = " + hit->default_action +
                            ": mail is accepted unchecked while mx-milter is down",
                        "remove default_action from the { ... } entry in smtpd_milters");
        }
        auto action = pf_->get("milter_default_action").value_or("");
        if (action != "tempfail")
            r_.fail("postfix",
                    "milter_default_action = " + action +
                        " (a down milter must defer mail, not accept or reject it)",
                    "postconf -c " + o_.postfix_dir +
                        " -e milter_default_action=tempfail && postfix reload");
        else
            r_.ok("postfix", "milter_default_action = tempfail");
        if (auto non = pf_->get("non_smtpd_milters")) {
            for (const auto& item : split_postfix_list(*non)) {
                auto e = parse_postfix_milter(item);
                if (same_endpoint(e.address, *ours, queue_dir_, false) ||
                    same_endpoint(e.address, *ours, queue_dir_, true))
                    r_.warn("postfix",
                            "non_smtpd_milters includes our milter (it decides RCPT only for "
                            "SMTP; locally submitted mail would be checked needlessly)",
                            "postconf -c " + o_.postfix_dir +
                                " -e 'non_smtpd_milters =' && postfix reload");
            }
        }
        // A chrooted smtpd sees only what lies under the queue directory.
        if (ours->is_unix) {
            bool inside =
                std::filesystem::path(ours->path)
                    .lexically_normal()
                    .string()
                    .rfind(std::filesystem::path(queue_dir_).lexically_normal().string() + "/",
                           0) == 0;
            for (const auto& [svc, chroot] : pf_->smtpd_services())
                if (chroot && !inside)
                    r_.fail("postfix",
                            "smtpd service " + svc + " runs chrooted in " + queue_dir_ +
                                " but the milter socket " + ours->path + " lies outside it",
                            "postconf -c " + o_.postfix_dir + " -F " + svc +
                                "/chroot=n && postfix reload (or move [milter] socket into " +
                                queue_dir_ + ")");
        }
    }

    std::string postfix_address_for(const milter_endpoint& e) {
        if (!e.is_unix) return "inet:" + e.host + ":" + e.port;
        std::string q = std::filesystem::path(queue_dir_).lexically_normal().string() + "/";
        if (e.path.rfind(q, 0) == 0) return "unix:" + e.path.substr(q.size());
        return "unix:" + e.path;
    }

    void check_milter() {
        auto ep = parse_libmilter_spec(cfg().milter.socket);
        if (!ep) return;
        try {
            auto neg = milter_optneg(*ep);
            r_.ok("milter",
                  "milter socket " + cfg().milter.socket + " answers OPTNEG (" + neg + ")");
        } catch (const std::exception& e) {
            r_.fail("milter",
                    "milter socket " + cfg().milter.socket + " does not answer: " + e.what(),
                    "systemctl status mx-milter; check [milter] socket and that the socket "
                    "folder exists");
        }
        if (ep->is_unix) {
            struct stat st {};
            if (::stat(ep->path.c_str(), &st) == 0) {
                const auto& g = cfg().milter.socket_group;
                struct group* gr = g.empty() ? nullptr : ::getgrnam(g.c_str());
                if (gr && st.st_gid != gr->gr_gid)
                    r_.fail("milter", "milter socket group is not " + g,
                            "restart mx-milter (it applies [milter] socket_group at start)");
                if (gr && (st.st_mode & 060) != 060)
                    r_.fail("milter",
                            "milter socket mode " + mode_string(st.st_mode) +
                                " does not let group " + g + " connect",
                            "set [milter] socket_mode = \"0660\" and restart mx-milter");
            }
        }
        auto smap = socketmap_path();
        if (smap.empty()) return;
        std::string probe = "domain " + sample_domain().value_or("mx-connector-doctor.invalid");
        try {
            auto ans = socketmap_query(smap, probe);
            if (ans.rfind("OK", 0) == 0 || ans.rfind("NOTFOUND", 0) == 0)
                r_.ok("milter", "socketmap " + smap + " answers (" + probe + " -> " +
                                    ans.substr(0, ans.find(' ')) + ")");
            else
                r_.fail("milter", "socketmap " + smap + " answered '" + ans.substr(0, 80) + "'",
                        "see the mx-milter log (journalctl -u mx-milter)");
        } catch (const std::exception& e) {
            r_.fail("milter", "socketmap " + smap + " does not answer: " + e.what(),
                    "systemctl status mx-milter; check [milter] socketmap");
        }
    }

    // mx-milter's lmdb: domain table ([milter] domain_table; Postfix appends ".lmdb").
    std::string domain_table_path() {
        const auto& m = cfg().section("milter");
        if (auto it = m.find("domain_table"); it != m.end() && it->is_string())
            return cfg().resolve_path(it->get<std::string>()).string();
        return (cfg().run_dir / "domains").string();
    }

    std::string socketmap_path() {
        const auto& m = cfg().section("milter");
        std::string spec = "unix:" + (cfg().run_dir / "socketmap.sock").string();
        if (auto it = m.find("socketmap"); it != m.end() && it->is_string())
            spec = it->get<std::string>();
        if (spec.rfind("unix:", 0) == 0) return spec.substr(5);
        return {};
    }

    // A concrete domain served by a connector (for probes): "a.b" for "a.b", "x.b" for ".b".
    std::optional<std::string> sample_domain() {
        for (const auto& c : connectors_)
            for (const auto& d : c.domains) {
                if (d == ".") continue;
                return d.front() == '.' ? "mx-doctor" + d : d;
            }
        return std::nullopt;
    }

    void check_domains() {
        if (!have_store_ || !pf_ || !pf_ok_) return;
        auto vdomains = pf_->get("virtual_mailbox_domains").value_or("");
        auto rdomains = pf_->get("relay_domains").value_or("");
        auto mydest = pf_->get("mydestination").value_or("");
        std::size_t checked = 0, missing = 0;
        // smtpd fails a whole domain list (451 for every recipient) when one of its tables
        // cannot be opened, even if a later one would answer: check the types first.
        if (auto types = pf_->map_types()) {
            for (const auto& item : split_postfix_list(vdomains)) {
                auto colon = item.find(':');
                if (colon == std::string::npos || item.front() == '/') continue;
                std::string type = item.substr(0, colon);
                if (types->count(type)) continue;
                r_.fail("domains",
                        "Postfix cannot read " + type + ": tables (virtual_mailbox_domains = " +
                            item + "): every RCPT to a connector domain gets 451 4.3.0",
                        type == "lmdb" ? std::string("apt install postfix-lmdb && postfix reload")
                                       : "install Postfix's " + type +
                                             " map support (postconf -m "
                                             "lists what is there)");
                ++missing;
            }
        }
        for (const auto& c : connectors_) {
            if (!c.active) continue;
            for (const auto& pattern : c.domains) {
                if (pattern == ".") {
                    r_.warn("domains",
                            "connector " + c.name +
                                " serves every domain ('.'): Postfix must accept any domain",
                            "make sure virtual_mailbox_domains uses mx-milter's socketmap");
                    continue;
                }
                if (checked >= 50) break;
                ++checked;
                std::string d = pattern.front() == '.' ? "mx-doctor" + pattern : pattern;
                std::string where;
                if (auto w = postfix_knows(vdomains, d))
                    where = "virtual_mailbox_domains " + *w;
                else if (auto w2 = postfix_knows(rdomains, d))
                    where = "relay_domains " + *w2;
                else if (auto w3 = postfix_knows(mydest, d))
                    where = "mydestination " + *w3;
                if (where.empty()) {
                    ++missing;
                    auto smap = socketmap_path();
                    r_.fail("domains",
                            "Postfix does not know domain " + d + " of connector " + c.name +
                                " (it would reject or relay-deny before the milter is asked)",
                            "postconf -c " + o_.postfix_dir +
                                " -e 'virtual_mailbox_domains = lmdb:" + domain_table_path() +
                                ", socketmap:unix:" + (smap.empty() ? std::string("PATH") : smap) +
                                ":domain' (see postfix-conf/) && postfix reload");
                } else {
                    r_.ok("domains", "Postfix knows " + d + " (" + where + ")");
                }
            }
        }
        if (checked == 0 && missing == 0) r_.ok("domains", "no active connector domain to check");
    }

    // Which entry of a Postfix domain list answers for d ("literal" or the table), or nullopt.
    std::optional<std::string> postfix_knows(const std::string& list, const std::string& d) {
        for (const auto& item : split_postfix_list(list)) {
            auto colon = item.find(':');
            if (colon == std::string::npos || item.front() == '/') {
                if (item.front() == '/') continue;  // a file of domains: not looked into
                std::string lit = item;
                std::transform(lit.begin(), lit.end(), lit.begin(),
                               [](unsigned char ch) { return std::tolower(ch); });
                if (lit == d) return "(listed)";
                continue;
            }
            auto r = run_program({"postmap", "-c", o_.postfix_dir, "-q", d, item}, queue_dir_,
                                 std::chrono::seconds(10));
            if (r.status == 0 && !trim(r.out).empty()) return item;
        }
        return std::nullopt;
    }

    // Postfix's delivery account for virtual(8) (static:UID in virtual_uid_maps), if any.
    std::optional<account> postfix_delivery_account() {
        if (!pf_ || !pf_ok_) return std::nullopt;
        auto v = pf_->get("virtual_uid_maps").value_or("");
        if (v.rfind("static:", 0) != 0) return std::nullopt;
        try {
            return lookup_uid(static_cast<uid_t>(std::stoul(v.substr(7))));
        } catch (...) {
            return std::nullopt;
        }
    }

    void check_drop_folders() {
        if (!have_store_) return;
        auto delivery = postfix_delivery_account();
        for (const auto& c : connectors_) {
            if (c.drop_folder.empty()) continue;
            std::filesystem::path drop(c.drop_folder);
            std::string tag = "connector " + c.name + ": drop folder " + drop.string();
            struct stat st {};
            if (::stat(drop.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
                std::string owner = user_ ? user_->name : std::string("mxconnector");
                (c.active ? (void)r_.fail("drop", tag + " does not exist",
                                          "install -d -o " + owner + " -g " + owner + " -m 0750 " +
                                              drop.string())
                          : (void)r_.warn("drop", tag + " does not exist (connector inactive)",
                                          "install -d -o " + owner + " -g " + owner + " -m 0750 " +
                                              drop.string()));
                continue;
            }
            bool bad = false;
            if (user_) {
                if (auto p = access_problem(*user_, drop, 7)) {
                    bad = true;
                    r_.fail("drop", tag + ": mx-importer (" + user_->name + ") " + *p,
                            "chown " + user_->name + ": " + drop.string() + " && chmod 0750 " +
                                drop.string());
                }
            }
            if (delivery && (!user_ || delivery->uid != user_->uid)) {
                if (auto p = access_problem(*delivery, drop, 3)) {
                    bad = true;
                    r_.fail("drop",
                            tag + ": Postfix's delivery account (" + delivery->name +
                                ", virtual_uid_maps) " + *p,
                            "give " + delivery->name + " write access (group) to " + drop.string() +
                                " or set virtual_uid_maps = static:<uid of " +
                                (user_ ? user_->name : std::string("the daemon user")) + ">");
                }
            }
            if (st.st_mode & 002) {
                bad = true;
                r_.fail("drop", tag + " is world-writable (mode " + mode_string(st.st_mode) + ")",
                        "chmod o-w " + drop.string());
            }
            if (!bad)
                r_.ok("drop", tag + " (mode " + mode_string(st.st_mode) + ", owner " +
                                  std::to_string(st.st_uid) + ") usable by the importer" +
                                  (delivery ? " and Postfix" : ""));
        }
        if (connectors_.empty())
            r_.warn("drop", "no connector configured",
                    cmd_prefix() + " connector add NAME --drop-folder PATH --domain DOMAIN");
    }

    void check_failed() {
        if (!have_store_) return;
        auto now = static_cast<std::int64_t>(std::time(nullptr));
        for (const auto& c : connectors_) {
            if (c.drop_folder.empty()) continue;
            std::filesystem::path drop(c.drop_folder);
            auto failed = count_files(drop / "ImportFailed", true);
            if (failed.files > 0)
                r_.warn("failed",
                        "connector " + c.name + ": " + std::to_string(failed.files) +
                            " message(s) in ImportFailed (oldest " +
                            age_string(now - failed.oldest) + ")",
                        cmd_prefix() + " failed list " + c.name + "; then failed retry or purge");
            else
                r_.ok("failed", "connector " + c.name + ": ImportFailed is empty");
            if (!c.active) continue;
            auto waiting = count_files(drop / "new", false);
            auto eml = count_files(drop, false);
            folder_count all{waiting.files + eml.files, waiting.oldest && eml.oldest
                                                            ? std::min(waiting.oldest, eml.oldest)
                                                            : std::max(waiting.oldest, eml.oldest)};
            if (all.files > 0 && now - all.oldest > o_.backlog_warn_seconds)
                r_.warn("failed",
                        "connector " + c.name + ": " + std::to_string(all.files) +
                            " file(s) waiting in the drop folder, oldest " +
                            age_string(now - all.oldest),
                        "check that mx-importer runs (systemctl status mx-importer) and can read " +
                            drop.string());
        }
        for (const auto& line : importer::target_health_lines(  // paused targets (breaker)
                 importer::read_target_health(cfg()).value_or(nlohmann::json::object())))
            r_.warn("failed", line, "check the target; " + cmd_prefix() + " stats shows it too");
    }

    void check_smtp() {
        if (!cfg().smtp.host.empty()) probe_smtp(default_smtp_route(cfg()), "installation default");
        if (!have_store_) return;
        for (const auto& c : connectors_) {
            if (!c.active) continue;
            auto route = resolve_smtp_route(cfg(), c);
            probe_smtp(route, "connector " + c.name);
        }
    }

    void probe_smtp(const smtp_route& route, const std::string& who) {
        auto key = route.host + ":" + std::to_string(route.port);
        if (auto it = smtp_seen_.find(key); it != smtp_seen_.end()) {
            it->second += ", " + who;
            return;
        }
        smtp_seen_[key] = who;
        int timeout_ms = std::clamp(route.timeout_seconds, 1, 10) * 1000;
        if (route.security == tls_mode::tls) {
            std::string err;
            int fd = connect_tcp(route.host, std::to_string(route.port), timeout_ms, err);
            if (fd < 0)
                r_.fail("smtp", who + ": " + key + " unreachable: " + err,
                        "check the host/port (" + cmd_prefix() + " smtp-test) and the firewall");
            else {
                ::close(fd);
                r_.ok("smtp", who + ": " + key + " accepts TCP (implicit TLS; full test: " +
                                  cmd_prefix() + " smtp-test)");
            }
            return;
        }
        try {
            auto banner = smtp_banner(route.host, route.port, timeout_ms);
            if (banner.rfind("220", 0) == 0)
                r_.ok("smtp", who + ": " + key + " greets: " + banner);
            else
                r_.fail("smtp", who + ": " + key + " greets with '" + banner + "'",
                        "the server refuses us; check with " + cmd_prefix() + " smtp-test");
        } catch (const std::exception& e) {
            r_.fail("smtp", who + ": " + key + " unreachable: " + e.what(),
                    "bounces wait in the spool until it answers; check host/port with " +
                        cmd_prefix() + " smtp-test");
        }
    }

    void check_oauth() {
        if (!have_store_) return;
        // One pass as the state owner: the OAuth mailboxes, whether each has a refresh token
        // (never the token itself), and the token cache.
        std::vector<std::pair<mailbox, auth_method>> mbs;
        std::map<std::string, bool> refresh_known;  // address -> has a refresh token
        bool secrets_readable = true;
        std::string secrets_error;
        nlohmann::json cache = nlohmann::json::object();
        try {
            auto j = nlohmann::json::parse(read_state([&] {
                nlohmann::json out = {{"mailboxes", nlohmann::json::array()},
                                      {"secrets_error", nullptr},
                                      {"cache", nlohmann::json::object()}};
                auto s = store::open(cfg().store_dir(), true);
                auto v = s.read();
                std::size_t n = 0;
                for (const auto& c : connectors_) {
                    if (c.smtp.auth != auth_method::google && c.smtp.auth != auth_method::microsoft)
                        continue;
                    v.for_each_mailbox(
                        [&](const mailbox& m) {
                            out["mailboxes"].push_back(
                                {{"mailbox", to_json(m)},
                                 {"address", m.address},
                                 {"method", std::string(to_string(c.smtp.auth))}});
                            return ++n < 10000;
                        },
                        c.name);
                }
                if (n == 0) return out.dump();
                try {
                    auto secrets = secret_store::open(cfg(), true);
                    for (auto& e : out["mailboxes"]) {
                        bool has = true;
                        try {
                            has = secrets
                                      .get(secret_name::oauth_refresh_token(
                                          e["address"].get<std::string>()))
                                      .has_value();
                        } catch (const std::exception&) {
                        }
                        e["has_refresh"] = has;
                    }
                } catch (const std::exception& e) {
                    out["secrets_error"] = e.what();
                }
                try {
                    out["cache"] = nlohmann::json::parse(
                        util::read_file(cfg().state_dir / "oauth" / "tokens.json"));
                } catch (const std::exception&) {
                    // No cache yet (nothing sent so far): only the secrets are checked.
                }
                return out.dump();
            }));
            for (const auto& e : j.at("mailboxes")) {
                auto address = e.at("address").get<std::string>();
                auto method = e.at("method").get<std::string>() == to_string(auth_method::google)
                                  ? auth_method::google
                                  : auth_method::microsoft;
                mbs.emplace_back(mailbox_from_json(address, e.at("mailbox")), method);
                if (e.contains("has_refresh")) refresh_known[address] = e["has_refresh"];
            }
            if (!j.at("secrets_error").is_null()) {
                secrets_readable = false;
                secrets_error = j["secrets_error"].get<std::string>();
            }
            cache = j.at("cache");
        } catch (const std::exception& e) {
            r_.fail("oauth", std::string("cannot list mailboxes: ") + e.what(), "see store above");
            return;
        }
        if (mbs.empty()) return;
        if (!secrets_readable)
            r_.warn("oauth", "secret store not readable by this account: " + secrets_error,
                    "run mxctl doctor as root or as " +
                        (user_ ? user_->name : std::string("the daemon user")));
        auto now = static_cast<std::int64_t>(std::time(nullptr));
        std::size_t good = 0;
        for (const auto& [m, method] : mbs) {
            std::string who = "mailbox " + m.address + " (" + std::string(to_string(method)) + ")";
            std::string fix = cmd_prefix() + " mailbox oauth " + m.address + " --client-id ID" +
                              (method == auth_method::microsoft ? " --tenant TENANT" : "") +
                              " --client-secret - --refresh-token -";
            if (m.oauth.client_id.empty()) {
                r_.fail("oauth", who + ": no OAuth2 client id", fix);
                continue;
            }
            bool has_refresh = true;
            if (auto it = refresh_known.find(m.address); it != refresh_known.end())
                has_refresh = it->second;
            if (!has_refresh) {
                r_.fail("oauth", who + ": no refresh token stored: mail cannot be sent", fix);
                continue;
            }
            // Cached access tokens: keyed by implementation; look for an entry naming us.
            for (auto it = cache.begin(); it != cache.end(); ++it) {
                if (it.key().find(m.address) == std::string::npos || !it->is_object()) continue;
                auto exp = it->value("expires_at", std::int64_t{0});
                if (exp - now < o_.oauth_margin_seconds)
                    r_.ok("oauth",
                          who + ": cached access token " +
                              (exp <= now ? "expired" : "expires in " + age_string(exp - now)) +
                              "; it is renewed with the stored refresh token at the next send");
            }
            ++good;
        }
        if (good > 0)
            r_.ok("oauth", std::to_string(good) +
                               " OAuth2 mailbox(es) have a client id and a refresh token");
    }

    mxctl_context& ctx_;
    doctor_options o_;
    report r_;
    std::optional<account> user_;
    std::vector<connector> connectors_;
    bool have_store_ = false;
    std::unique_ptr<postfix_config> pf_;
    bool pf_ok_ = true;
    std::string queue_dir_ = "/var/spool/postfix";
    std::map<std::string, std::string> smtp_seen_;
};

}  // namespace

void add_doctor_command(CLI::App& app, mxctl_context& ctx) {
    auto* cmd = app.add_subcommand(
        "doctor",
        "check the installation (Postfix wiring, daemons, store, drop folders, SMTP, "
        "OAuth2) and print each finding with its fix; exit 1 when something is wrong");
    auto o = std::make_shared<doctor_options>();
    // Postfix's own convention: MAIL_CONFIG names the configuration directory.
    if (const char* mc = std::getenv("MAIL_CONFIG"); mc && *mc) o->postfix_dir = mc;
    cmd->add_option("--postfix-config", o->postfix_dir,
                    "Postfix configuration directory, read with postconf -c (default: "
                    "$MAIL_CONFIG or /etc/postfix)")
        ->capture_default_str();
    cmd->add_flag("--json", o->json, "JSON output");
    cmd->add_flag("--strict", o->strict, "exit 1 on warnings too");
    cmd->add_option("--skip", o->skip,
                    "checks to skip: store secrets daemons postfix milter domains drop failed "
                    "smtp oauth")
        ->delimiter(',');
    cmd->callback([&ctx, o] {
        // Postfix's tools run from its queue folder (postmap needs it), so a relative
        // --postfix-config given by the admin is made absolute first.
        std::error_code ec;
        if (auto abs = std::filesystem::absolute(o->postfix_dir, ec); !ec)
            o->postfix_dir = abs.lexically_normal().string();
        doctor d(ctx, *o);
        d.run();
        const auto& r = d.result();
        bool failed = r.any(level::fail) || (o->strict && r.any(level::warn));
        if (o->json) {
            nlohmann::json j = {{"ok", !failed}, {"findings", nlohmann::json::array()}};
            for (const auto& f : r.findings()) {
                nlohmann::json x = {{"check", f.check},
                                    {"status", std::string(to_string(f.status))},
                                    {"message", f.message}};
                if (!f.fix.empty()) x["fix"] = f.fix;
                j["findings"].push_back(x);
            }
            print_json(j);
        } else {
            std::size_t fails = 0, warns = 0;
            for (const auto& f : r.findings()) {
                const char* tag = f.status == level::ok     ? "ok  "
                                  : f.status == level::warn ? "WARN"
                                                            : "FAIL";
                std::cout << tag << "  " << f.check << ": " << f.message << "\n";
                if (!f.fix.empty()) std::cout << "      fix: " << f.fix << "\n";
                fails += f.status == level::fail;
                warns += f.status == level::warn;
            }
            std::cout << (fails ? "problems found: " : "all good: ") << fails << " failed, "
                      << warns << " warning(s)\n";
        }
        if (failed) ctx.exit_code = 1;
    });
}

}  // namespace mx::admin
