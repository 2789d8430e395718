// engine: one batch of one drop folder, exactly once (see importer.hpp for the steps).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>  // renameat2, RENAME_NOREPLACE
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "global/address.hpp"
#include "global/bounce_job.hpp"
#include "global/logging.hpp"
#include "global/recipient_check.hpp"
#include "importer.hpp"
#include "util/fs.hpp"
#include "util/hex.hpp"

namespace mx::importer {
namespace {

std::int64_t now_unix() {
    return static_cast<std::int64_t>(::time(nullptr));
}

std::string iso_time(std::int64_t t) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// The first `bytes` bytes of SHA-256(s) in hex.
std::string hash_hex(std::string_view s, unsigned bytes) {
    return util::sha256_hex(s).substr(0, 2 * bytes);
}

std::string short_hash(std::string_view s) {
    return hash_hex(s, 6);
}

// File names derived from a drop file's name stay below NAME_MAX (255) with everything added
// to them: "<origin>," in .work/, ".<12 hex>" (a name taken) + ".json" in ImportFailed, and
// the temporary name of a durable write (".<name>.tmp<20 digits>").
constexpr std::size_t max_work_name = 253;    // + "n," = 255
constexpr std::size_t max_failed_name = 160;  // + 13 + 5 + 25 < 255

// `n` itself when at most `max` bytes; else a readable prefix (not cutting a UTF-8 sequence),
// "~" and 16 hex of SHA-256 of the whole name: exactly `max` bytes or less.
std::string bounded_name(const std::string& n, std::size_t max) {
    if (n.size() <= max) return n;
    std::string h = hash_hex(n, 8);
    std::size_t keep = max - 1 - h.size();
    while (keep > 0 && (static_cast<unsigned char>(n[keep]) & 0xC0) == 0x80) --keep;
    return n.substr(0, keep) + "~" + h;
}

// Work file names are valid UTF-8 without control characters: they travel in JSON (parse
// worker requests, reason files, journal records) and log lines. Other bytes become '_' and
// the name gets "~" + 16 hex of SHA-256 of the original, so different names stay different.
std::string safe_name(const std::string& n) {
    std::string out;
    bool changed = false;
    for (std::size_t i = 0; i < n.size();) {
        auto c = static_cast<unsigned char>(n[i]);
        std::size_t len = c < 0x80         ? 1
                          : (c >> 5) == 6  ? 2
                          : (c >> 4) == 14 ? 3
                          : (c >> 3) == 30 ? 4
                                           : 0;
        bool ok = len > 0 && i + len <= n.size() && !(len == 1 && (c < 0x20 || c == 0x7f)) &&
                  !(len == 2 && c < 0xc2) && !(len == 4 && c > 0xf4);
        if (ok && len >= 3) {  // no overlong forms, no surrogates, nothing above U+10FFFF
            auto c1 = static_cast<unsigned char>(n[i + 1]);
            ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0) &&
                 !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
        }
        for (std::size_t k = 1; ok && k < len; ++k)
            ok = (static_cast<unsigned char>(n[i + k]) & 0xC0) == 0x80;
        if (!ok) {
            out.push_back('_');
            changed = true;
            ++i;
            continue;
        }
        out.append(n, i, len);
        i += len;
    }
    return changed ? out + "~" + hash_hex(n, 8) : out;
}

// Moves src to dst only if dst does not exist: 0, or an errno (EEXIST: dst exists; ENOENT:
// another importer won the file, or it vanished). rename() would silently replace an older
// claim of the same name.
int claim_rename(const std::filesystem::path& src, const std::filesystem::path& dst) {
    if (::renameat2(AT_FDCWD, src.c_str(), AT_FDCWD, dst.c_str(), RENAME_NOREPLACE) == 0) return 0;
    int e = errno;
    if (e != EINVAL && e != ENOSYS) return e;
    // No RENAME_NOREPLACE on this filesystem (some network filesystems): link + unlink. Of
    // two importers that both linked, only one unlink succeeds; the other drops its link.
    if (::link(src.c_str(), dst.c_str()) != 0) return errno;
    if (::unlink(src.c_str()) != 0) {
        e = errno;
        ::unlink(dst.c_str());
        return e;
    }
    return 0;
}

// A claimed file another account owns, or with hard links outside our folders, could be
// changed after the import by whoever holds it, and the Maildir target hard-links the claimed
// file into the mailbox: replace it by a copy of our own (temporary dot name, fsync, rename
// over). Returns an error text, empty when the file is ours (or was made ours).
std::string make_private(const std::filesystem::path& work_dir, const std::filesystem::path& p) {
    struct stat sb {};
    if (::lstat(p.c_str(), &sb) != 0 || !S_ISREG(sb.st_mode)) return {};  // the parser decides
    if (sb.st_uid == ::geteuid() && sb.st_nlink <= 1) return {};
    auto tmp = work_dir / (".private." + short_hash(p.string()) + ".tmp");
    if (int err = util::copy_file_synced(p, tmp, p))
        return "copy to " + tmp.string() + ": " + std::strerror(err);
    return {};
}

// Names in a folder we own, in directory order; dot files (temporaries) are skipped.
template <typename Fn>
void list_dir(const std::filesystem::path& dir, Fn&& fn) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) return;
    while (auto* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        // Symlinks are taken too (and refused by the parser's O_NOFOLLOW): nothing a
        // dropped link points to is ever read, and the link does not linger forever.
        if (e->d_type != DT_REG && e->d_type != DT_LNK && e->d_type != DT_UNKNOWN) continue;
        if (!fn(std::string(e->d_name), e->d_type)) break;
    }
    ::closedir(d);
}

