// postconf: mxctl's view of one Postfix instance through Postfix's own tools (postconf,
// postmap), for `mxctl doctor` and `mxctl postfix setup`.
//
// Promises: read-only except edit_* (postconf -e/-X/-M/-F/-P on the given directory); every
// program runs without a shell and with a deadline (util::spawn); values are cached per run.
// Security: runs Postfix's programs with arguments we build (no shell); lookups can run as
// Postfix's mail_owner account so they see exactly the files that account can read.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "global/postfix_conf.hpp"
#include "util/privdrop.hpp"
#include "util/spawn.hpp"

namespace mx::admin {

class postconf {
  public:
    explicit postconf(std::string config_dir) : dir_(std::move(config_dir)) {}
    const std::string& dir() const { return dir_; }

    // postconf -c DIR -x -h NAME (the value Postfix uses, $names expanded); nullopt when
    // postconf fails.
    std::optional<std::string> get(const std::string& name);
    // postconf -c DIR -n -h NAME: the value only when main.cf sets it explicitly.
    std::optional<std::string> get_explicit(const std::string& name);
    // master.cf services (postconf -M); empty when postconf fails.
    std::vector<postfix::master_service> services();
    // Lookup table types this Postfix can open (postconf -m); nullopt when postconf fails.
    // Debian ships lmdb, cdb, pcre, ... as separate packages (postfix-lmdb).
    std::optional<std::set<std::string>> map_types();
    std::string queue_dir();  // queue_directory, default /var/spool/postfix
    // Postfix's mail_owner account (postfix): what its daemons read tables as.
    std::optional<util::account> mail_owner();

    // postmap -c DIR -q KEY TABLE, from the queue directory, as `as` when given (and we are
    // root). found: the value; error: what postmap printed on failure (fatal:/warning:).
    struct lookup {
        std::optional<std::string> value;
        std::string error;
    };
    lookup query(const std::string& table, const std::string& key,
                 const std::optional<util::account>& as);

    // Runs `postconf -c DIR ARGS...` (for edits); returns the result for error reporting.
    util::run_result run(const std::vector<std::string>& args);

  private:
    std::string dir_;
    std::map<std::string, std::optional<std::string>> cache_, explicit_cache_;
    std::optional<std::vector<postfix::master_service>> services_;
};

}  // namespace mx::admin
