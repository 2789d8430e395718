// socketmap: the Postfix socketmap service (socketmap_table(5)) answered from the store, so
// Postfix knows the connector domains and their drop folders without a second list.
//
// Maps (the "name" of socketmap:unix:PATH:name or socketmap:inet:HOST:PORT:name):
//   domain   key: a domain       OK <connector>   if a connector serves it (exact, .parent or ".")
//   mailbox  key: an address     OK <drop folder without leading '/'>/  for EVERY address of a
//                                served domain (virtual(8) Maildir with virtual_mailbox_base = /);
//                                the milter has already refused unknown users at RCPT time.
//   connector key: an address or domain  OK <connector name>
//   mailertable key: a domain   OK mxdrop:<drop folder>  (Sendmail's socket map class:
//                               FEATURE(`mailertable', `socket ...') in postfix-conf/sendmail.mc;
//                               "mxdrop" is the mailer defined there). Sendmail also asks
//                               ".parent" and "." keys after a miss; the full domain already
//                               covers every pattern, so those are NOTFOUND.
// Postfix sends socketmaps only full keys (no "@domain" or extension-stripped partial keys),
// so one answer per address is enough. Any other map name, a malformed netstring or a request
// above 100000 octets gets a PERM reply (and the connection is closed after a framing error);
// a store problem is TEMP, so Postfix defers instead of bouncing.
// Sockets: unix:PATH (owner/group/mode set before it is visible: place_unix_socket), or
// inet:PORT[@HOST] on a loopback address only (127.0.0.1 when HOST is left out; for a chrooted
// Postfix that cannot reach the unix socket; the answers name connectors and drop folders, so
// they are never served beyond this machine).
// Limits (any local user can connect to a loopback port): see socketmap_max_clients and
// socketmap_idle_timeout in milter.hpp — a full table closes the quietest connection rather
// than refusing the new one, and a partial request must be complete within the idle timeout,
// so idle or trickling connections can never shut Postfix out.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "global/address.hpp"
#include "global/logging.hpp"
#include "milter.hpp"

