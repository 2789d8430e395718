// secrets: the secret store (SMTP passwords, OAuth2 client secrets and refresh tokens,
// webhook signing secrets), apart from the table the milter reads.
//
// Promises: one LMDB environment at <state_dir>/secrets, directory 0700 and files 0600, so only
// the owner (root or the daemon user) can read it; mx-milter never opens it. Values are
// returned as copies and never logged; callers print "***" instead of a value.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "global/config.hpp"
#include "util/lmdb.hpp"

namespace mx {

class secret_store {
  public:
    static secret_store open(const std::filesystem::path& dir, bool read_only);
    static secret_store open(const config& cfg, bool read_only) {
        return open(cfg.secrets_dir(), read_only);
    }

    std::optional<std::string> get(std::string_view name);
    void set(std::string_view name, std::string_view value);
    bool remove(std::string_view name);
    // Removes every secret whose name starts with prefix (e.g. "mailbox/a@b/").
    void remove_prefix(std::string_view prefix);
    std::vector<std::string> names();

  private:
    secret_store() = default;
    lmdb::env env_;
    lmdb::dbi db_;
};

}  // namespace mx
