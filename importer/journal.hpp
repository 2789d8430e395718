// journal: the importer's memory of what it did, in its own LMDB environment
// (<state_dir>/journal). Header-only so `mxctl trace`/`mxctl failed` can read it without
// linking the importer.
//
// Schema (schema_version 1):
//   deliveries  "<fingerprint> <recipient>" -> JSON record (state pending|imported|failed, ...)
//   files       "<drop file name> <fingerprint>" -> JSON {connector, recipients, time}
//   msgids      "<message-id> <fingerprint>" -> ""
//   queueids    "<queue id> <fingerprint>" -> ""
//   retries     "<work file path>" -> JSON {attempts, next, first_seen, last_error}
//   meta        "schema_version"
// Promises: a delivery record reaches state "imported" only after the target reported the
// message durable; a "pending" record names the planned location so a restart can tell
// whether the delivery happened (no duplicate, no loss). Every write is one transaction;
// MDB_MAP_FULL grows the map and retries. Fingerprint = SHA-256 of the file's bytes, so the
// same bytes dropped twice (Postfix redelivery after a crash) are imported once per recipient.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "util/fs.hpp"
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

    static std::string delivery_key(std::string_view fp, std::string_view rcpt) {
        return std::string(fp) + " " + std::string(rcpt);
    }

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
    void put_delivery(lmdb::txn& t, std::string_view fp, std::string_view rcpt,
                      const nlohmann::json& rec) const {
        deliveries_.put(t, delivery_key(fp, rcpt), dump(rec));
    }
    // Index entries for the queries of `mxctl trace`.
    void index(lmdb::txn& t, std::string_view file, std::string_view fp,
               std::string_view message_id, std::string_view queue_id,
               const nlohmann::json& file_rec) const {
        files_.put(t, std::string(file) + " " + std::string(fp), dump(file_rec));
        if (!message_id.empty())
            msgids_.put(t, std::string(message_id) + " " + std::string(fp), "");
        if (!queue_id.empty()) queueids_.put(t, std::string(queue_id) + " " + std::string(fp), "");
    }

    std::optional<nlohmann::json> retry(lmdb::txn& t, std::string_view work_path) const {
        auto v = retries_.get(t, work_path);
        if (!v) return std::nullopt;
        return nlohmann::json::parse(*v, nullptr, false);
    }
    void put_retry(lmdb::txn& t, std::string_view work_path, const nlohmann::json& r) const {
        retries_.put(t, work_path, dump(r));
    }
    void del_retry(lmdb::txn& t, std::string_view work_path) const { retries_.del(t, work_path); }

    // All delivery records of a fingerprint: (recipient, record).
    std::vector<std::pair<std::string, nlohmann::json>> deliveries_of(lmdb::txn& t,
                                                                      std::string_view fp) const {
        std::vector<std::pair<std::string, nlohmann::json>> out;
        auto c = lmdb::cursor::open(t, deliveries_);
        std::string prefix = std::string(fp) + " ";
        std::string_view k, v;
        for (bool ok = c.seek(prefix, k, v); ok && k.substr(0, prefix.size()) == prefix;
             ok = c.next(k, v))
            out.emplace_back(std::string(k.substr(prefix.size())),
                             nlohmann::json::parse(v, nullptr, false));
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
        std::string prefix = std::string(key) + " ";
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
