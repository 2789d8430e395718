// journal: the importer's memory of what it did, in its own LMDB environment
// (<state_dir>/journal). Header-only so `mxctl failed`/`mxctl import-status` can read it without
// linking the importer.
//
// Schema (schema_version 1):
//   deliveries  "<fingerprint> <recipient>" -> JSON record (state pending|imported|failed|
//               held, recipient, ...); held: a permanent failure of a file not finished yet
//               (another recipient is temporary), its bounce not spooled
//   files       "<drop file name> <fingerprint>" -> JSON {connector, recipients, time}
//   msgids      "<message-id> <fingerprint>" -> ""
//   queueids    "<queue id> <fingerprint>" -> ""
//   retries     "<work file path>" -> JSON {attempts, next, first_seen, last_error, path}
//   meta        "schema_version"
// Every key part that comes from mail or from the file system (recipient, file name,
// message-id, queue id, work path) goes through key_part(): LMDB refuses keys over 511 bytes
// (MDB_BAD_VALSIZE), and one hostile header must never make a write fail. A part of
// key_part_max bytes or more becomes a readable prefix + "~" + SHA-256 hex of the whole part,
// exactly key_part_max bytes long (so a short part can never equal a hashed one); writers and
// lookups use the same function, so `mxctl import-status` finds long values too. The original
// values stay in the JSON records.
// Promises: a delivery record reaches state "imported" only after the target reported the
// message durable; a "pending" record names the planned location so a restart can tell
// whether the delivery happened (no duplicate, no loss). Every write is one transaction;
// MDB_MAP_FULL grows the map and retries. Fingerprint = SHA-256 of the file's bytes, so the
// same bytes dropped twice (Postfix redelivery after a crash) are imported once per recipient.
// Retention: prune() removes final records (imported, failed) older than a time, their index
// entries and retry records of vanished files; pending and held records are never pruned.
#pragma once

#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/fs.hpp"
#include "util/hex.hpp"
#include "util/lmdb.hpp"

namespace mx::importer {

class journal {
  public:
    static journal open(const std::filesystem::path& dir, bool read_only) {
        journal j;
        if (!read_only) util::make_dirs(dir, 0750);
        lmdb::env::options o;
        o.read_only = read_only;
        o.max_dbs = 8;
        o.mode = 0640;
        j.env_ = lmdb::env::open(dir, o);
        auto t = lmdb::txn::begin(j.env_, read_only);
        unsigned flags = read_only ? 0 : MDB_CREATE;
        j.deliveries_ = lmdb::dbi::open(t, "deliveries", flags);
        j.files_ = lmdb::dbi::open(t, "files", flags);
        j.msgids_ = lmdb::dbi::open(t, "msgids", flags);
        j.queueids_ = lmdb::dbi::open(t, "queueids", flags);
        j.retries_ = lmdb::dbi::open(t, "retries", flags);
        j.meta_ = lmdb::dbi::open(t, "meta", flags);
        if (!read_only && !j.meta_.get(t, "schema_version")) j.meta_.put(t, "schema_version", "1");
        t.commit();
        return j;
    }

    // Longest key part derived from input. A key is at most two parts and a space (the other
    // part is a 64-hex fingerprint), far below LMDB's 511 bytes.
    static constexpr std::size_t key_part_max = 400;

    // `s` itself when shorter than key_part_max bytes; else the first bytes of `s` (not
    // cutting a UTF-8 sequence, spaces made '_' so prefix lookups stay exact), "~" and the
    // SHA-256 hex of the whole of `s`: key_part_max bytes.
    static std::string key_part(std::string_view s) {
        if (s.size() < key_part_max) return std::string(s);
        const std::string h = util::sha256_hex(s);
        std::size_t keep = key_part_max - 1 - h.size();
        while (keep > 0 && (static_cast<unsigned char>(s[keep]) & 0xC0) == 0x80) --keep;
        std::string out(s.substr(0, keep));
        for (char& c : out)
            if (c == ' ') c = '_';
        out.resize(key_part_max - 1 - h.size(), '_');
        return out + "~" + h;
    }

    static std::string delivery_key(std::string_view fp, std::string_view rcpt) {
        return key_part(fp) + " " + key_part(rcpt);
    }
    static std::string retry_key(std::string_view work_path) { return key_part(work_path); }

    // One write transaction (retried after growing the map; fn must be repeatable).
    void write(const std::function<void(lmdb::txn&)>& fn) {
        for (int attempt = 0;; ++attempt) {
            try {
                auto t = lmdb::txn::begin(env_, false);
                fn(t);
                t.commit();
                return;
            } catch (const lmdb::map_full_error&) {
                if (attempt >= 20) throw;
                env_.grow();
            }
        }
    }
    lmdb::txn read() { return lmdb::txn::begin(env_, true); }

