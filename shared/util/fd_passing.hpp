// fd_passing: one message with open file descriptors over a local socket (SCM_RIGHTS), the
// way Postfix's unix_send_fd()/unix_recv_fd() pass a descriptor between its processes.
//
// Promises: send_fds() sends the body and the descriptors as one message (EINTR retried; with
// SOCK_SEQPACKET the receiver gets exactly that message) and returns sendmsg()'s result; the
// sender keeps its own copies and closes them. recv_fds() receives one message of at most
// `size` bytes and at most `max_fds` descriptors: they arrive close-on-exec, in order, in
// `fds`; a descriptor beyond `max_fds` is never leaked (closed, or refused by the kernel), and
// `msg_flags` gets the message's flags (MSG_TRUNC: the body was longer than `size`; MSG_CTRUNC:
// descriptors were refused). Returns recvmsg()'s result (0 at EOF).
// Security: the receiver trusts nothing it gets: callers check the body's length and the
// number of descriptors before they use either. Only sendmsg/recvmsg are called, so a
// seccomp-sandboxed process that may recvmsg on its socket can use recv_fds().
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <vector>

namespace mx::util {

ssize_t send_fds(int sock, const void* body, std::size_t size, const int* fds, std::size_t nfds,
                 int flags);

ssize_t recv_fds(int sock, void* buf, std::size_t size, std::vector<int>& fds, std::size_t max_fds,
                 int& msg_flags);

}  // namespace mx::util
