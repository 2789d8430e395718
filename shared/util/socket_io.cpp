#include "util/socket_io.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mx::util {
namespace {

using clock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& call, int err) {
    throw socket_error(call + ": " + std::strerror(err));
}

int ms_left(clock::time_point deadline) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
    return left > 0 ? static_cast<int>(left) : 0;
}

// Waits for `events` on fd until the deadline; false on timeout.
bool wait_for(int fd, short events, clock::time_point deadline) {
    for (;;) {
        int left = ms_left(deadline);
        if (left <= 0) return false;
        pollfd p{fd, events, 0};
        int n = ::poll(&p, 1, left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail("poll", errno);
        if (n > 0) return true;
    }
}

unique_fd connect_addr(const sockaddr* sa, socklen_t len, int family, io_timeout timeout) {
    unique_fd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (fd.get() < 0) fail("socket", errno);
    if (::connect(fd.get(), sa, len) != 0) {
        if (errno != EINPROGRESS && errno != EAGAIN) fail("connect", errno);
        if (!wait_for(fd.get(), POLLOUT, clock::now() + timeout))
            throw socket_error("connect: timed out");
        int so = 0;
        socklen_t sl = sizeof so;
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &so, &sl) != 0) fail("getsockopt", errno);
        if (so != 0) fail("connect", so);
    }
    // Blocking from here on: our own calls poll with deadlines, and a caller may use the fd
    // with plain recv/send.
    int fl = ::fcntl(fd.get(), F_GETFL);
    if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK) != 0) fail("fcntl", errno);
    return fd;
}

}  // namespace

void unique_fd::reset(int fd) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

unique_fd connect_unix(const std::string& path, io_timeout timeout) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path) throw socket_error("connect: socket path too long");
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    try {
        return connect_addr(reinterpret_cast<sockaddr*>(&sa), sizeof sa, AF_UNIX, timeout);
    } catch (const socket_error& e) {
        throw socket_error(std::string(e.what()) + " (" + path + ")");
    }
}

unique_fd connect_tcp(const std::string& host, const std::string& port, io_timeout timeout) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
        throw socket_error(std::string("getaddrinfo ") + host + ": " + ::gai_strerror(rc));
    std::string last = "connect: no address for " + host;
    for (auto* ai = res; ai; ai = ai->ai_next) {
        try {
            auto fd = connect_addr(ai->ai_addr, ai->ai_addrlen, ai->ai_family, timeout);
            ::freeaddrinfo(res);
            return fd;
        } catch (const socket_error& e) {
            last = e.what();
        }
    }
    ::freeaddrinfo(res);
    throw socket_error(last);
}

void write_all(int fd, std::string_view data, io_timeout timeout) {
    auto deadline = clock::now() + timeout;
    while (!data.empty()) {
        if (!wait_for(fd, POLLOUT, deadline)) throw socket_error("send: timed out");
        ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) fail("send", errno);
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

void read_until(int fd, std::string& buf, io_timeout timeout,
                const std::function<bool(const std::string&)>& done, std::size_t max_bytes) {
    auto deadline = clock::now() + timeout;
    char tmp[4096];
    while (!done(buf)) {
        if (!wait_for(fd, POLLIN, deadline)) throw socket_error("recv: timed out");
        ssize_t n = ::recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) fail("recv", errno);
        if (n == 0) throw socket_error("recv: connection closed by the peer");
        buf.append(tmp, static_cast<std::size_t>(n));
        if (buf.size() > max_bytes) throw socket_error("recv: answer too long");
    }
}

}  // namespace mx::util
