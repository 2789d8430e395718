// sandbox: lets a process give up, for good, every system call it does not need (seccomp-bpf
// through libseccomp), the way OpenSMTPD and OpenSSH lock down the processes that read
// untrusted input. Knows nothing about mail: the caller says what stays allowed.
//
// Promises:
// - enter() applies, in this order and irreversibly: PR_SET_NO_NEW_PRIVS, the resource limits
//   of the policy (RLIMIT_NOFILE, RLIMIT_NPROC), then a seccomp filter whose default action is
//   SCMP_ACT_KILL_PROCESS: any system call not allowed by a rule kills the whole process with
//   SIGSYS (it is not refused with EPERM, so an exploit cannot probe and carry on). A system
//   call made through a foreign ABI (i386, x32 on x86_64) kills too.
// - Rules allow a call outright or only when some arguments match (e.g. write only on fd 1,
//   mmap only without PROT_EXEC). Several rules for one call are alternatives.
// - Failures throw mx::sandbox::error naming the C function and the error; when enter()
//   throws, no filter is active (the limits and no_new_privs may already be).
// Security notes: the filter only restricts what the process may ask the kernel from now on.
// Anything it already holds (open fds, mapped memory, the environment) stays reachable: close
// or never acquire what an attacker must not get before calling enter(). The filter is
// inherited by children, but children should be impossible anyway (no clone/fork rule).
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace mx::sandbox {

class error : public std::runtime_error {
  public:
    error(const char* function, int err, const std::string& detail = {});
    const char* function() const noexcept { return function_; }
    int code() const noexcept { return err_; }

  private:
    const char* function_;
    int err_;
};

// Argument `arg` (0-5) of the call, masked with `mask`, must equal `value`.
struct arg_match {
    unsigned arg = 0;
    std::uint64_t mask = ~std::uint64_t{0};
    std::uint64_t value = 0;
};

struct rule {
    std::string syscall;          // name as in <sys/syscall.h> without __NR_, e.g. "read"
    std::vector<arg_match> when;  // all must hold; empty: any arguments
};

// Convenience builders for the common cases.
inline rule allow(std::string name) {
    return {std::move(name), {}};
}
inline rule allow_if_arg(std::string name, unsigned arg, std::uint64_t value) {
    return {std::move(name), {{arg, ~std::uint64_t{0}, value}}};
}
// The bits `mask` of argument `arg` must all be clear (e.g. no PROT_EXEC).
inline rule allow_if_clear(std::string name, unsigned arg, std::uint64_t mask) {
    return {std::move(name), {{arg, mask, 0}}};
}

struct policy {
    std::vector<rule> allow;
    // RLIMIT_NOFILE soft and hard: the process can hold no fd numbered >= this (it can receive
    // fds over a socket only below it). Unset: unchanged.
    std::optional<rlim_t> max_open_files;
    // RLIMIT_NPROC 0: no new process even if a clone rule were allowed (not enforced for root).
    bool no_new_processes = true;
};

// Locks this process (all of it: call before starting any thread) into `p`. Irreversible.
void enter(const policy& p);

// Number of system calls a policy's filter names (for the log line saying what is allowed).
std::size_t syscall_count(const policy& p);

}  // namespace mx::sandbox
