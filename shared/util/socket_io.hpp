// socket_io: blocking-style stream socket I/O with deadlines (connect, send all, read until).
//
// What it is: a move-only unique_fd; connect_unix()/connect_tcp() that give up after a time
// limit; write_all() and read_until() that poll with a deadline. For clients that talk to a
// local daemon or a mail server once (mxctl doctor, tests), not for servers.
// Promises: every call ends within its time limit; failures throw socket_error naming the
// call (connect, getaddrinfo, send, ...) and the reason; read_until() bounds what it buffers.
// Connected sockets are blocking (reads and writes here poll first).
// Security: sockets are CLOEXEC; send uses MSG_NOSIGNAL (a closed peer is an error, not a
// SIGPIPE).
#pragma once

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace mx::util {

class socket_error : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Owns a file descriptor.
class unique_fd {
  public:
    unique_fd() = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() { reset(); }
    int get() const noexcept { return fd_; }
    void reset(int fd = -1) noexcept;

  private:
    int fd_ = -1;
};

using io_timeout = std::chrono::milliseconds;

unique_fd connect_unix(const std::string& path, io_timeout timeout);
// host: name or address (getaddrinfo; every address tried in turn).
unique_fd connect_tcp(const std::string& host, const std::string& port, io_timeout timeout);

void write_all(int fd, std::string_view data, io_timeout timeout);

// Appends to buf until done(buf) is true. Throws socket_error on timeout, on EOF before done,
// or when buf would grow beyond max_bytes.
void read_until(int fd, std::string& buf, io_timeout timeout,
                const std::function<bool(const std::string&)>& done, std::size_t max_bytes = 65536);

}  // namespace mx::util