bool ends_with_eml(const std::string& n) {
    if (n.size() < 5) return false;
    std::string suf = n.substr(n.size() - 4);
    for (char& c : suf) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return suf == ".eml";
}

// Test-only fault injection (MX_IMPORTER_FAULT_INJECTION=1 in the environment, never in
// production): a drop file whose name contains "mx-test-journal-fault-<step>" makes that
// step's journal write fail for this file, as a full disk or a refused key would.
void inject_journal_fault(const std::string& name, const char* step) {
    const char* e = std::getenv("MX_IMPORTER_FAULT_INJECTION");
    if (!e || std::string_view(e) != "1") return;
    if (name.find(std::string("mx-test-journal-fault-") + step) != std::string::npos)
        throw lmdb::error("mdb_put", MDB_BAD_VALSIZE);
}

// One journal transaction for all items; when it fails (one file's record may be what fails),
// one transaction per item, so that only the items whose own write fails are affected
// (on_fail(item, what)): one file never holds up its batch.
template <typename Item, typename Write, typename OnFail>
void write_each(journal& j, const std::string& connector, std::vector<Item>& items,
                const Write& write, const OnFail& on_fail) {
    try {
        j.write([&](lmdb::txn& t) {
            for (auto& it : items) write(t, it);
        });
        return;
    } catch (const std::exception& e) {
        spdlog::warn("connector {}: journal write of the batch failed ({}); file by file",
                     connector, e.what());
    }
    for (auto& it : items) {
        try {
            j.write([&](lmdb::txn& t) { write(t, it); });
        } catch (const std::exception& e) {
            spdlog::error("connector {}: journal write for {} failed: {}; will retry", connector,
                          log_safe(it.name), e.what());
            on_fail(it, e.what());
        }
    }
}

struct failure_def {
    const char* reason;
    std::atomic<std::uint64_t> connector_counters::*counter;
};

std::atomic<std::uint64_t> connector_counters::*counter_for(const std::string& reason) {
    if (reason == "no-mailbox") return &connector_counters::failed_no_mailbox;
    if (reason == "unparseable") return &connector_counters::failed_unparseable;
    if (reason == "too-large") return &connector_counters::failed_too_large;
    if (reason == "expired") return &connector_counters::failed_expired;
    return &connector_counters::failed_refused;
}

}  // namespace

settings settings::from(const config& cfg) {
    settings s;
    const auto& j = cfg.section("importer");
    auto num = [&](const char* key, double def) {
        auto it = j.find(key);
        return (it != j.end() && it->is_number()) ? it->get<double>() : def;
    };
    s.max_age = std::chrono::seconds(static_cast<long>(num("max_age_days", 5) * 86400));
    s.retry_base = std::chrono::seconds(static_cast<long>(num("retry_base_seconds", 60)));
    s.retry_max = std::chrono::seconds(static_cast<long>(num("retry_max_seconds", 3600)));
    s.batch_size = static_cast<std::size_t>(std::max(1.0, num("batch_size", 256)));
    s.rescan_interval =
        std::chrono::milliseconds(static_cast<long>(num("rescan_seconds", 5) * 1000));
    s.eml_settle = std::chrono::seconds(static_cast<long>(num("eml_settle_seconds", 2)));
    s.worker.base_timeout =
        std::chrono::milliseconds(static_cast<long>(num("parse_timeout_seconds", 10) * 1000));
    s.worker.memory_limit = static_cast<std::uint64_t>(num("parse_memory_mb", 1024)) << 20;
    s.parse_workers = static_cast<std::size_t>(std::clamp(num("parse_workers", 2), 1.0, 16.0));
    s.worker.limits.max_header_bytes =
        static_cast<std::size_t>(num("max_header_bytes", 100 * 1024));
    double days = num("journal_days", 30);
    if (days < 0) throw config_error("[importer] journal_days must be 0 (keep) or more");
    s.journal_retention = std::chrono::seconds(static_cast<long>(days * 86400));
    s.prune_interval = std::chrono::milliseconds(
        static_cast<long>(std::max(1.0, num("journal_prune_seconds", 3600)) * 1000));
    std::string dur = j.value("durability", std::string("syncfs"));
    if (dur == "fsync")
        s.durability = sync_set::mode::fsync;
    else if (dur == "syncfs")
        s.durability = sync_set::mode::syncfs;
    else
        throw config_error("[importer] durability must be \"syncfs\" or \"fsync\", not \"" + dur +
                           "\"");
    s.host = cfg.hostname.empty() ? "localhost" : cfg.hostname;
    for (char& c : s.host)
        if (c == '/' || c == '\0' || static_cast<unsigned char>(c) < 32) c = '_';
    if (s.host == "." || s.host == "..") s.host = "_";
    return s;
}

