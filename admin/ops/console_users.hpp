// console_users: the accounts of the web console (mx-console), managed by
// `mxctl console user add|remove|passwd` and checked by the console's login.
//
// Stored in <state_dir>/console/users.json (mode 0600, in a 0700 folder, owned by the daemon
// account): per name an Argon2id hash (libargon2's encoded form, salt and parameters inside)
// and the read-only flag. Writes replace the file atomically (temporary file, fsync, rename)
// under an flock, so two mxctl runs never lose each other's change.
// Security: the plain password is never stored or logged; verification is libargon2's
// constant-time comparison. Files are opened with O_NOFOLLOW.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "global/config.hpp"

namespace mx::ops {

struct console_user {
    std::string name;
    std::string hash;  // $argon2id$v=19$m=...,t=...,p=...$salt$hash
    bool read_only = false;
};

std::filesystem::path console_dir(const config& cfg);
bool valid_console_user_name(const std::string& name);
std::map<std::string, console_user> load_console_users(const config& cfg);
std::string hash_password(const std::string& password);
bool verify_password(const std::string& encoded_hash, const std::string& password);
// n random bytes from getrandom(2), as lower-case hex.
std::string random_hex(std::size_t n);

// Each is one locked read-modify-write of users.json; op_error with what to fix.
void console_user_add(const config& cfg, const std::string& name, const std::string& password,
                      bool read_only);
void console_user_remove(const config& cfg, const std::string& name);
void console_user_passwd(const config& cfg, const std::string& name, const std::string& password);

}  // namespace mx::ops
