// import_target: where an imported message goes (a mailbox store), behind one small interface.
//
// A mailbox's target is a string "scheme:rest": "maildir:PATH" (target_maildir.cpp),
// "webhook:URL" (target_webhook.cpp) or "exec:COMMAND" (target_exec.cpp), built by make_target()
// in target_factory.cpp. Empty: the connector's default_target; empty too: a Maildir under
// mail_root (mailbox_maildir()).
//
// Contract, in the order the importer calls it for a batch:
//   plan(d)            -> a location name recorded in the journal as "pending" before delivery
//   deliver(d, plan, s) -> makes the message visible there; durability may be deferred to s
//   s.sync()           -> once per batch: everything delivered is durable (data + directory
//                         entries); only after it returns does the journal say "imported"
//   delivered(plan)    -> after a crash: did the pending delivery happen? (no duplicate)
//   recover(plan, s)   -> the same, answering where it is and adding it to s for durability
// Threads: the engine runs one delivery of a target at a time (its own lane), but deliveries of
// different targets run at once on other threads: a target keeps no state shared with others.
// Result kinds: imported; temporary (retried with backoff up to the maximum age, then
// ImportFailed 5.4.7); permanent (ImportFailed now, with the given status).
// Security: locations are built by the target from validated mailbox keys (mailbox_path.hpp);
// nothing in a dropped file chooses a path.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

#include "global/config.hpp"

namespace mx::importer {

struct message_info;

struct delivery {
    std::filesystem::path source;  // the claimed file in the work folder (original bytes)
    std::uint64_t size = 0;
    std::string recipient;  // normalised envelope recipient
    std::string mailbox;    // mailbox key (local@domain or @domain)
    std::string connector;
    std::string fingerprint;
    std::int64_t arrival = 0;  // unix time the file arrived (its mtime)
    const message_info* info = nullptr;
    // The engine saw `source` as this account's own single-link file in its private work
    // folder when it claimed it: targets need not look at its owner again.
    bool source_private = false;
};

enum class result_kind { imported, temporary, permanent };
std::string_view to_string(result_kind k);

struct result {
    result_kind kind = result_kind::temporary;
    std::string status;  // RFC 3463, e.g. "2.0.0", "4.3.1", "5.2.2"
    std::string detail;  // for logs, reason files, bounces
    std::string location;
    // Temporary results only: the least delay the target asks for before the next attempt (an
    // HTTP receiver's Retry-After). Unset: the engine's own backoff.
    std::optional<std::chrono::seconds> retry_after = std::nullopt;
};

// Collects what must be made durable at the end of a batch, so one batch costs a few
// syncfs()/fsync() calls instead of one per message.
class sync_set {
  public:
    enum class mode { syncfs, fsync };
    explicit sync_set(mode m = mode::syncfs) : mode_(m) {}
    sync_set(const sync_set&) = delete;
    sync_set& operator=(const sync_set&) = delete;
    ~sync_set() noexcept;
    void add_file(const std::filesystem::path& p);  // data (and inode) must be durable
    void add_dir(const std::filesystem::path& p);   // directory entries must be durable
    // Makes everything added durable, then forgets it. Throws std::system_error.
    void sync();
    bool empty() const { return files_.empty() && dirs_.empty(); }
    // Takes over everything `o` holds (one sync for deliveries made on several threads).
    void merge(sync_set& o) {
        files_.merge(o.files_);
        dirs_.merge(o.dirs_);
        o.files_.clear();
        o.dirs_.clear();
    }

  private:
    mode mode_;
    std::set<std::filesystem::path> files_, dirs_;
};

class import_target {
  public:
    virtual ~import_target() = default;
    virtual std::string describe() const = 0;
    virtual std::string plan(const delivery& d) = 0;
    virtual result deliver(const delivery& d, const std::string& planned, sync_set& s) = 0;
    virtual bool delivered(const std::string& planned) = 0;
    // Crash recovery of a pending delivery: where it is (a result location) when it happened,
    // after adding what must be made durable to `s`; nullopt when it did not happen.
    virtual std::optional<std::string> recover(const std::string& planned, sync_set& s) {
        (void)s;
        if (!delivered(planned)) return std::nullopt;
        return planned;
    }
};

class target_error : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The effective target spec of a mailbox ("maildir:/var/mail/mx-connector/d/l").
std::string effective_target(const config& cfg, std::string_view mailbox_target,
                             std::string_view connector_default, std::string_view mailbox_key);
// A target for a spec; throws target_error for an unknown scheme or a bad spec.
std::unique_ptr<import_target> make_target(const config& cfg, std::string_view spec);

// Targets are cached by spec for the daemon's lifetime.
class target_cache {
  public:
    explicit target_cache(const config& cfg) : cfg_(&cfg) {}
    import_target& get(const std::string& spec);

  private:
    const config* cfg_;
    std::map<std::string, std::unique_ptr<import_target>> targets_;
};

// Maildir target (target_maildir.cpp).
std::unique_ptr<import_target> make_maildir_target(const std::filesystem::path& root,
                                                   std::string hostname);

}  // namespace mx::importer
