#include "global/store.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>

#include "global/address.hpp"
#include "global/shm_state.hpp"

namespace mx {
namespace {

std::uint64_t parse_u64(std::string_view s) {
    std::uint64_t v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
}

std::string domain_of_key(std::string_view key) {
    auto at = key.rfind('@');
    return at == std::string_view::npos ? std::string() : std::string(key.substr(at + 1));
}

}  // namespace

// ---- store ----------------------------------------------------------------

store store::open(const std::filesystem::path& dir, bool read_only, bool no_sync,
                  std::size_t initial_map_size) {
    static std::atomic<std::uint64_t> serials{0};
    store s;
    s.serial_ = serials.fetch_add(1, std::memory_order_relaxed) + 1;
    s.dir_ = dir;
    lmdb::env::options opts;
    opts.read_only = read_only;
    opts.no_sync = no_sync;
    opts.initial_map_size = initial_map_size;
    opts.mode = 0660;  // the milter's account must write the reader lock table
    s.env_ = lmdb::env::open(dir, opts);
    s.readers_ = std::make_unique<lmdb::read_txn_pool>(s.env_);
    if (read_only) {
        auto t = lmdb::txn::begin(s.env_, true);
        s.meta_ = lmdb::dbi::open(t, "meta");
        s.connectors_ = lmdb::dbi::open(t, "connectors");
        s.domains_ = lmdb::dbi::open(t, "domains");
        s.mailboxes_ = lmdb::dbi::open(t, "mailboxes");
        t.commit();  // keeps the dbi handles open for the environment's lifetime
        return s;
    }
    auto t = lmdb::txn::begin(s.env_, false);
    s.meta_ = lmdb::dbi::open(t, "meta", MDB_CREATE);
    s.connectors_ = lmdb::dbi::open(t, "connectors", MDB_CREATE);
    s.domains_ = lmdb::dbi::open(t, "domains", MDB_CREATE);
    s.mailboxes_ = lmdb::dbi::open(t, "mailboxes", MDB_CREATE);
    auto version = s.meta_.get(t, "schema_version");
    if (!version) {
        s.meta_.put(t, "schema_version", std::to_string(store_schema_version));
        s.meta_.put(t, "generation", "0");
    } else if (parse_u64(*version) != store_schema_version) {
        throw rule_error("store " + dir.string() + " has schema version " + *version +
                         ", this build understands " + std::to_string(store_schema_version));
    }
    t.commit();
    return s;
}

store::~store() = default;

store_view::~store_view() {
    if (pool_) pool_->give_back(std::move(txn_));
}

std::optional<std::pair<std::uint64_t, std::uint64_t>> store_view::snapshot() const {
    if (!pool_ && !read_only_) return std::nullopt;
    return std::pair<std::uint64_t, std::uint64_t>{store_->serial_, mdb_txn_id(txn_.handle())};
}

store_view store::read() {
    if (readers_) return store_view(*this, readers_->take(), readers_.get());
    store_view v(*this, lmdb::txn::begin(env_, true));
    v.read_only_ = true;
    return v;
}

std::uint64_t store::write(const std::function<void(store_tx&)>& fn) {
    for (int attempt = 0;; ++attempt) {
        try {
            store_tx tx(*this, lmdb::txn::begin(env_, false));
            fn(tx);
            std::uint64_t gen = tx.generation() + 1;
            meta_.put(tx.txn_, "generation", std::to_string(gen));
            tx.txn_.commit();
            if (shm_) shm_->publish_generation(gen);
            return gen;
        } catch (const lmdb::map_full_error&) {
            if (attempt >= 20) throw;
            env_.grow();  // the aborted transaction is gone; retry the whole change
        }
    }
}

// ---- store_view ---------------------------------------------------------------

std::uint64_t store_view::generation() {
    auto g = store_->meta_.get(txn_, "generation");
    return g ? parse_u64(*g) : 0;
}

namespace {
// Parsing a connector's JSON was more than half of a milter RCPT decision (perf): every RCPT
// reads its connector. Parsed records are kept for the whole process, keyed by the exact
// bytes read in the caller's transaction, so a changed record is parsed again and a stale one
// is never used. Process-wide rather than per thread: libmilter runs each SMTP session on a
// new thread, so a per-thread cache parsed the record again for every session (~10% of the
// CPU of a session with 10 RCPTs).
class connector_cache {
  public:
    // fn(const connector&) runs under the cache's shared lock; it must only copy things out.
    template <typename Fn>
    auto with(std::string_view name, std::string_view raw, Fn&& fn) {
        {
            std::shared_lock lk(mu_);
            auto it = entries_.find(name);
            if (it != entries_.end() && it->second.raw == raw) return fn(it->second.parsed);
        }
        connector parsed = connector_from_json(nlohmann::json::parse(raw));  // may throw
        auto result = fn(parsed);
        std::unique_lock lk(mu_);
        // Bounded: with very many connectors some only lose the shortcut.
        if (entries_.size() >= 256) entries_.clear();
        auto& e = entries_[std::string(name)];
        e.raw = raw;
        e.parsed = std::move(parsed);
        return result;
    }