    std::optional<nlohmann::json> delivery(lmdb::txn& t, std::string_view fp,
                                           std::string_view rcpt) const {
        auto v = deliveries_.get(t, delivery_key(fp, rcpt));
        if (!v) return std::nullopt;
        return nlohmann::json::parse(*v, nullptr, false);
    }
    // The record keeps the recipient as given ("recipient"): the key may hold a hash of it.
    // By value: a caller's temporary (or std::move) is not copied.
    void put_delivery(lmdb::txn& t, std::string_view fp, std::string_view rcpt,
                      nlohmann::json rec) const {
        if (rec.is_object()) rec["recipient"] = std::string(rcpt);
        deliveries_.put(t, delivery_key(fp, rcpt), dump(rec));
    }
    // Index entries for the queries of `mxctl import-status`.
    void index(lmdb::txn& t, std::string_view file, std::string_view fp,
               std::string_view message_id, std::string_view queue_id,
               const nlohmann::json& file_rec) const {
        const std::string f = " " + key_part(fp);
        files_.put(t, key_part(file) + f, dump(file_rec));
        if (!message_id.empty()) msgids_.put(t, key_part(message_id) + f, "");
        if (!queue_id.empty()) queueids_.put(t, key_part(queue_id) + f, "");
    }

    std::optional<nlohmann::json> retry(lmdb::txn& t, std::string_view work_path) const {
        auto v = retries_.get(t, retry_key(work_path));
        if (!v) return std::nullopt;
        return nlohmann::json::parse(*v, nullptr, false);
    }
    // The record keeps the work path ("path") for the pruning of files that no longer exist.
    void put_retry(lmdb::txn& t, std::string_view work_path, const nlohmann::json& r) const {
        nlohmann::json rec = r;
        if (rec.is_object()) rec["path"] = std::string(work_path);
        retries_.put(t, retry_key(work_path), dump(rec));
    }
    void del_retry(lmdb::txn& t, std::string_view work_path) const {
        retries_.del(t, retry_key(work_path));
    }

