#include "util/sandbox.hpp"

#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <string>

// Provided by the sanitizer runtimes (ASan, UBSan, ...) when the program is built with one;
// weak, so a normal build links without it. Same layout as __sanitizer_sandbox_arguments.
extern "C" {
struct mx_sanitizer_sandbox_arguments {
    int coverage_sandboxed;
    std::intptr_t coverage_fd;
    unsigned int coverage_max_block_size;
};
__attribute__((weak)) void __sanitizer_sandbox_on_notify(mx_sanitizer_sandbox_arguments* args);
}

namespace mx::sandbox {
namespace {

struct ctx_release {
    void operator()(scmp_filter_ctx c) const noexcept { seccomp_release(c); }
};
using filter_ptr = std::unique_ptr<void, ctx_release>;

// libseccomp returns -errno.
void check(const char* function, int rc) {
    if (rc < 0) throw error(function, -rc);
}

void set_limit(int resource, rlim_t value, const char* what) {
    struct rlimit rl {
        value, value
    };
    if (::setrlimit(resource, &rl) != 0) throw error(what, errno);
}

}  // namespace

error::error(const char* function, int err, const std::string& detail)
    : std::runtime_error(std::string(function) + (detail.empty() ? "" : "(" + detail + ")") + ": " +
                         std::strerror(err))
    , function_(function)
    , err_(err) {}

std::size_t syscall_count(const policy& p) {
    std::set<std::string> names;
    for (const auto& r : p.allow) names.insert(r.syscall);
    return names.size();
}

void enter(const policy& p) {
    // Also set by libseccomp (SCMP_FLTATR_CTL_NNP), but first and on its own so that it holds
    // even when the filter cannot be loaded: no setuid/file-capability gain through exec.
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        throw error("prctl(PR_SET_NO_NEW_PRIVS)", errno);
    if (p.max_open_files) set_limit(RLIMIT_NOFILE, *p.max_open_files, "setrlimit(RLIMIT_NOFILE)");
    if (p.no_new_processes) set_limit(RLIMIT_NPROC, 0, "setrlimit(RLIMIT_NPROC)");

    // A sanitizer runtime caches /proc/self/maps and readies its symbolizer now, while it
    // still may, so that a report from inside the sandbox gets as far as it can.
    if (__sanitizer_sandbox_on_notify) {
        mx_sanitizer_sandbox_arguments args{0, -1, 0};
        __sanitizer_sandbox_on_notify(&args);
    }

    filter_ptr f(seccomp_init(SCMP_ACT_KILL_PROCESS));
    if (!f) throw error("seccomp_init", EINVAL);
    // A call through another ABI (int 0x80, x32) is not covered by the rules: kill, too.
    check("seccomp_attr_set(SCMP_FLTATR_ACT_BADARCH)",
          seccomp_attr_set(f.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS));
    for (const auto& r : p.allow) {
        int nr = seccomp_syscall_resolve_name(r.syscall.c_str());
        if (nr == __NR_SCMP_ERROR) throw error("seccomp_syscall_resolve_name", EINVAL, r.syscall);
        std::vector<scmp_arg_cmp> cmp;
        for (const auto& m : r.when) {
            if (m.arg > 5) throw error("seccomp_rule_add_array", EINVAL, r.syscall);
            cmp.push_back(m.mask == ~std::uint64_t{0}
                              ? SCMP_CMP(m.arg, SCMP_CMP_EQ, m.value)
                              : SCMP_CMP(m.arg, SCMP_CMP_MASKED_EQ, m.mask, m.value));
        }
        int rc = seccomp_rule_add_array(f.get(), SCMP_ACT_ALLOW, nr,
                                        static_cast<unsigned>(cmp.size()), cmp.data());
        if (rc < 0) throw error("seccomp_rule_add_array", -rc, r.syscall);
    }
    check("seccomp_load", seccomp_load(f.get()));
}

}  // namespace mx::sandbox