  private:
    struct entry {
        std::string raw;
        connector parsed;
    };
    std::shared_mutex mu_;
    std::map<std::string, entry, std::less<>> entries_;
};

connector_cache& parsed_connectors() {
    static connector_cache cache;
    return cache;
}
}  // namespace

std::optional<connector> store_view::find_connector(std::string_view name, bool with_domains) {
    auto v = store_->connectors_.get_view(txn_, name);
    if (!v) return std::nullopt;
    connector c = parsed_connectors().with(name, *v, [](const connector& p) { return p; });
    c.name = std::string(name);
    if (with_domains) {
        c.domains.clear();
        for (auto& [pattern, owner] : domains())
            if (owner == name) c.domains.push_back(pattern);
    }
    return c;
}

std::optional<bool> store_view::connector_active(std::string_view name) {
    // The RCPT path: no copy of the record or of the parsed connector (both were visible in
    // the milter's profile), only the one flag it needs.
    auto v = store_->connectors_.get_view(txn_, name);
    if (!v) return std::nullopt;
    return parsed_connectors().with(name, *v, [](const connector& p) { return p.active; });
}

std::vector<connector> store_view::connectors() {
    std::vector<connector> out;
    auto all_domains = domains();
    auto cur = lmdb::cursor::open(txn_, store_->connectors_);
    std::string_view k, v;
    for (bool ok = cur.first(k, v); ok; ok = cur.next(k, v)) {
        connector c = connector_from_json(nlohmann::json::parse(v));
        c.name = std::string(k);
        c.domains.clear();
        for (auto& [pattern, owner] : all_domains)
            if (owner == c.name) c.domains.push_back(pattern);
        out.push_back(std::move(c));
    }
    return out;
}

std::vector<std::pair<std::string, std::string>> store_view::domains() {
    std::vector<std::pair<std::string, std::string>> out;
    auto cur = lmdb::cursor::open(txn_, store_->domains_);
    std::string_view k, v;
    for (bool ok = cur.first(k, v); ok; ok = cur.next(k, v)) out.emplace_back(k, v);
    return out;
}

std::optional<std::string> store_view::domain_owner(std::string_view pattern) {
    return store_->domains_.get(txn_, pattern);
}

std::optional<domain_match> store_view::match_domain(std::string_view d) {
    if (d.empty()) return std::nullopt;
    if (auto o = store_->domains_.get_view(txn_, d))
        return domain_match{std::string(d), std::string(*o)};
    if (d.front() != '[') {
        std::string key;
        for (std::size_t dot = d.find('.'); dot != std::string_view::npos;
             dot = d.find('.', dot + 1)) {
            key.assign(d.substr(dot));  // ".parent.tld"
            if (auto o = store_->domains_.get(txn_, key)) return domain_match{key, *o};
        }
    }
    if (auto o = store_->domains_.get(txn_, ".")) return domain_match{".", *o};
    return std::nullopt;
}

std::optional<mailbox> store_view::find_mailbox(std::string_view key) {
    auto v = store_->mailboxes_.get(txn_, key);
    if (!v) return std::nullopt;
    return mailbox_from_json(std::string(key), nlohmann::json::parse(*v));
}

namespace {
// One SAX pass over a mailbox record for its top-level "connector" string: no document, no
// map, no copies of the other members (a full parse per RCPT was a measurable part of a
// milter decision). What a full parse would refuse (not JSON, not an object, a connector that
// is not a string) throws here too.
class connector_member final : public nlohmann::json_sax<nlohmann::json> {
  public:
    std::optional<std::string> value;
    bool object = false;

