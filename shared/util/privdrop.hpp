// privdrop: leaving root for the daemon account, once, verified — for mx-milter, mx-importer
// and mxctl alike.
//
// What it is: lookup_account() resolves the config key `user` (lookup_uid() an owner's uid),
// both with the account's supplementary groups; drop_privileges() switches the
// whole process to it (initgroups + setgid + setuid) and then proves the switch: real,
// effective and saved ids are the account's, and setuid(0)/setgid(0) fail. run_as() runs one
// function in a forked child that drops first, and hands its text result back through a pipe
// (for work root wants done as the daemon account without giving up root itself).
// Promises: drop_privileges() either returns with no way back to root or throws
// std::system_error naming the call that failed; it never leaves the process half-dropped
// silently (a caller that catches must exit). run_as() returns the child's result, or throws
// run_as_error carrying the child's error text (or how it died).
// Security: call drop_privileges() before touching any path a less privileged account can
// change; once it returned, a symlink planted by that account can only lead where the account
// could go itself.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace mx::util {

struct account {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary groups (getgrouplist), primary included
};

// geteuid() without a system call per use (the importer asks for every file it claims and
// delivers): cached, and forgotten whenever drop_privileges() changes the identity. Code that
// changes the effective uid by other means must not rely on it.
uid_t effective_uid() noexcept;

// The account named `name`; nullopt when there is no such account.
std::optional<account> lookup_account(const std::string& name);
// The account with that uid; nullopt when no account has it.
std::optional<account> lookup_uid(uid_t uid);

// initgroups + setgid + setuid to `a`, then verified (see above). No-op when the process
// already runs as exactly that uid/gid and is not root.
void drop_privileges(const account& a);

class run_as_error : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

// fork(); the child drops to `a`, runs fn and writes its result to a pipe; the parent waits.
// An exception in fn becomes run_as_error with its what() text.
std::string run_as(const account& a, const std::function<std::string()>& fn);

}  // namespace mx::util
