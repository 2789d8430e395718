#include "global/secrets.hpp"

#include <sys/stat.h>

namespace mx {

secret_store secret_store::open(const std::filesystem::path& dir, bool read_only) {
    if (!read_only) {
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        ::chmod(dir.c_str(), 0700);
    }
    secret_store s;
    lmdb::env::options opts;
    opts.read_only = read_only;
    opts.mode = 0600;
    opts.max_dbs = 2;
    opts.initial_map_size = std::size_t{8} << 20;
    s.env_ = lmdb::env::open(dir, opts);
    auto t = lmdb::txn::begin(s.env_, read_only);
    s.db_ = lmdb::dbi::open(t, "secrets", read_only ? 0 : MDB_CREATE);
    t.commit();
    return s;
}

std::optional<std::string> secret_store::get(std::string_view name) {
    auto t = lmdb::txn::begin(env_, true);
    return db_.get(t, name);
}

void secret_store::set(std::string_view name, std::string_view value) {
    for (int attempt = 0;; ++attempt) {
        try {
            auto t = lmdb::txn::begin(env_, false);
            db_.put(t, name, value);
            t.commit();
            return;
        } catch (const lmdb::map_full_error&) {
            if (attempt > 10) throw;
            env_.grow();
        }
    }
}

bool secret_store::remove(std::string_view name) {
    auto t = lmdb::txn::begin(env_, false);
    bool removed = db_.del(t, name);
    t.commit();
    return removed;
}

void secret_store::remove_prefix(std::string_view prefix) {
    std::vector<std::string> doomed;
    for (auto& n : names())
        if (n.rfind(prefix, 0) == 0) doomed.push_back(n);
    if (doomed.empty()) return;
    auto t = lmdb::txn::begin(env_, false);
    for (auto& n : doomed) db_.del(t, n);
    t.commit();
}

std::vector<std::string> secret_store::names() {
    std::vector<std::string> out;
    auto t = lmdb::txn::begin(env_, true);
    auto c = lmdb::cursor::open(t, db_);
    std::string_view k, v;
    for (bool ok = c.first(k, v); ok; ok = c.next(k, v)) out.emplace_back(k);
    return out;
}

}  // namespace mx
