#include "milter_client.hpp"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace mx::milter_test {
namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

void put32(std::string& s, std::uint32_t v) {
    v = htonl(v);
    s.append(reinterpret_cast<const char*>(&v), 4);
}

std::uint32_t get32(const char* p) {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    return ntohl(v);
}

int connect_path(const std::string& path) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path) throw std::runtime_error("socket path too long");
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket");
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        int e = errno;
        ::close(fd);
        errno = e;
        fail("connect " + path);
    }
    return fd;
}

void write_all(int fd, std::string_view b) {
    while (!b.empty()) {
        ssize_t w = ::send(fd, b.data(), b.size(), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) fail("send");
        b.remove_prefix(static_cast<std::size_t>(w));
    }
}

}  // namespace

std::string reply::code() const {
    switch (cmd) {
        case 'c':
        case 'a':
            return "250";
        case 'r':
            return "5xx";
        case 't':
            return "4xx";
        case 'y':
            return data.substr(0, 3);
    }
    return std::string("?") + cmd;
}

std::string reply::text() const {
    return cmd == 'y' && data.size() > 4 ? data.substr(4) : std::string();
}

client client::connect_unix(const std::string& path, int timeout_ms) {
    return client(connect_path(path), timeout_ms);
}

client& client::operator=(client&& o) noexcept {
    protocol_ = o.protocol_;
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(o.fd_, -1);
        timeout_ms_ = o.timeout_ms_;
    }
    return *this;
}

client::~client() {
    if (fd_ >= 0) ::close(fd_);
}

void client::send_raw(std::string_view bytes) {
    write_all(fd_, bytes);
}

void client::send_packet(char cmd, std::string_view data) {
    std::string p;
    p.reserve(data.size() + 5);
    put32(p, static_cast<std::uint32_t>(data.size() + 1));
    p.push_back(cmd);
    p.append(data);
    write_all(fd_, p);
}

void client::read_exact(char* buf, std::size_t n) {
    while (n > 0) {
        pollfd pfd{fd_, POLLIN, 0};
        int rc = ::poll(&pfd, 1, timeout_ms_);
        if (rc == 0) throw std::runtime_error("milter reply timed out");
        if (rc < 0) {
            if (errno == EINTR) continue;
            fail("poll");
        }
        ssize_t r = ::recv(fd_, buf, n, 0);
        if (r == 0) throw std::runtime_error("milter closed the connection");
        if (r < 0) {
            if (errno == EINTR) continue;
            fail("recv");
        }
        buf += r;
        n -= static_cast<std::size_t>(r);
    }
}

reply client::read_reply() {
    char hdr[4];
    read_exact(hdr, 4);
    std::uint32_t len = get32(hdr);
    if (len == 0 || len > (1u << 20)) throw std::runtime_error("bad reply length");
    std::string body(len, '\0');
    read_exact(body.data(), len);
    reply r;
    r.cmd = body[0];
    r.data = body.substr(1);
    while (!r.data.empty() && r.data.back() == '\0') r.data.pop_back();
    return r;
}

client::negotiated client::negotiate(std::uint32_t protocol_offer) {
    std::string d;
    put32(d, 6);      // protocol version
    put32(d, 0x1ff);  // every action
    put32(d, protocol_offer);
    send_packet('O', d);
    reply r = read_reply();
    if (r.cmd != 'O' || r.data.size() < 12) throw std::runtime_error("bad OPTNEG reply");
    negotiated n{get32(r.data.data()), get32(r.data.data() + 4), get32(r.data.data() + 8)};
    protocol_ = n.protocol;
    return n;
}

std::optional<reply> client::connect(const std::string& hostname, const std::string& ipv4,
                                     std::uint16_t port) {
    std::string d = hostname;
    d.push_back('\0');
    d.push_back('4');
    std::uint16_t p = htons(port);
    d.append(reinterpret_cast<const char*>(&p), 2);
    d += ipv4;
    d.push_back('\0');
    send_packet('C', d);
    if (protocol_ & p_nr_conn) return std::nullopt;
    return read_reply();
}

void client::macros(char for_cmd, const std::vector<std::pair<std::string, std::string>>& kv) {
    std::string d(1, for_cmd);
    for (const auto& [k, v] : kv) {
        d += k;
        d.push_back('\0');
        d += v;
        d.push_back('\0');
    }
    send_packet('D', d);
}

std::optional<reply> client::mail(const std::vector<std::string>& args) {
    std::string d;
    for (const auto& a : args) {
        d += a;
        d.push_back('\0');
    }
    send_packet('M', d);
    if (protocol_ & p_nr_mail) return std::nullopt;
    return read_reply();
}

reply client::rcpt(const std::string& arg) {
    std::string d = arg;
    d.push_back('\0');
    send_packet('R', d);
    return read_reply();
}

void client::abort() {
    send_packet('A', {});
}

void client::quit() {
    send_packet('Q', {});
}

std::string socketmap_query(const std::string& path, std::string_view request) {
    int fd = connect_path(path);
    std::string ns = std::to_string(request.size()) + ":" + std::string(request) + ",";
    try {
        write_all(fd, ns);
        std::string in;
        char buf[4096];
        for (;;) {
            pollfd pfd{fd, POLLIN, 0};
            if (::poll(&pfd, 1, 10000) <= 0) throw std::runtime_error("socketmap timed out");
            ssize_t r = ::recv(fd, buf, sizeof buf, 0);
            if (r <= 0) break;
            in.append(buf, static_cast<std::size_t>(r));
            auto colon = in.find(':');
            if (colon != std::string::npos) {
                std::size_t len = std::stoul(in.substr(0, colon));
                if (in.size() >= colon + 1 + len + 1) {
                    ::close(fd);
                    return in.substr(colon + 1, len);
                }
            }
        }
        ::close(fd);
        return "<closed>" + in;
    } catch (...) {
        ::close(fd);
        throw;
    }
}

}  // namespace mx::milter_test