namespace mx::milter {
namespace {

[[noreturn]] void fail_errno(const char* function) {
    throw std::system_error(errno, std::generic_category(), function);
}

// "OK data" only when the data is safe for Postfix: one line, no NUL.
std::string ok(std::string_view data) {
    for (char c : data)
        if (c == '\r' || c == '\n' || c == '\0') return "PERM unusable value in store";
    return "OK " + std::string(data);
}

// Sendmail's mailertable: "mxdrop:" + the drop folder. Only paths Sendmail's tokenizer
// rebuilds unchanged (no blanks, quotes, parentheses, '<>', ',', ';', '\\', '$'): anything
// else is a PERM answer naming the connector, never a wrong path.
std::string mailertable_answer(daemon_state& st, std::string_view key) {
    if (key.front() == '.') return "NOTFOUND ";
    auto d = normalize_domain(key);
    if (!d) return "NOTFOUND ";
    return st.store->with_view([&](store_view& v) -> std::string {
        auto m = v.match_domain(*d);
        if (!m) return "NOTFOUND ";
        auto c = v.find_connector(m->connector);
        if (!c) return "TEMP domain names a missing connector";
        auto value = drop_folder_value(*c);
        while (value.size() > 1 && value.back() == '/') value.pop_back();
        bool usable = !value.empty();
        for (char ch : value)
            if (std::strchr(" \t\"'()<>,;\\$@:", ch) != nullptr) usable = false;
        if (!usable) return "PERM connector " + c->name + " has no drop folder usable by Sendmail";
        return ok("mxdrop:/" + value);
    });
}

}  // namespace

std::string socketmap_answer(daemon_state& st, std::string_view request) {
    try {
        auto sp = request.find(' ');
        if (sp == std::string_view::npos) return "PERM request must be \"name key\"";
        std::string_view name = request.substr(0, sp);
        std::string_view key = request.substr(sp + 1);
        if (key.empty() || key.size() > 1024) return "NOTFOUND ";
        if (key.find('\0') != std::string_view::npos) return "NOTFOUND ";

        if (name == "domain") {
            // Parent-style keys (".example.com") are Postfix partial lookups: the full
            // domain is asked as well, so answer only that.
            if (key.front() == '.') return "NOTFOUND ";
            auto d = normalize_domain(key);
            if (!d) return "NOTFOUND ";
            return st.store->with_view([&](store_view& v) -> std::string {
                auto m = v.match_domain(*d);
                if (!m) return "NOTFOUND ";
                return ok(m->connector);
            });
        }
        if (name == "mailertable") return mailertable_answer(st, key);
        if (name == "mailbox" || name == "connector") {
            std::string domain;
            if (key.find('@') == std::string_view::npos) {
                if (name == "mailbox") return "NOTFOUND ";
                auto d = normalize_domain(key);
                if (!d) return "NOTFOUND ";
                domain = *d;
            } else if (key.front() == '@') {
                auto d = normalize_domain(key.substr(1));
                if (!d) return "NOTFOUND ";
                domain = *d;
            } else {
                auto parsed = parse_address(key, parse_options{});
                auto* a = std::get_if<address>(&parsed);
                if (!a) return "NOTFOUND ";
                domain = a->domain;
            }
            return st.store->with_view([&](store_view& v) -> std::string {
                auto m = v.match_domain(domain);
                if (!m) return "NOTFOUND ";
                if (name == "connector") return ok(m->connector);
                auto c = v.find_connector(m->connector);
                if (!c) return "TEMP domain names a missing connector";
                auto value = drop_folder_value(*c);
                if (value.empty())
                    return "PERM connector " + c->name + " has no usable drop folder";
                return ok(value);
            });
        }
        return "PERM unknown map name (use domain, mailbox, connector or mailertable)";
    } catch (const store_unavailable& e) {
        return "TEMP store not available yet";
    } catch (const std::exception& e) {
        spdlog::warn("socketmap lookup failed: {}", log_safe(e.what()));
        return "TEMP lookup failed";
    } catch (...) {
        return "TEMP lookup failed";
    }
}

// ---- server -----------------------------------------------------------------------------

namespace {

bool is_loopback(const sockaddr* sa) {
    if (sa->sa_family == AF_INET)
        return (ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const auto& a = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
        return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
    }
    return false;
}

// "inet:PORT@HOST" / "inet6:PORT@HOST" (libmilter's syntax, as for [milter] socket): a
// listening TCP socket on a loopback address. The answers name connectors and drop folders,
// so they are never offered beyond this machine.
int listen_inet(const std::string& spec) {
    auto colon = spec.find(':');
    auto at = spec.find('@', colon);
    if (at == colon + 1 || (at != std::string::npos && at + 1 == spec.size()))
        throw std::runtime_error("milter.socketmap: expected inet:PORT@HOST, got '" + spec + "'");
    bool v6 = spec.rfind("inet6:", 0) == 0;
    std::string port = spec.substr(colon + 1, at == std::string::npos ? at : at - colon - 1);
    std::string host = at == std::string::npos ? (v6 ? "::1" : "127.0.0.1") : spec.substr(at + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = v6 ? AF_INET6 : AF_UNSPEC;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
        throw std::runtime_error("milter.socketmap: " + spec + ": " + ::gai_strerror(rc));
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, ::freeaddrinfo);
    if (!is_loopback(res->ai_addr))
        throw std::runtime_error("milter.socketmap: " + spec +
                                 " is not a loopback address (its answers name connectors and "
                                 "drop folders: use 127.0.0.1 or ::1, or a unix: socket)");
    int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) fail_errno("socket");
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        int e = errno;
        ::close(fd);
        errno = e;
        fail_errno(("bind " + spec).c_str());
    }
    return fd;
}

}  // namespace

socketmap_server::socketmap_server(daemon_state& st, const std::string& spec,
                                   const socket_access& access)
    : st_(st) {
    path_ = unix_socket_path(spec);
    if (path_.empty() && (spec.rfind("inet:", 0) == 0 || spec.rfind("inet6:", 0) == 0)) {
        listen_fd_ = listen_inet(spec);
        if (::listen(listen_fd_, 128) != 0) fail_errno("listen");
    } else if (path_.empty()) {
        throw std::runtime_error(
            "milter.socketmap: expected unix:PATH or inet:PORT@HOST (loopback), got '" + spec +
            "'");
    } else {
        if (path_.size() >= sizeof(sockaddr_un::sun_path))
            throw std::runtime_error("milter.socketmap: path too long: " + path_);
        listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (listen_fd_ < 0) fail_errno("socket");
        place_unix_socket(path_, access, [&](const std::string& p) {
            sockaddr_un sa{};
            sa.sun_family = AF_UNIX;
            std::memcpy(sa.sun_path, p.c_str(), p.size() + 1);
            if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
                fail_errno(("bind " + path_).c_str());
            if (::listen(listen_fd_, 128) != 0) fail_errno("listen");
        });
    }
    if (::pipe2(wake_fd_, O_CLOEXEC | O_NONBLOCK) != 0) fail_errno("pipe2");
}

