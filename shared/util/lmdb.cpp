#include "util/lmdb.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <thread>

namespace mx::lmdb {
namespace {

MDB_val to_val(std::string_view s) {
    return MDB_val{s.size(), const_cast<char*>(s.data())};
}

[[noreturn]] void fail(const char* function, int rc) {
    if (rc == MDB_MAP_FULL) throw map_full_error(function, rc);
    throw error(function, rc);
}

constexpr std::size_t max_map_size = std::size_t{1} << 40;  // 1 TiB of address space

// The map size another process set (mdb_env_set_mapsize with 0); see env::adopt_map_size.
void adopt_map_size_of(MDB_env* e) {
    if (int rc = mdb_env_set_mapsize(e, 0)) fail("mdb_env_set_mapsize", rc);
}

}  // namespace

error::error(const char* function, int rc)
    : std::runtime_error(fmt::format("{}: {}", function, mdb_strerror(rc)))
    , function_(function)
    , rc_(rc) {}

env env::open(const std::filesystem::path& dir, const options& opts) {
    MDB_env* h = nullptr;
    if (int rc = mdb_env_create(&h)) fail("mdb_env_create", rc);
    env e(h);
    if (int rc = mdb_env_set_maxdbs(h, opts.max_dbs)) fail("mdb_env_set_maxdbs", rc);
    if (int rc = mdb_env_set_maxreaders(h, opts.max_readers)) fail("mdb_env_set_maxreaders", rc);
    if (int rc = mdb_env_set_mapsize(h, opts.initial_map_size)) fail("mdb_env_set_mapsize", rc);
    if (!opts.read_only) {
        std::error_code ec;
        std::filesystem::create_directories(opts.single_file ? dir.parent_path() : dir, ec);
    }
    unsigned int flags = MDB_NOTLS;  // read txns may be used from libmilter's worker threads
    if (opts.read_only) flags |= MDB_RDONLY;
    if (opts.single_file) flags |= MDB_NOSUBDIR | MDB_NOLOCK;
    if (opts.no_sync) flags |= MDB_NOSYNC;
    if (int rc = mdb_env_open(h, dir.c_str(), flags, opts.mode)) fail("mdb_env_open", rc);
    // Another process may have grown the map beyond our initial size.
    e.adopt_map_size();
    // LMDB itself clears dead readers' slots only when the first process opens the
    // environment (the lock file is reset); with any other process alive they stay.
    if (!opts.read_only) e.reader_check();
    return e;
}

env& env::operator=(env&& other) noexcept {
    if (this != &other) {
        if (handle_) mdb_env_close(handle_);
        handle_ = other.handle_;
        other.handle_ = nullptr;
    }
    return *this;
}

env::~env() noexcept {
    if (handle_) mdb_env_close(handle_);
}

std::size_t env::map_size() const {
    MDB_envinfo info;
    if (int rc = mdb_env_info(handle_, &info)) fail("mdb_env_info", rc);
    return info.me_mapsize;
}

void env::grow() {
    std::size_t next = std::min(map_size() * 2, max_map_size);
    if (int rc = mdb_env_set_mapsize(handle_, next)) fail("mdb_env_set_mapsize", rc);
}

void env::adopt_map_size() {
    adopt_map_size_of(handle_);
}

void env::sync(bool force) {
    if (int rc = mdb_env_sync(handle_, force ? 1 : 0)) fail("mdb_env_sync", rc);
}

std::size_t env::reader_check() {
    int dead = 0;
    if (int rc = mdb_reader_check(handle_, &dead)) fail("mdb_reader_check", rc);
    return static_cast<std::size_t>(dead);
}

txn txn::begin(env& e, bool read_only) {
    return begin(e.handle(), read_only);
}

txn txn::begin(MDB_env* e, bool read_only) {
    MDB_txn* h = nullptr;
    int rc = mdb_txn_begin(e, nullptr, read_only ? MDB_RDONLY : 0, &h);
    if (rc == MDB_MAP_RESIZED) {  // another process grew the map: adopt its size
        adopt_map_size_of(e);
        rc = mdb_txn_begin(e, nullptr, read_only ? MDB_RDONLY : 0, &h);
    }
    if (rc) fail("mdb_txn_begin", rc);
    return txn(h);
}

std::size_t read_txn_pool::home() noexcept {
    return std::hash<std::thread::id>{}(std::this_thread::get_id()) % capacity;
}

read_txn_pool::~read_txn_pool() {
    for (auto& k : kept_)
        if (MDB_txn* h = k.exchange(nullptr)) mdb_txn_abort(h);
}

txn read_txn_pool::take() {
    std::size_t at = home();
    for (std::size_t i = 0; i < probes; ++i) {
        MDB_txn* h = kept_[(at + i) % capacity].exchange(nullptr, std::memory_order_acquire);
        if (!h) continue;
        if (mdb_txn_renew(h) == 0) return txn(h);
        mdb_txn_abort(h);  // e.g. MDB_MAP_RESIZED: a new one below adopts the new size
        break;
    }
    return txn::begin(env_, true);
}

void read_txn_pool::give_back(txn&& t) noexcept {
    MDB_txn* h = t.handle_;
    if (!h) return;
    t.handle_ = nullptr;
    mdb_txn_reset(h);
    std::size_t at = home();
    for (std::size_t i = 0; i < probes; ++i) {
        MDB_txn* expected = nullptr;
        if (kept_[(at + i) % capacity].compare_exchange_strong(expected, h,
                                                               std::memory_order_release))
            return;
    }
    mdb_txn_abort(h);
}

txn& txn::operator=(txn&& other) noexcept {
    if (this != &other) {
        abort();
        handle_ = other.handle_;
        other.handle_ = nullptr;
    }
    return *this;
}

txn::~txn() noexcept {
    abort();
}

void txn::commit() {
    MDB_txn* h = handle_;
    handle_ = nullptr;  // mdb_txn_commit frees the handle even when it fails
    if (int rc = mdb_txn_commit(h)) fail("mdb_txn_commit", rc);
}

void txn::abort() noexcept {
    if (handle_) {
        mdb_txn_abort(handle_);
        handle_ = nullptr;
    }
}

dbi dbi::open(txn& t, const char* name, unsigned int flags) {
    MDB_dbi h = 0;
    if (int rc = mdb_dbi_open(t.handle(), name, flags, &h)) fail("mdb_dbi_open", rc);
    return dbi(h);
}

std::optional<std::string> dbi::get(txn& t, std::string_view key) const {
    auto v = get_view(t, key);
    if (!v) return std::nullopt;
    return std::string(*v);
}

std::optional<std::string_view> dbi::get_view(txn& t, std::string_view key) const {
    MDB_val k = to_val(key);
    MDB_val v{};
    int rc = mdb_get(t.handle(), handle_, &k, &v);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    if (rc) fail("mdb_get", rc);
    return to_view(v);
}

bool dbi::contains(txn& t, std::string_view key) const {
    MDB_val k = to_val(key);
    MDB_val v{};
    int rc = mdb_get(t.handle(), handle_, &k, &v);
    if (rc == MDB_NOTFOUND) return false;
    if (rc) fail("mdb_get", rc);
    return true;
}

bool dbi::put(txn& t, std::string_view key, std::string_view value, unsigned int flags) const {
    MDB_val k = to_val(key);
    MDB_val v = to_val(value);
    int rc = mdb_put(t.handle(), handle_, &k, &v, flags);
    if (rc == MDB_KEYEXIST) return false;
    if (rc) fail("mdb_put", rc);
    return true;
}

bool dbi::del(txn& t, std::string_view key) const {
    MDB_val k = to_val(key);
    int rc = mdb_del(t.handle(), handle_, &k, nullptr);
    if (rc == MDB_NOTFOUND) return false;
    if (rc) fail("mdb_del", rc);
    return true;
}

std::size_t dbi::size(txn& t) const {
    MDB_stat st;
    if (int rc = mdb_stat(t.handle(), handle_, &st)) fail("mdb_stat", rc);
    return st.ms_entries;
}

void dbi::clear(txn& t) const {
    if (int rc = mdb_drop(t.handle(), handle_, 0)) fail("mdb_drop", rc);
}

cursor cursor::open(txn& t, const dbi& d) {
    MDB_cursor* h = nullptr;
    if (int rc = mdb_cursor_open(t.handle(), d.handle(), &h)) fail("mdb_cursor_open", rc);
    return cursor(h);
}

cursor& cursor::operator=(cursor&& other) noexcept {
    if (this != &other) {
        if (handle_) mdb_cursor_close(handle_);
        handle_ = other.handle_;
        other.handle_ = nullptr;
    }
    return *this;
}

cursor::~cursor() noexcept {
    if (handle_) mdb_cursor_close(handle_);
}

bool cursor::get(std::string_view& key, std::string_view& value, MDB_cursor_op op) {
    MDB_val k = to_val(key);
    MDB_val v{};
    int rc = mdb_cursor_get(handle_, &k, &v, op);
    if (rc == MDB_NOTFOUND) return false;
    if (rc) fail("mdb_cursor_get", rc);
    key = to_view(k);
    value = to_view(v);
    return true;
}

bool cursor::first(std::string_view& key, std::string_view& value) {
    return get(key, value, MDB_FIRST);
}
bool cursor::next(std::string_view& key, std::string_view& value) {
    return get(key, value, MDB_NEXT);
}
bool cursor::seek(std::string_view prefix, std::string_view& key, std::string_view& value) {
    key = prefix;
    return get(key, value, MDB_SET_RANGE);
}

}  // namespace mx::lmdb