folder folder::from(const mx::connector& c) {
    folder f;
    f.connector = c.name;
    f.drop = c.drop_folder;
    f.max_size = c.max_message_size;
    f.default_target = c.default_target;
    return f;
}

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
    std::filesystem::path work;
    std::string name;  // original name
    char origin = 'n';
    std::uint64_t size_hint = 0;
    parse_result pr;
    std::int64_t first_seen = 0;
    int attempts = 0;
    std::vector<rcpt> rcpts;
    bool vanished = false;
    std::string failed_path;

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

engine::engine(const config& cfg, settings s, journal& j, shm_state* shm)
    : cfg_(cfg), s_(std::move(s)), journal_(j), shm_(shm), targets_(cfg) {
    std::size_t n = s_.worker.exec_path.empty() ? 1 : std::max<std::size_t>(1, s_.parse_workers);
    for (std::size_t i = 0; i < n; ++i)
        workers_.push_back(std::make_unique<parse_worker>(s_.worker));
}

std::vector<parse_result> engine::parse_all(const std::vector<std::filesystem::path>& paths,
                                            const std::vector<std::uint64_t>& sizes) {
    if (workers_.size() < 2 || paths.size() < 16)
        return workers_.front()->parse_batch(paths, sizes);
    // Two halves in parallel (two cores): the second half on a thread of its own.
    std::size_t mid = paths.size() / 2;
    std::vector<std::filesystem::path> p2(paths.begin() + static_cast<long>(mid), paths.end());
    std::vector<std::uint64_t> s2(sizes.begin() + static_cast<long>(mid), sizes.end());
    std::vector<parse_result> r2;
    std::exception_ptr err;
    std::thread t([&] {
        try {
            r2 = workers_[1]->parse_batch(p2, s2);
        } catch (...) {
            err = std::current_exception();
        }
    });
    std::vector<parse_result> r1;
    try {
        r1 = workers_[0]->parse_batch(
            std::vector<std::filesystem::path>(paths.begin(),
                                               paths.begin() + static_cast<long>(mid)),
            std::vector<std::uint64_t>(sizes.begin(), sizes.begin() + static_cast<long>(mid)));
    } catch (...) {
        t.join();
        throw;
    }
    t.join();
    if (err) std::rethrow_exception(err);
    for (auto& r : r2) r1.push_back(std::move(r));
    return r1;
}

engine::~engine() = default;

