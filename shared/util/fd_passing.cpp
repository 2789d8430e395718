#include "util/fd_passing.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mx::util {

namespace {
// Room for the largest batch of descriptors any caller passes (the parse worker's 16).
constexpr std::size_t fd_room = 64;
}  // namespace

ssize_t send_fds(int sock, const void* body, std::size_t size, const int* fds, std::size_t nfds,
                 int flags) {
    if (nfds > fd_room) {
        errno = EINVAL;
        return -1;
    }
    alignas(struct cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * fd_room)] = {};
    struct iovec iov {
        const_cast<void*>(body), size
    };
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        msg.msg_control = ctrl;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do {
        n = ::sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
}

ssize_t recv_fds(int sock, void* buf, std::size_t size, std::vector<int>& fds, std::size_t max_fds,
                 int& msg_flags) {
    fds.clear();
    msg_flags = 0;
    alignas(struct cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * fd_room)];
    struct iovec iov {
        buf, size
    };
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (max_fds < fd_room ? max_fds : fd_room));
    ssize_t n;
    do {
        n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return n;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
            continue;
        std::size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < k; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (fds.size() < max_fds)
                fds.push_back(fd);
            else
                ::close(fd);  // more than asked for: never leaked
        }
    }
    msg_flags = msg.msg_flags;
    return n;
}

}  // namespace mx::util