    bool null() override { return other(); }
    bool boolean(bool) override { return other(); }
    bool number_integer(number_integer_t) override { return other(); }
    bool number_unsigned(number_unsigned_t) override { return other(); }
    bool number_float(number_float_t, const string_t&) override { return other(); }
    bool binary(binary_t&) override { return other(); }
    bool string(string_t& s) override {
        if (wanted_) value = std::move(s);
        wanted_ = false;
        return true;
    }
    bool start_object(std::size_t) override {
        if (depth_ == 0) object = true;
        ++depth_;
        return other();
    }
    bool key(string_t& k) override {
        wanted_ = depth_ == 1 && k == "connector";
        return true;
    }
    bool end_object() override { return --depth_, true; }
    bool start_array(std::size_t) override {
        ++depth_;
        return other();
    }
    bool end_array() override { return --depth_, true; }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
        return false;
    }

  private:
    bool other() {
        if (wanted_) throw std::runtime_error("mailbox record: connector is not a string");
        return true;
    }
    int depth_ = 0;
    bool wanted_ = false;
};

// The connector named by a mailbox record's bytes. Records are few distinct byte strings
// ({"connector":"x","target":""} for every mailbox of x with the default target), so each
// thread keeps what the last few distinct ones parsed to, keyed by their exact bytes: a changed
// record is parsed again, a stale answer is impossible. The SAX pass was ~9 % of a milter
// decision's instructions (callgrind). Per thread: no lock; a libmilter session's thread parses
// each distinct record once.
std::string connector_of_record(std::string_view key, std::string_view raw) {
    struct memo {
        std::string raw, connector;
    };
    constexpr std::size_t slots = 8, max_raw = 512;
    thread_local std::array<memo, slots> memos;
    thread_local std::size_t next = 0;
    for (const auto& m : memos)
        if (!m.raw.empty() && m.raw == raw) return m.connector;
    connector_member m;
    if (!nlohmann::json::sax_parse(raw, &m) || !m.object)
        throw std::runtime_error("mailbox record of " + std::string(key) + " is not a JSON object");
    std::string connector = m.value ? std::move(*m.value) : std::string();
    if (raw.size() <= max_raw) {  // a record with a long target is not worth keeping
        auto& slot = memos[next++ % slots];
        slot.raw.assign(raw);
        slot.connector = connector;
    }
    return connector;
}
}  // namespace

std::optional<std::string> store_view::mailbox_connector(std::string_view key) {
    auto v = store_->mailboxes_.get_view(txn_, key);
    if (!v) return std::nullopt;
    return connector_of_record(key, *v);
}

bool store_view::has_mailbox(std::string_view key) {
    return store_->mailboxes_.contains(txn_, key);
}

void store_view::for_each_mailbox(const std::function<bool(const mailbox&)>& fn,
                                  std::string_view connector_filter) {
    auto cur = lmdb::cursor::open(txn_, store_->mailboxes_);
    std::string_view k, v;
    for (bool ok = cur.first(k, v); ok; ok = cur.next(k, v)) {
        mailbox m = mailbox_from_json(std::string(k), nlohmann::json::parse(v));
        if (!connector_filter.empty() && m.connector != connector_filter) continue;
        if (!fn(m)) break;
    }
}

std::size_t store_view::mailbox_count() {
    return store_->mailboxes_.size(txn_);
}

// ---- store_tx -------------------------------------------------------------

void store_tx::add_connector(const connector& c) {
    if (auto e = validate(c)) throw rule_error(*e);
    if (store_->connectors_.contains(txn_, c.name))
        throw rule_error("connector '" + c.name + "' already exists");
    connector stored = c;
    stored.domains.clear();
    put(store_table::connectors, c.name, to_json(stored).dump());
    connector_cache_.clear();
    for (const auto& d : c.domains) add_domain(c.name, d);
}