batch_stats engine::run_batch(const folder& f, store* st, bool want_oldest) {
    batch_stats bs;
    if (!st) return bs;
    const std::int64_t now = now_unix();
    const auto work = f.work_dir(s_.host);
    try {
        util::make_dirs(work, 0750);
        util::make_dirs(f.failed_dir(), 0750);
    } catch (const std::system_error& e) {
        spdlog::error("connector {}: cannot prepare {}: {}", f.connector, work.string(), e.what());
        return bs;
    }
    std::vector<item> items;
    auto note_waiting = [&](const std::filesystem::path& p) {
        ++bs.waiting;
        if (!want_oldest) return;
        struct stat sb {};
        if (::stat(p.c_str(), &sb) == 0 && (bs.oldest == 0 || sb.st_mtime < bs.oldest))
            bs.oldest = sb.st_mtime;
    };
    // 1. our own claims: crash recovery and retries that are due
    {
        auto rt = journal_.read();
        list_dir(work, [&](const std::string& n, unsigned char) {
            auto p = work / n;
            if (items.size() >= s_.batch_size) {
                note_waiting(p);
                return true;
            }
            auto rr = journal_.retry(rt, p.string());
            if (rr && rr->is_object() && rr->value("next", std::int64_t{0}) > now) {
                note_waiting(p);
                return true;
            }
            if (auto m = unrecorded_retries_.find(p.string()); m != unrecorded_retries_.end()) {
                if (m->second > now) {
                    note_waiting(p);
                    return true;
                }
                unrecorded_retries_.erase(m);
            }
            item it;
            it.work = p;
            auto comma = n.find(',');
            it.origin = (comma == 1) ? n[0] : 'n';
            it.name = (comma == 1) ? n.substr(2) : n;
            if (rr && rr->is_object()) {
                it.first_seen = rr->value("first_seen", std::int64_t{0});
                it.attempts = rr->value("attempts", 0);
            }
            items.push_back(std::move(it));
            return true;
        });
    }
    // 2. claim new files by rename: the importer whose rename succeeds owns the file
    auto claim = [&](const std::filesystem::path& dir, char origin, bool eml_only) {
        list_dir(dir, [&](const std::string& n, unsigned char) {
            if (eml_only && !ends_with_eml(n)) return true;
            auto src = dir / n;
            if (items.size() >= s_.batch_size) {
                note_waiting(src);
                return true;
            }
            if (eml_only && s_.eml_settle.count() > 0) {
                struct stat sb {};
                if (::stat(src.c_str(), &sb) != 0 || !S_ISREG(sb.st_mode)) return true;
                if (now - sb.st_mtime < s_.eml_settle.count()) {
                    note_waiting(src);
                    return true;
                }
            }
            std::string wn = bounded_name(safe_name(n), max_work_name);
            auto dst = work / (std::string(1, origin) + "," + wn);
            int rc = claim_rename(src, dst);
            for (int i = 0; rc == EEXIST && i < 8; ++i) {
                // An older claim of the same name is still here (a retry, a crash): both
                // stay; the newcomer gets a unique suffix.
                wn = bounded_name(safe_name(n) + "." +
                                      short_hash(dst.string() + std::to_string(now) +
                                                 std::to_string(i) + std::to_string(items.size())),
                                  max_work_name);
                dst = work / (std::string(1, origin) + "," + wn);
                rc = claim_rename(src, dst);
            }
            if (rc != 0) {
                if (rc != ENOENT)  // ENOENT: another importer won, or it vanished
                    spdlog::warn("connector {}: cannot claim {}: {}", f.connector,
                                 log_safe(src.string()), std::strerror(rc));
                return true;
            }
            if (auto err = make_private(work, dst); !err.empty())
                spdlog::warn(
                    "connector {}: cannot make a private copy of {} ({}); importing "
                    "it as it is",
                    f.connector, log_safe(wn), err);
            item it;
            it.work = dst;
            it.name = wn;
            it.origin = origin;
            items.push_back(std::move(it));
            return true;
        });
    };
    claim(f.retry_dir(), 'r', false);
    claim(f.new_dir(), 'n', false);
    claim(f.drop, 'e', true);
    if (items.empty()) return bs;

    // 3. parse everything in the worker
    std::vector<std::filesystem::path> paths;
    std::vector<std::uint64_t> sizes;
    for (auto& it : items) {
        paths.push_back(it.work);
        struct stat sb {};
        sizes.push_back(::stat(it.work.c_str(), &sb) == 0 ? static_cast<std::uint64_t>(sb.st_size)
                                                          : 0);
    }
    auto results = parse_all(paths, sizes);
    for (std::size_t i = 0; i < items.size(); ++i) {
        items[i].pr = std::move(results[i]);
        if (items[i].pr.st == parse_result::status::crashed ||
            items[i].pr.st == parse_result::status::timeout) {
            // Once more alone with a fresh worker; a second failure is the message's fault.
            spdlog::warn("connector {}: parser failed on {} ({}); retrying once", f.connector,
                         log_safe(items[i].name), items[i].pr.error);
            auto again = workers_.front()->parse(items[i].work, sizes[i]);
            if (again.st == parse_result::status::ok ||
                again.st == parse_result::status::io_error) {
                items[i].pr = std::move(again);
            } else {
                // Unparseable for good; still learn sender and recipients (no mimetic, no
                // GMime) so the failure is recorded per recipient and the bounce can go out.
                auto env = workers_.front()->parse(items[i].work, sizes[i], true);
                if (env.st == parse_result::status::ok) {
                    items[i].pr.fingerprint = env.fingerprint;
                    items[i].pr.size = env.size;
                    items[i].pr.mtime = env.mtime;
                    items[i].pr.info = std::move(env.info);
                }
            }
        }
    }

    auto view = st->read();
    const auto policy = check_policy::from(cfg_);
    sync_set sync(s_.durability);
    auto rt = journal_.read();
    bool any_planned = false;
    // Per file: duplicates by the journal, mailbox, target, planned location.
    auto plan_file = [&](item& it) {
        auto& pr = it.pr;
        if (it.first_seen == 0) it.first_seen = pr.mtime ? pr.mtime : now;
        auto fail_all = [&](const std::string& reason, const std::string& status,
                            const std::string& diag) {
            for (auto& r : it.rcpts)
                r.res = {result_kind::permanent, status, diag, {}}, r.reason = reason;
            if (it.rcpts.empty()) {
                item::rcpt r;
                r.res = {result_kind::permanent, status, diag, {}};
                r.reason = reason;
                it.rcpts.push_back(std::move(r));
            }
        };
        if (pr.st == parse_result::status::io_error) {
            if (pr.err == ENOENT) {
                struct stat sb {};
                if (::lstat(it.work.c_str(), &sb) != 0) {
                    it.vanished = true;
                    return;
                }
                // Still there, yet the parser found no such file: it can never read this one
                // (it would loop forever as "vanished"): the file's failure, not a retry.
                fail_all("unparseable", "5.6.0", "the parser cannot open the file: " + pr.error);
                return;
            }
            if (pr.err == ELOOP || pr.err == EINVAL) {  // a symlink or not a regular file
                fail_all("unparseable", "5.6.0", "not a regular file: " + pr.error);
                return;
            }
            item::rcpt r;  // EACCES, EIO, ...: an administrator can fix it; retry
            r.res = {result_kind::temporary, "4.3.0", "cannot read the file: " + pr.error, {}};
            it.rcpts.push_back(std::move(r));
            return;
        }
        if (pr.st != parse_result::status::ok) {
            for (const auto& raw : pr.info.env.recipients) {  // from the envelope-only pass
                item::rcpt r;
                r.raw = raw;
                auto pa = parse_address(raw);
                r.key = std::holds_alternative<address>(pa) ? std::get<address>(pa).str() : raw;
                it.rcpts.push_back(std::move(r));
            }
            fail_all("unparseable", "5.6.0", "message could not be parsed: " + pr.error);
            return;
        }
        if (pr.size == 0) {
            fail_all("unparseable", "5.6.0", "empty file");
            return;
        }
        const auto& env = pr.info.env;
        std::vector<std::string> raws = env.recipients;
        if (env.source == "to-cc") {
            // Last resort: only addresses of this connector's domains are ours.
            std::vector<std::string> mine;
            for (const auto& a : raws) {
                auto pa = parse_address(a);
                if (auto* ad = std::get_if<address>(&pa)) {
                    auto m = view.match_domain(ad->domain);
                    if (m && m->connector == f.connector) mine.push_back(a);
                }
            }
            spdlog::warn("connector {}: {} has no envelope headers; using To/Cc as last resort: {}",
                         f.connector, log_safe(it.name),
                         log_safe(nlohmann::json(mine).dump(
                             -1, ' ', false, nlohmann::json::error_handler_t::replace)));
            raws = mine;
        }
        for (const auto& raw : raws) {
            item::rcpt r;
            r.raw = raw;
            auto pa = parse_address(raw);
            if (auto* err = std::get_if<address_error>(&pa)) {
                r.key = raw;
                r.reason = "no-mailbox";
                r.res = {
                    result_kind::permanent, "5.1.3", "bad recipient address: " + err->reason, {}};
            } else {
                r.key = std::get<address>(pa).str();
            }
            it.rcpts.push_back(std::move(r));
        }
        if (it.rcpts.empty()) {
            fail_all("unparseable", "5.6.0",
                     "no envelope recipient (no X-Receiver, Delivered-To, X-Original-To, nor a "
                     "To/Cc address of this connector)");
            return;
        }
        if (f.max_size > 0 && pr.size > f.max_size) {
            fail_all("too-large", "5.3.4",
                     "message size " + std::to_string(pr.size) + " exceeds the connector's limit " +
                         std::to_string(f.max_size));
            return;
        }
        for (auto& r : it.rcpts) {
            if (r.res.kind == result_kind::permanent && !r.reason.empty()) continue;
            // The journal first: never twice.
            if (auto rec = journal_.delivery(rt, pr.fingerprint, r.key); rec && rec->is_object()) {
                std::string state = rec->value("state", "");
                if (state == "imported") {
                    r.settled = true;
                    r.res = {result_kind::imported, "2.0.0", "duplicate",
                             rec->value("location", "")};
                    ++bs.duplicates;
                    continue;
                }
                if (state == "failed") {
                    r.was_failed = true;
                    r.bounce_done = rec->value("bounce_spooled", false);
                    std::string fp = rec->value("failed_path", "");
                    if (it.origin != 'r' && !fp.empty() && std::filesystem::exists(fp)) {
                        r.settled = true;  // the earlier copy in ImportFailed stands
                        r.res = {
                            result_kind::permanent, rec->value("status", ""), "already failed", {}};
                        r.reason = rec->value("reason", "");
                        ++bs.duplicates;
                        continue;
                    }
                }
                if (state == "held") {
                    // A permanent outcome of an earlier try of this file, whose bounce waits
                    // until the file is finished: it stands (the target is not asked again).
                    r.res = {result_kind::permanent,
                             rec->value("status", ""),
                             rec->value("diagnostic", ""),
                             {}};
                    r.reason = rec->value("reason", "");
                    r.mailbox = rec->value("mailbox", "");
                    continue;
                }
                if (state == "pending") {
                    std::string spec = rec->value("target", ""), loc = rec->value("location", "");
                    try {
                        auto& t = targets_.get(spec);
                        if (!loc.empty() && t.delivered(loc)) {
                            // Delivered before a crash; make sure it is durable now.
                            r.target = &t;
                            r.spec = spec;
                            r.mailbox = rec->value("mailbox", "");
                            r.planned = loc;
                            std::filesystem::path root(spec.substr(spec.find(':') + 1));
                            r.res = {result_kind::imported, "2.0.0", "recovered after a crash",
                                     (root / "new" / loc).string()};
                            sync.add_file(root / "new" / loc);
                            sync.add_dir(root / "new");
                            continue;
                        }
                    } catch (const std::exception&) {
                    }
                }
            }
            // The milter's decision, resolved to a destination (one function for both).
            auto pa = parse_address(r.key);
            auto dec = decide_import(view, policy, std::get<address>(pa), f.connector);
            if (dec.what == import_decision::kind::no_mailbox) {
                r.reason = "no-mailbox";
                r.res = {result_kind::permanent, "5.1.1", dec.detail, {}};
                continue;
            }
            if (dec.what == import_decision::kind::tempfail) {
                r.res = {result_kind::temporary, "4.2.1", dec.detail, {}};
                continue;
            }
            r.mailbox = dec.mailbox;
            try {
                if (dec.what == import_decision::kind::postmaster) {
                    r.spec = cfg_.effective_postmaster_target();
                } else {
                    auto mb = view.find_mailbox(r.mailbox);
                    r.spec =
                        effective_target(cfg_, mb ? mb->target : "", f.default_target, r.mailbox);
                }
                r.target = &targets_.get(r.spec);
            } catch (const std::exception& e) {
                r.res = {result_kind::temporary, "4.3.5", std::string("target: ") + e.what(), {}};
                continue;
            }
            delivery d{it.work,     pr.size,        r.key,         r.mailbox,
                       f.connector, pr.fingerprint, it.first_seen, &pr.info};
            r.planned = r.target->plan(d);
            r.to_deliver = true;
            any_planned = true;
        }
    };
    for (auto& it : items) {
        try {
            plan_file(it);
        } catch (const std::exception& e) {
            // Whatever went wrong is this file's problem: it waits for a retry, the batch goes on.
            spdlog::error("connector {}: cannot plan {}: {}; will retry", f.connector,
                          log_safe(it.name), e.what());
            it.defer("4.3.0", std::string("planning failed: ") + e.what());
        }
    }
    rt.abort();

    // 4. pending records with their planned locations, before anything becomes visible
    auto write_pending = [&](lmdb::txn& t, item& it) {
        bool planned = false;
        for (const auto& r : it.rcpts) planned |= r.to_deliver;
        if (!planned) return;
        inject_journal_fault(it.name, "pending");
        for (auto& r : it.rcpts)
            if (r.to_deliver && r.target && !r.planned.empty())
                journal_.put_delivery(t, it.pr.fingerprint, r.key,
                                      {{"state", "pending"},
                                       {"connector", f.connector},
                                       {"mailbox", r.mailbox},
                                       {"target", r.spec},
                                       {"location", r.planned},
                                       {"file", it.name},
                                       {"time", now},
                                       {"host", s_.host}});
    };
    if (any_planned)
        write_each(
            journal_, f.connector, items, write_pending,
            [](item& it, const std::string& what) { it.defer("4.3.0", "journal: " + what); });
    // 5. deliver, then one sync for the whole batch
    for (auto& it : items)
        for (auto& r : it.rcpts) {
            if (!r.to_deliver || !r.target || r.planned.empty()) continue;
            delivery d{it.work,     it.pr.size,        r.key,         r.mailbox,
                       f.connector, it.pr.fingerprint, it.first_seen, &it.pr.info};
            try {
                r.res = r.target->deliver(d, r.planned, sync);
            } catch (const std::exception& e) {
                r.res = {result_kind::temporary, "4.3.0", std::string("deliver: ") + e.what(), {}};
            }
            if (r.res.kind == result_kind::permanent) r.reason = "refused";
        }
    try {
        sync.sync();
    } catch (const std::system_error& e) {
        spdlog::error("connector {}: making the batch durable failed: {}; will retry", f.connector,
                      e.what());
        for (auto& it : items)
            for (auto& r : it.rcpts)
                if (r.res.kind == result_kind::imported && !r.settled)
                    r.res = {result_kind::temporary, "4.3.0", std::string("sync: ") + e.what(), {}};
    }

    // 6. decide per file; a file is finished when no recipient is temporary: then its
    // permanent failures (of this try and held from earlier ones) go to ImportFailed with one
    // bounce. While a recipient is temporary, permanent outcomes are held (journal state
    // "held"): no bounce, no count, no "failed" line yet.
    for (auto& it : items) {
        if (it.vanished) continue;
        bool any_temp = it.any_temporary();
        if (any_temp && now - it.first_seen > s_.max_age.count()) {
            for (auto& r : it.rcpts)
                if (r.res.kind == result_kind::temporary) {
                    r.res = {result_kind::permanent,
                             "5.4.7",
                             r.res.status + " " + r.res.detail + "; retried since " +
                                 iso_time(it.first_seen) + ", giving up",
                             {}};
                    r.reason = "expired";
                }
            any_temp = false;
        }
        if (any_temp) continue;
        bool any_new_failure = false;
        for (auto& r : it.rcpts)
            any_new_failure |= r.res.kind == result_kind::permanent && !r.settled;
        if (any_new_failure) {
            try {
                finish_failed(f, it);
            } catch (const std::exception& e) {
                spdlog::error("connector {}: cannot move {} to ImportFailed: {}; will retry",
                              f.connector, log_safe(it.name), e.what());
                for (auto& r : it.rcpts)
                    if (r.res.kind == result_kind::permanent && !r.settled)
                        r.res.kind = result_kind::temporary;  // keep it; try again later
            }
        }
    }

    // 7. final journal records, indexes, retry schedule
    auto retry_record = [&](const item& it, const std::string& last_error) {
        int attempts = it.attempts + 1;
        auto delay = s_.retry_base.count() << std::min(attempts - 1, 20);
        delay = std::min<long>(delay, s_.retry_max.count());
        return nlohmann::json{{"attempts", attempts},
                              {"next", now + delay},
                              {"first_seen", it.first_seen},
                              {"last_error", last_error}};
    };
    auto write_final = [&](lmdb::txn& t, item& it) {
        inject_journal_fault(it.name, "final");
        if (it.vanished) {
            journal_.del_retry(t, it.work.string());
            return;
        }
        bool any_temp = it.any_temporary();
        nlohmann::json rcpt_list = nlohmann::json::array();
        std::string last_error;
        for (auto& r : it.rcpts) {
            if (r.res.kind == result_kind::temporary) {
                last_error = r.res.status + " " + r.res.detail;
                continue;
            }
            rcpt_list.push_back(r.key);
            if (r.settled || it.pr.fingerprint.empty()) continue;
            nlohmann::json rec = {{"connector", f.connector},
                                  {"mailbox", r.mailbox},
                                  {"file", it.name},
                                  {"message_id", it.pr.info.message_id},
                                  {"queue_id", it.pr.info.queue_id},
                                  {"size", it.pr.size},
                                  {"time", now},
                                  {"host", s_.host},
                                  {"status", r.res.status}};
            if (r.res.kind == result_kind::imported) {
                rec["state"] = "imported";
                rec["target"] = r.spec;
                rec["location"] = r.planned;
                rec["path"] = r.res.location;
            } else {
                // Finished: in ImportFailed with its bounce. Not finished: held (see step 6).
                rec["state"] = any_temp ? "held" : "failed";
                rec["reason"] = r.reason;
                rec["diagnostic"] = r.res.detail;
                rec["failed_path"] = it.failed_path;
                rec["bounce_spooled"] = !any_temp && !it.failed_path.empty();
            }
            journal_.put_delivery(t, it.pr.fingerprint, r.key, rec);
        }
        if (!it.pr.fingerprint.empty())
            journal_.index(t, it.name, it.pr.fingerprint, it.pr.info.message_id,
                           it.pr.info.queue_id,
                           {{"connector", f.connector},
                            {"recipients", rcpt_list},
                            {"time", now},
                            {"message_id", it.pr.info.message_id},
                            {"queue_id", it.pr.info.queue_id}});
        if (any_temp)
            journal_.put_retry(t, it.work.string(), retry_record(it, last_error));
        else
            journal_.del_retry(t, it.work.string());
    };
    write_each(journal_, f.connector, items, write_final, [&](item& it, const std::string& what) {
        if (it.vanished || !it.failed_path.empty()) return;  // not in .work any more
        // Its deliveries stay "pending" in the journal: the next try finds them delivered and
        // records them then (the crash recovery path).
        it.defer("4.3.0", "journal: " + what);
        try {
            journal_.write([&](lmdb::txn& t) {
                journal_.put_retry(t, it.work.string(),
                                   retry_record(it, "4.3.0 journal write failed"));
            });
        } catch (const std::exception& e) {
            // Not even a retry record: remember the schedule in memory so this file never
            // blocks the folder (a restart retries it at once).
            auto next = retry_record(it, "").value("next", now + s_.retry_base.count());
            unrecorded_retries_[it.work.string()] = next;
            spdlog::error("connector {}: no retry record for {}: {}", f.connector,
                          log_safe(it.name), e.what());
        }
    });

    // 8. the claimed copies that are done go away; log and count (permanent outcomes once:
    // when the file is finished)
    for (auto& it : items) {
        ++bs.files;
        if (it.vanished) {
            spdlog::warn("connector {}: {} disappeared before it could be read", f.connector,
                         log_safe(it.name));
            continue;
        }
        bool any_temp = it.any_temporary();
        auto* cc = shm_ ? &shm_->counters(f.connector) : nullptr;
        for (auto& r : it.rcpts) {
            const char* outcome = r.settled                              ? "duplicate"
                                  : r.res.kind == result_kind::imported  ? "imported"
                                  : r.res.kind == result_kind::temporary ? "deferred"
                                  : any_temp                             ? "held"
                                                                         : "failed";
            spdlog::info(
                "import connector={} rcpt=<{}> mailbox={} msgid={} size={} queue_id={} outcome={} "
                "status={} reason={} detail=\"{}\" file={}",
                f.connector, log_safe(r.key), log_safe(r.mailbox), log_safe(it.pr.info.message_id),
                it.pr.size, log_safe(it.pr.info.queue_id), outcome, r.res.status, r.reason,
                log_safe(r.res.detail), log_safe(it.name));
            if (r.settled) continue;
            if (r.res.kind == result_kind::imported) {
                ++bs.imported;
                if (cc) cc->imported.fetch_add(1, std::memory_order_relaxed);
            } else if (r.res.kind == result_kind::permanent && !any_temp) {
                ++bs.failed;
                if (cc) (cc->*counter_for(r.reason)).fetch_add(1, std::memory_order_relaxed);
            }
        }
        if (any_temp) {
            ++bs.deferred;
            if (cc) cc->retried.fetch_add(1, std::memory_order_relaxed);
            continue;
        }
        if (it.failed_path.empty()) ::unlink(it.work.c_str());
    }
    return bs;
}