socketmap_server::~socketmap_server() {
    stop();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    for (int fd : wake_fd_)
        if (fd >= 0) ::close(fd);
}

void socketmap_server::start() {
    thread_ = std::thread([this] { run(); });
}

void socketmap_server::stop() noexcept {
    if (thread_.joinable()) {
        char c = 'x';
        (void)!::write(wake_fd_[1], &c, 1);
        thread_.join();
        if (!path_.empty()) ::unlink(path_.c_str());
    }
}

void socketmap_server::run() noexcept {
    struct client {
        int fd;
        std::string in, out;
        bool closing = false;
        std::chrono::steady_clock::time_point last;
    };
    std::vector<client> clients;
    std::vector<pollfd> pfds;
    std::uint64_t evicted = 0;
    auto last_warning = std::chrono::steady_clock::time_point{};
    for (;;) {
        pfds.clear();
        pfds.push_back({wake_fd_[0], POLLIN, 0});
        pfds.push_back({listen_fd_, POLLIN, 0});  // always: a full table evicts, never refuses
        for (auto& c : clients)
            pfds.push_back({c.fd, static_cast<short>(c.out.empty() ? POLLIN : POLLOUT), 0});
        int n = ::poll(pfds.data(), pfds.size(), 1000);
        if (n < 0) {
            if (errno == EINTR) continue;
            spdlog::error("socketmap poll failed: {}", std::strerror(errno));
            return;
        }
        if (pfds[0].revents) break;  // stop()
        auto now = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < clients.size(); ++i) {
            auto& c = clients[i];
            short re = pfds[i + 2].revents;
            if (re & (POLLERR | POLLNVAL)) {
                c.closing = true;
                c.out.clear();
                continue;
            }
            if ((re & POLLOUT) && !c.out.empty()) {
                ssize_t w = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
                if (w > 0)
                    c.out.erase(0, static_cast<std::size_t>(w));
                else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    c.closing = true;
                    c.out.clear();
                }
            }
            if (re & (POLLIN | POLLHUP)) {
                char buf[4096];
                ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
                if (r <= 0) {
                    if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                        c.closing = true;
                        c.out.clear();
                    }
                    continue;
                }
                c.in.append(buf, static_cast<std::size_t>(r));
                // Answer every complete request (Postfix sends one at a time, but a client
                // may pipeline).
                for (;;) {
                    std::optional<std::pair<std::string, std::size_t>> req;
                    try {
                        req = parse_netstring(c.in, socketmap_max_request);
                    } catch (const netstring_error& e) {
                        c.out += netstring(std::string("PERM ") + e.what());
                        c.in.clear();
                        c.closing = true;  // framing is lost: answer, then close
                        break;
                    }
                    if (!req) break;
                    c.in.erase(0, req->second);
                    c.out += netstring(socketmap_answer(st_, req->first));
                    c.last = now;  // only answered requests count as activity
                }
                // Try to send right away: replies are small and the socket usually writable.
                if (!c.out.empty()) {
                    ssize_t w = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
                    if (w > 0) c.out.erase(0, static_cast<std::size_t>(w));
                }
            }
        }
        // Drop finished, broken and idle clients (idle: no request answered for the timeout,
        // whether the client sends nothing, trickles a partial request or reads no replies).
        for (std::size_t i = clients.size(); i-- > 0;) {
            auto& c = clients[i];
            bool idle = now - c.last > socketmap_idle_timeout;
            if ((c.closing && c.out.empty()) || idle) {
                ::close(c.fd);
                clients.erase(clients.begin() + static_cast<std::ptrdiff_t>(i));
            }
        }
        if (pfds[1].revents & POLLIN) {
            for (;;) {
                int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) break;
                if (clients.size() >= socketmap_max_clients) {
                    // Full: the quietest connection makes room, the new one is served. A
                    // flood of idle connections thus only ever pushes out its own oldest.
                    auto q = std::min_element(
                        clients.begin(), clients.end(),
                        [](const client& a, const client& b) { return a.last < b.last; });
                    ::close(q->fd);
                    clients.erase(q);
                    ++evicted;
                    if (now - last_warning > std::chrono::minutes(1)) {
                        last_warning = now;
                        spdlog::warn(
                            "socketmap: {} connections open (the limit); closing the quietest "
                            "for each new one ({} so far)",
                            socketmap_max_clients, evicted);
                    }
                }
                clients.push_back(client{fd, {}, {}, false, now});
            }
        }
    }
    for (auto& c : clients) ::close(c.fd);
}

}  // namespace mx::milter