void store_tx::update_connector(const connector& c) {
    if (auto e = validate(c)) throw rule_error(*e);
    if (!store_->connectors_.contains(txn_, c.name))
        throw rule_error("no connector named '" + c.name + "' (see: mxctl connector list)");
    connector stored = c;
    stored.domains.clear();
    put(store_table::connectors, c.name, to_json(stored).dump());
}

void store_tx::remove_connector(std::string_view name, bool force) {
    if (!store_->connectors_.contains(txn_, name))
        throw rule_error("no connector named '" + std::string(name) +
                         "' (see: mxctl connector list)");
    std::vector<std::string> boxes;
    for_each_mailbox(
        [&](const mailbox& m) {
            boxes.push_back(m.address);
            return true;
        },
        name);
    if (!boxes.empty() && !force)
        throw rule_error("connector '" + std::string(name) + "' still has " +
                         std::to_string(boxes.size()) +
                         " mailbox(es); remove them first or use --force");
    for (const auto& b : boxes) del(store_table::mailboxes, b);
    for (auto& [pattern, owner] : domains())
        if (owner == name) del(store_table::domains, pattern);
    del(store_table::connectors, name);
    owner_cache_.clear();
    connector_cache_.clear();
}

void store_tx::add_domain(std::string_view conn, std::string_view pattern) {
    std::string why;
    auto p = normalize_domain_pattern(pattern, &why);
    if (!p) throw rule_error("invalid domain '" + std::string(pattern) + "': " + why);
    if (!store_->connectors_.contains(txn_, conn))
        throw rule_error("no connector named '" + std::string(conn) +
                         "' (see: mxctl connector list)");
    if (auto owner = store_->domains_.get(txn_, *p)) {
        if (*owner == conn)
            throw rule_error("domain '" + *p + "' is already on connector '" + *owner + "'");
        throw rule_error("domain '" + *p + "' already belongs to connector '" + *owner +
                         "' (a domain belongs to one connector)");
    }
    put(store_table::domains, *p, conn);
    owner_cache_.clear();
}

void store_tx::remove_domain(std::string_view conn, std::string_view pattern) {
    std::string why;
    auto p = normalize_domain_pattern(pattern, &why);
    if (!p) throw rule_error("invalid domain '" + std::string(pattern) + "': " + why);
    auto owner = store_->domains_.get(txn_, *p);
    if (!owner || *owner != conn)
        throw rule_error("connector '" + std::string(conn) + "' has no domain '" + *p + "'");
    del(store_table::domains, *p);
    owner_cache_.clear();
    // Refuse if this orphans mailboxes (their domain would leave the connector).
    std::string orphan;
    for_each_mailbox(
        [&](const mailbox& m) {
            auto mt = match_domain(domain_of_key(m.address));
            if (!mt || mt->connector != m.connector) {
                orphan = m.address;
                return false;
            }
            return true;
        },
        conn);
    if (!orphan.empty())
        throw rule_error("removing domain '" + *p + "' would leave mailbox " + orphan +
                         " without its connector; remove or move the mailboxes first");
}

void store_tx::check_mailbox_domain(const mailbox& m) {
    auto c = connector_cache_.find(m.connector);
    if (c == connector_cache_.end())
        c = connector_cache_.emplace(m.connector, store_->connectors_.contains(txn_, m.connector))
                .first;
    if (!c->second)
        throw rule_error("no connector named '" + m.connector + "' (see: mxctl connector list)");
    std::string domain = domain_of_key(m.address);
    if (domain.empty() || m.address.find('/') != std::string::npos)
        throw rule_error("invalid mailbox address '" + m.address + "'");
    auto o = owner_cache_.find(domain);
    if (o == owner_cache_.end()) {
        auto mt = match_domain(domain);
        o = owner_cache_
                .emplace(domain, mt ? std::optional<std::string>(mt->connector) : std::nullopt)
                .first;
    }
    if (!o->second)
        throw rule_error("domain '" + domain + "' of " + m.address +
                         " is not served by any connector (mxctl domain add " + m.connector + " " +
                         domain + ")");
    if (*o->second != m.connector)
        throw rule_error("domain '" + domain + "' of " + m.address + " belongs to connector '" +
                         *o->second + "', not '" + m.connector + "'");
    if (auto e = validate_target(m.target)) throw rule_error(m.address + ": " + *e);
}