void engine::finish_failed(const folder& f, item& it) {
    const std::int64_t now = now_unix();
    const auto& info = it.pr.info;
    // Bounded: a drop file name near NAME_MAX plus ".json" and a temporary suffix would not
    // fit, and the file would never leave .work/. The reason file keeps the original name.
    std::string fname = bounded_name(it.name, max_failed_name);
    auto dir = f.failed_dir();
    struct stat sb {};
    if (::lstat((dir / fname).c_str(), &sb) == 0)
        fname += "." + (it.pr.fingerprint.empty() ? short_hash(it.work.string())
                                                  : it.pr.fingerprint.substr(0, 12));
    auto msg_path = dir / fname;
    auto reason_path = dir / (fname + ".json");

    bounce_job job;
    std::string rcpt_keys;
    nlohmann::json rcpts = nlohmann::json::array();
    bool need_bounce = false;
    for (auto& r : it.rcpts) {
        if (r.res.kind != result_kind::permanent || r.settled) continue;
        rcpts.push_back({{"recipient", r.key},
                         {"original_recipient", info.env.original_recipient},
                         {"reason", r.reason},
                         {"status", r.res.status},
                         {"diagnostic", r.res.detail}});
        rcpt_keys += r.key + "\n";
        if (!r.bounce_done) {
            need_bounce = true;
            job.recipients.push_back(
                {r.key, info.env.original_recipient, r.res.status, r.res.detail, r.reason});
        }
    }
    job.id = "b" +
             (it.pr.fingerprint.empty() ? short_hash(it.work.string())
                                        : it.pr.fingerprint.substr(0, 24)) +
             "-" + short_hash(rcpt_keys);
    job.connector = f.connector;
    job.envelope_sender = info.env.sender;
    job.message_path = msg_path.string();
    job.reason_path = reason_path.string();
    job.fingerprint = it.pr.fingerprint;
    job.message_id = info.message_id;
    job.queue_id = info.queue_id;
    job.arrival_time = it.first_seen;
    job.created_time = now;

    nlohmann::json reason = {
        {"file", fname},
        {"original_name", it.name},
        {"connector", f.connector},
        {"drop_folder", f.drop.string()},
        {"recipient", rcpts.empty() ? "" : rcpts[0].value("recipient", "")},
        {"reason", rcpts.empty() ? "" : rcpts[0].value("reason", "")},
        {"status", rcpts.empty() ? "" : rcpts[0].value("status", "")},
        {"diagnostic", rcpts.empty() ? "" : rcpts[0].value("diagnostic", "")},
        {"recipients", rcpts},
        {"time", iso_time(now)},
        {"failed_time", now},
        {"arrival_time", it.first_seen},
        {"importer_host", s_.host},
        {"message_id", info.message_id},
        {"queue_id", info.queue_id},
        {"subject", info.subject},
        {"from", info.from},
        {"envelope_sender", info.env.sender},
        {"envelope_sender_known", info.env.sender_known},
        {"envelope_source", info.env.source},
        {"size", it.pr.size},
        {"fingerprint", it.pr.fingerprint},
        {"bounce", need_bounce
                       ? nlohmann::json{{"state", "pending"}, {"job", job.id}}
                       : nlohmann::json{{"state", "not-sent"},
                                        {"why", "a bounce was already spooled for this failure"}}}};
    util::write_file_durable(reason_path, journal::dump(reason), 0640);
    if (need_bounce) spool_bounce(cfg_, job);
    util::rename_durable(it.work, msg_path);
    it.failed_path = msg_path.string();
}

}  // namespace mx::importer