    // All delivery records of a fingerprint: (recipient, record).
    std::vector<std::pair<std::string, nlohmann::json>> deliveries_of(lmdb::txn& t,
                                                                      std::string_view fp) const {
        std::vector<std::pair<std::string, nlohmann::json>> out;
        auto c = lmdb::cursor::open(t, deliveries_);
        std::string prefix = std::string(fp) + " ";
        std::string_view k, v;
        for (bool ok = c.seek(prefix, k, v); ok && k.substr(0, prefix.size()) == prefix;
             ok = c.next(k, v)) {
            auto rec = nlohmann::json::parse(v, nullptr, false);
            std::string rcpt(k.substr(prefix.size()));
            if (rec.is_object() && rec.contains("recipient") && rec["recipient"].is_string())
                rcpt = rec["recipient"].get<std::string>();  // the key may hold a hash
            out.emplace_back(std::move(rcpt), std::move(rec));
        }
        return out;
    }
    // Fingerprints indexed under a file name / message-id / queue id (exact match).
    enum class by { file, message_id, queue_id };
    std::vector<std::pair<std::string, nlohmann::json>> lookup(lmdb::txn& t, by what,
                                                               std::string_view key) const {
        const lmdb::dbi& d = what == by::file         ? files_
                             : what == by::message_id ? msgids_
                                                      : queueids_;
        std::vector<std::pair<std::string, nlohmann::json>> out;
        auto c = lmdb::cursor::open(t, d);
        std::string prefix = key_part(key) + " ";
        std::string_view k, v;
        for (bool ok = c.seek(prefix, k, v); ok && k.substr(0, prefix.size()) == prefix;
             ok = c.next(k, v)) {
            std::string_view fp = k.substr(prefix.size());
            if (fp.find(' ') != std::string_view::npos) continue;  // a longer key
            out.emplace_back(std::string(fp), v.empty() ? nlohmann::json::object()
                                                        : nlohmann::json::parse(v, nullptr, false));
        }
        return out;
    }
    // Visits every delivery record (for pruning and listings); fn returns false to stop.
    void for_each_delivery(
        lmdb::txn& t, const std::function<bool(std::string_view, std::string_view)>& fn) const {
        auto c = lmdb::cursor::open(t, deliveries_);
        std::string_view k, v;
        for (bool ok = c.first(k, v); ok; ok = c.next(k, v))
            if (!fn(k, v)) break;
    }
    // Retention: removes delivery records in a final state (imported, failed) whose "time" is
    // before `before`, the index entries of fingerprints left without any delivery record,
    // and retry records whose work file no longer exists. Pending records are never removed
    // (they are what crash recovery reads). Works in transactions of at most `chunk` removals
    // so the writer lock is never held long. Returns the number of entries removed.
    std::size_t prune(std::int64_t before, std::size_t chunk = 10000) {
        std::size_t removed = 0;
        std::set<std::string> emptied;  // fingerprints that lost records
        for (;;) {                      // deliveries
            std::size_t n = 0;
            write([&](lmdb::txn& t) {
                std::vector<std::string> del;
                {
                    auto c = lmdb::cursor::open(t, deliveries_);
                    std::string_view k, v;
                    for (bool ok = c.first(k, v); ok && del.size() < chunk; ok = c.next(k, v)) {
                        auto rec = nlohmann::json::parse(v, nullptr, false);
                        if (!rec.is_object()) continue;
                        std::string state = rec.value("state", "");
                        if (state != "imported" && state != "failed") continue;
                        auto tm = rec.find("time");
                        if (tm == rec.end() || !tm->is_number() ||
                            tm->get<std::int64_t>() >= before)
                            continue;
                        del.emplace_back(k);
                    }
                }  // the cursor is closed before the deletions
                for (const auto& key : del) {
                    deliveries_.del(t, key);
                    emptied.insert(key.substr(0, key.find(' ')));
                }
                n = del.size();
            });
            removed += n;
            if (n < chunk) break;
        }
        // Index entries "<value> <fingerprint>" whose fingerprint has no delivery record left.
        for (const lmdb::dbi* d : {&files_, &msgids_, &queueids_}) {
            for (;;) {
                std::size_t n = 0;
                write([&](lmdb::txn& t) {
                    std::vector<std::string> del;
                    {
                        auto c = lmdb::cursor::open(t, *d);
                        auto dc = lmdb::cursor::open(t, deliveries_);
                        std::string_view k, v, k2, v2;
                        for (bool ok = c.first(k, v); ok && del.size() < chunk; ok = c.next(k, v)) {
                            auto sp = k.rfind(' ');
                            std::string fp(sp == std::string_view::npos ? k : k.substr(sp + 1));
                            bool candidate = emptied.count(fp) > 0;
                            if (!candidate && !v.empty()) {  // files: an old entry of nothing
                                auto rec = nlohmann::json::parse(v, nullptr, false);
                                candidate =
                                    rec.is_object() && rec.value("time", std::int64_t{0}) < before;
                            }
                            if (!candidate) continue;
                            std::string prefix = fp + " ";
                            if (dc.seek(prefix, k2, v2) && k2.substr(0, prefix.size()) == prefix)
                                continue;  // still has deliveries
                            del.emplace_back(k);
                        }
                    }  // the cursors are closed before the deletions
                    for (const auto& key : del) d->del(t, key);
                    n = del.size();
                });
                removed += n;
                if (n < chunk) break;
            }
        }
        // Retry records of files that are gone (finished by another way, deleted by hand).
        write([&](lmdb::txn& t) {
            std::vector<std::string> del;
            {
                auto c = lmdb::cursor::open(t, retries_);
                std::string_view k, v;
                for (bool ok = c.first(k, v); ok; ok = c.next(k, v)) {
                    auto rec = nlohmann::json::parse(v, nullptr, false);
                    std::string path =
                        rec.is_object() ? rec.value("path", std::string(k)) : std::string(k);
                    struct stat sb {};
                    if (::lstat(path.c_str(), &sb) != 0 && errno == ENOENT) del.emplace_back(k);
                }
            }
            for (const auto& key : del) retries_.del(t, key);
            removed += del.size();
        });
        return removed;
    }
    // Entries per database and bytes of data.mdb (for `mxctl stats`).
    struct size_info {
        std::uint64_t bytes = 0, deliveries = 0, files = 0, msgids = 0, queueids = 0, retries = 0;
        NLOHMANN_DEFINE_TYPE_INTRUSIVE(size_info, bytes, deliveries, files, msgids, queueids,
                                       retries)
    };
    size_info size(const std::filesystem::path& dir) {
        size_info s;
        struct stat sb {};
        if (::stat((dir / "data.mdb").c_str(), &sb) == 0)
            s.bytes = static_cast<std::uint64_t>(sb.st_size);
        auto t = read();
        s.deliveries = deliveries_.size(t);
        s.files = files_.size(t);
        s.msgids = msgids_.size(t);
        s.queueids = queueids_.size(t);
        s.retries = retries_.size(t);
        return s;
    }
    const lmdb::dbi& deliveries_dbi() const { return deliveries_; }
    const lmdb::dbi& files_dbi() const { return files_; }
    lmdb::env& env() { return env_; }

    static std::string dump(const nlohmann::json& j) {
        return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }

  private:
    journal() = default;
    lmdb::env env_;
    lmdb::dbi deliveries_, files_, msgids_, queueids_, retries_, meta_;
};

}  // namespace mx::importer