namespace {
// The stored value: the record without its key. Plain records (the bulk of a million-mailbox
// import) skip the JSON DOM; connector names are validated, so they need no escaping.
std::string mailbox_value(const mailbox& m) {
    if (m.target.empty() && m.oauth.client_id.empty() && m.oauth.tenant.empty() &&
        valid_connector_name(m.connector))
        return "{\"connector\":\"" + m.connector + "\",\"target\":\"\"}";
    nlohmann::json j = to_json(m);
    j.erase("address");  // the key is the address
    return j.dump();
}
}  // namespace

void store_tx::add_mailbox(const mailbox& m) {
    check_mailbox_domain(m);
    if (!put(store_table::mailboxes, m.address, mailbox_value(m), MDB_NOOVERWRITE))
        throw rule_error("mailbox " + m.address + " already exists");
}

void store_tx::update_mailbox(const mailbox& m) {
    if (!store_->mailboxes_.contains(txn_, m.address))
        throw rule_error("no mailbox " + m.address + " (see: mxctl mailbox list)");
    check_mailbox_domain(m);
    put(store_table::mailboxes, m.address, mailbox_value(m));
}

bool store_tx::remove_mailbox(std::string_view key) {
    return del(store_table::mailboxes, key);
}

void store_tx::clear_all() {
    if (log_) {
        for (auto t : {store_table::connectors, store_table::domains, store_table::mailboxes}) {
            auto cur = lmdb::cursor::open(txn_, dbi_of(t));
            std::string_view k, v;
            for (bool ok = cur.first(k, v); ok; ok = cur.next(k, v))
                log_->push_back({t, std::string(k), std::nullopt});
        }
    }
    store_->connectors_.clear(txn_);
    store_->domains_.clear(txn_);
    store_->mailboxes_.clear(txn_);
    owner_cache_.clear();
    connector_cache_.clear();
}

// ---- cluster mode: recording and replaying changes ------------------------------------

std::string_view to_string(store_table t) {
    switch (t) {
        case store_table::connectors:
            return "connectors";
        case store_table::domains:
            return "domains";
        case store_table::mailboxes:
            return "mailboxes";
    }
    return "?";
}

std::optional<store_table> store_table_from(std::string_view name) {
    for (auto t : {store_table::connectors, store_table::domains, store_table::mailboxes})
        if (to_string(t) == name) return t;
    return std::nullopt;
}

const lmdb::dbi& store_tx::dbi_of(store_table t) const {
    switch (t) {
        case store_table::connectors:
            return store_->connectors_;
        case store_table::domains:
            return store_->domains_;
        case store_table::mailboxes:
            break;
    }
    return store_->mailboxes_;
}

bool store_tx::put(store_table t, std::string_view key, std::string_view value, unsigned flags) {
    bool done = dbi_of(t).put(txn_, key, value, flags);
    if (done && log_) log_->push_back({t, std::string(key), std::string(value)});
    return done;
}

bool store_tx::del(store_table t, std::string_view key) {
    bool done = dbi_of(t).del(txn_, key);
    if (done && log_) log_->push_back({t, std::string(key), std::nullopt});
    return done;
}

void store_tx::apply(const store_change& c, bool append) {
    if (c.value) {
        // MDB_APPEND refuses (MDB_KEYEXIST, put() false) a key not above the last one: then an
        // ordinary put, never a silently dropped record.
        if (!append || !dbi_of(c.table).put(txn_, c.key, *c.value, MDB_APPEND))
            dbi_of(c.table).put(txn_, c.key, *c.value);
    } else
        dbi_of(c.table).del(txn_, c.key);
    owner_cache_.clear();
    connector_cache_.clear();
}

std::optional<std::string> store_view::meta(std::string_view key) {
    return store_->meta_.get(txn_, key);
}

void store_tx::set_meta(std::string_view key, std::string_view value) {
    // The store's own keys (schema_version, generation) are not for callers.
    if (key.rfind("cluster_", 0) != 0)
        throw std::invalid_argument("store meta key '" + std::string(key) + "' is not cluster_*");
    store_->meta_.put(txn_, key, value);
}

}  // namespace mx
