// lmdb: RAII wrappers around the LMDB C API, in the manner of lmdbxx.
//
// Promises:
// - Every handle (env, txn, cursor) is a move-only object whose destructor is noexcept and
//   releases the handle; a transaction that is not explicitly commit()ed is aborted.
// - Every failing LMDB call becomes an mx::lmdb::error carrying the C function's name and rc.
//   An expected miss (MDB_NOTFOUND on get) is a value: std::nullopt, never an exception.
// - Values returned by get() are std::string copies: nothing points into the map after the
//   transaction ends.
// - MDB_MAP_RESIZED (another process grew the map) is handled when a transaction begins.
// - A writable environment clears the reader slots of dead processes when it opens
//   (reader_check()); long-running processes call reader_check() now and then as well: a slot
//   left by a killed reader pins old pages (the file grows) until someone clears it.
#pragma once

#include <lmdb.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mx::lmdb {

class error : public std::runtime_error {
  public:
    error(const char* function, int rc);
    const char* function() const noexcept { return function_; }
    int code() const noexcept { return rc_; }

  private:
    const char* function_;
    int rc_;
};

// Thrown for MDB_MAP_FULL so writers can grow the map and retry.
class map_full_error : public error {
  public:
    using error::error;
};

class env {
  public:
    struct options {
        unsigned int max_dbs = 8;
        std::size_t initial_map_size = std::size_t{64} << 20;  // grows on demand
        unsigned int max_readers = 1024;
        unsigned int mode = 0640;
        bool read_only = false;
        bool no_sync = false;  // only for benchmarks/tests that measure something else
        // One data file at `dir` itself (MDB_NOSUBDIR) without LMDB's lock file (MDB_NOLOCK):
        // for files that one writer builds and then publishes by rename, which readers such as
        // Postfix's lmdb: tables open the same way.
        bool single_file = false;
    };

    env() = default;
    // Opens (and for writers creates) the environment directory `dir` (the file, with
    // single_file).
    static env open(const std::filesystem::path& dir, const options& opts);

    env(env&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }
    env& operator=(env&& other) noexcept;
    env(const env&) = delete;
    env& operator=(const env&) = delete;
    ~env() noexcept;

    MDB_env* handle() const noexcept { return handle_; }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    std::size_t map_size() const;
    // Doubles the map (up to a sane ceiling). Only valid with no transaction open in this process.
    void grow();
    // Adopts the map size another process set (after MDB_MAP_RESIZED).
    void adopt_map_size();
    void sync(bool force = true);
    // Clears the reader-table slots of processes that no longer exist (mdb_reader_check) and
    // returns how many it cleared. 0 for single_file environments (no lock file, no table).
    std::size_t reader_check();

  private:
    explicit env(MDB_env* h) : handle_(h) {}
    MDB_env* handle_ = nullptr;
};

class txn {
  public:
    static txn begin(env& e, bool read_only);

    txn(txn&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }
    txn& operator=(txn&& other) noexcept;
    txn(const txn&) = delete;
    txn& operator=(const txn&) = delete;
    ~txn() noexcept;

    void commit();
    void abort() noexcept;
    MDB_txn* handle() const noexcept { return handle_; }

  private:
    friend class read_txn_pool;
    static txn begin(MDB_env* e, bool read_only);
    explicit txn(MDB_txn* h) : handle_(h) {}
    MDB_txn* handle_ = nullptr;
};

// Read transactions kept for reuse (mdb_txn_reset, mdb_txn_renew). Under MDB_NOTLS every
// mdb_txn_begin takes LMDB's reader-table mutex (shared by every process of the environment)
// to find a free slot; a renewed transaction keeps its slot, so a hot read path (the milter's
// RCPT lookups on 8 to 64 libmilter threads) no longer queues on that mutex. A kept
// transaction holds a reader slot but no snapshot (it keeps no old pages alive). Lock-free
// and thread-safe; at most `capacity` are kept, the rest are aborted. The pool must go
// before its environment (it aborts what it keeps).
class read_txn_pool {
  public:
    // The environment's handle, not its wrapper: a store (and the env in it) may move.
    explicit read_txn_pool(env& e) noexcept : env_(e.handle()) {}
    read_txn_pool(const read_txn_pool&) = delete;
    read_txn_pool& operator=(const read_txn_pool&) = delete;
    ~read_txn_pool();

    // A read transaction on the current snapshot: a kept one renewed, else a new one.
    txn take();
    // Ends `t`, a read transaction from take(): reset and kept, or aborted when the pool is
    // full. An empty `t` (moved from) is ignored.
    void give_back(txn&& t) noexcept;

    static constexpr std::size_t capacity = 64;

  private:
    static constexpr std::size_t probes = 8;  // slots tried from a thread's own start
    static std::size_t home() noexcept;
    MDB_env* env_;
    std::array<std::atomic<MDB_txn*>, capacity> kept_{};
};

// A database handle is process-wide in LMDB and needs no closing; this is a typed wrapper.
class dbi {
  public:
    dbi() = default;
    static dbi open(txn& t, const char* name, unsigned int flags = 0);

    std::optional<std::string> get(txn& t, std::string_view key) const;
    // The value in place, without a copy: valid only until `t` ends or writes (LMDB's own
    // rule). For hot read paths that look at a record and keep nothing of it.
    std::optional<std::string_view> get_view(txn& t, std::string_view key) const;
    bool contains(txn& t, std::string_view key) const;
    // Returns false if `no_overwrite` and the key exists.
    bool put(txn& t, std::string_view key, std::string_view value, unsigned int flags = 0) const;
    // Returns false if the key did not exist.
    bool del(txn& t, std::string_view key) const;
    std::size_t size(txn& t) const;
    void clear(txn& t) const;
    MDB_dbi handle() const noexcept { return handle_; }

  private:
    explicit dbi(MDB_dbi h) : handle_(h) {}
    MDB_dbi handle_ = 0;
};

class cursor {
  public:
    static cursor open(txn& t, const dbi& d);

    cursor(cursor&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }
    cursor& operator=(cursor&& other) noexcept;
    cursor(const cursor&) = delete;
    cursor& operator=(const cursor&) = delete;
    ~cursor() noexcept;

    // Positions the cursor; returns false at the end / when nothing matches. The views are
    // valid only until the next cursor operation or the end of the transaction.
    bool first(std::string_view& key, std::string_view& value);
    bool next(std::string_view& key, std::string_view& value);
    bool seek(std::string_view prefix, std::string_view& key, std::string_view& value);

  private:
    bool get(std::string_view& key, std::string_view& value, MDB_cursor_op op);
    explicit cursor(MDB_cursor* h) : handle_(h) {}
    MDB_cursor* handle_ = nullptr;
};

inline std::string_view to_view(const MDB_val& v) {
    return {static_cast<const char*>(v.mv_data), v.mv_size};
}

}  // namespace mx::lmdb
