// engine_item: the engine's private pieces shared by its step files (engine*.cpp): one claimed
// file with its recipients (item), one batch in the making (batch) and small helpers.
// Threads: an item's recipients are written by the delivery lanes only between dispatch and
// the end of their delivery (outstanding > 0), under engine::done_mu_; everything else runs on
// the engine's thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "global/logging.hpp"
#include "global/mail_compose.hpp"
#include "importer.hpp"

namespace mx::importer {

std::int64_t now_unix();
std::string short_hash(std::string_view s);
// File names derived from a drop file's name stay below NAME_MAX (see engine_claim.cpp).
std::string bounded_name(const std::string& n, std::size_t max);
constexpr std::size_t max_failed_name = 160;  // + 13 + 5 + 25 < 255
// Test-only fault injection (MX_IMPORTER_FAULT_INJECTION=1): see engine.cpp.
void inject_journal_fault(const std::string& name, const char* step);
// Tests only (same switch): SIGKILL of the importer itself at `step` for a file whose name
// contains "mx-test-crash-<step>" — a crash at an exact point, not a random one.
void inject_crash(const std::string& name, const char* step);

struct engine::item {
    struct rcpt {
        std::string raw;      // as the envelope said
        std::string key;      // normalised recipient (journal key part)
        std::string mailbox;  // mailbox key
        std::string spec;     // target spec
        import_target* target = nullptr;
        std::string planned;
        result res;
        std::string reason;        // for permanent failures
        bool settled = false;      // nothing to do (duplicate / already failed)
        bool bounce_done = false;  // a bounce was spooled for this failure earlier
        bool was_failed = false;
        bool to_deliver = false;  // planned in this batch (pending record, then deliver)
    };
    explicit item(sync_set::mode m) : sync(m) {}
    std::filesystem::path work;
    std::string name;  // original name
    char origin = 'n';
    parse_result pr;
    std::int64_t first_seen = 0;
    int attempts = 0;
    std::vector<rcpt> rcpts;
    bool vanished = false;
    bool parsed = false;          // pr is set (parsed ahead, engine::prefetch)
    std::uint64_t size_hint = 0;  // size seen when claimed (0: unknown; the parser fstat()s)
    std::int64_t mtime_hint = 0;  // non-zero: a private regular file of size_hint (no fstat)
    std::string failed_path;
    std::shared_ptr<const folder> from;  // set when parked (under done_mu_): finished later
    int outstanding = 0;                 // deliveries still on a lane (under done_mu_)
    sync_set sync;                       // what its deliveries need made durable

    bool any_temporary() const {
        for (const auto& r : rcpts)
            if (r.res.kind == result_kind::temporary) return true;
        return false;
    }
    // This file waits for another try (its own failure, never the batch's): every outcome not
    // yet settled becomes temporary and nothing more is delivered in this batch.
    void defer(const std::string& status, const std::string& detail) {
        for (auto& r : rcpts) {
            if (r.settled) continue;
            r.res = {result_kind::temporary, status, detail, {}};
            r.target = nullptr;
            r.to_deliver = false;
        }
        if (rcpts.empty()) {
            rcpt r;
            r.res = {result_kind::temporary, status, detail, {}};
            rcpts.push_back(std::move(r));
        }
    }
};

struct engine::batch {
    std::shared_ptr<const folder> f;
    std::int64_t now = 0;
    std::filesystem::path work;
    bool want_oldest = false;
    // Waiting files named without a Maildir time (hand-dropped *.eml, other MTAs) are stat'ed
    // for the oldest-file gauge at most this many times per scan: a backlog of such names
    // would otherwise cost one stat each before the first file is claimed.
    std::size_t gauge_stats_left = 256;
    std::size_t budget = 0;  // files this batch may take (batch_size less the parked ones)
    // A folder with more than 4 x batch_size files waiting raises budget to backlog_budget
    // (backlog_batch_size less the parked ones); engine::set_budget, claim_new.
    std::size_t backlog_budget = 0;
    item_list items;
    batch_stats bs;
    bool any_planned = false;
    std::size_t new_left = 0;  // new files left in the folders for lack of budget
    std::size_t own_left = 0;  // due files of the work folder left for lack of budget
    // Journal delivery keys ("<fingerprint> <recipient>") handled by a file of this batch or
    // still on a lane (parked) -> that file's name: the same bytes for the same recipient in
    // a second file are a duplicate of the first (neither has a journal record yet).
    std::map<std::string, std::string> taken;
    void note_waiting(const std::filesystem::path& p);
    void note_waiting(const std::filesystem::path& dir, const std::string& name) {
        if (want_oldest)
            note_waiting(dir / name);
        else
            ++bs.waiting;  // no path built for every file of a backlog
    }
};

// The next batch of a folder, claimed and being parsed while the current one finishes.
struct engine::prefetch {
    item_list items;
    std::future<std::vector<parse_result>> parsing;  // in items' order
};

// One journal transaction for all items; when it fails (one file's record may be what fails),
// one transaction per item, so that only the items whose own write fails are affected
// (on_fail(item, what)): one file never holds up its batch.
template <typename Items, typename Write, typename OnFail>
void write_each(journal& j, const std::string& connector, Items& items, const Write& write,
                const OnFail& on_fail) {
    try {
        j.write([&](lmdb::txn& t) {
            for (auto& it : items) write(t, *it);
        });
        return;
    } catch (const std::exception& e) {
        spdlog::warn("connector {}: journal write of the batch failed ({}); file by file",
                     connector, e.what());
    }
    for (auto& it : items) {
        try {
            j.write([&](lmdb::txn& t) { write(t, *it); });
        } catch (const std::exception& e) {
            spdlog::error("connector {}: journal write for {} failed: {}; will retry", connector,
                          log_safe(it->name), e.what());
            on_fail(*it, e.what());
        }
    }
}

}  // namespace mx::importer
