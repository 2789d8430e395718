// decision: one RCPT decision as the milter makes it: store access (lazy open, re-map after
// growth), check_recipient(), the SMTP reply for libmilter, counters and the log line.
#include <sys/stat.h>

#include <spdlog/spdlog.h>

#include "global/logging.hpp"
#include "milter.hpp"

namespace mx::milter {

namespace {
std::unique_ptr<daemon_state> g_state;

// log_safe() for the decision line without a copy when nothing needs escaping or cutting
// (the usual case): the value itself, else log_safe()'s result kept in `spare`. Five copies
// per decision were a measurable part of its cost.
std::string_view log_view(std::string_view v, std::string& spare, std::size_t max_len = 256) {
    if (v.size() <= max_len && log_clean(v)) return v;
    spare = log_safe(v, max_len);
    return spare;
}

// The decision line ("<queue id>: client=... rcpt=... decision=... connector=... [reply=...]
// reason=..."), assembled by appends into a per-thread buffer and handed to spdlog as a
// finished message: fmt's runtime parse of the format string, the reply() string and the
// message's own buffer were ~6 % of a decision's user time (perf, 8 connections).
void log_decision(const check_result& r, std::string_view arg, std::string_view queue_id,
                  std::string_view client) {
    thread_local std::string line;
    std::string spare;
    line.clear();
    line.append(queue_id.empty() ? std::string_view("NOQUEUE") : queue_id);
    line.append(": client=").append(log_view(client, spare));
    line.append(" rcpt=").append(log_view(arg, spare));
    line.append(" decision=").append(to_string(r.verdict));
    line.append(" connector=")
        .append(r.connector.empty() ? std::string_view("-") : log_view(r.connector, spare));
    if (!r.code.empty()) {
        // r.reply(), without building it: the same 300-byte cap and escaping.
        if (r.code.size() + r.dsn.size() + r.text.size() + 2 <= 300 && log_clean(r.code) &&
            log_clean(r.dsn) && log_clean(r.text))
            line.append(" reply=").append(r.code).append(" ").append(r.dsn).append(" ").append(
                r.text);
        else
            line.append(" reply=").append(log_safe(r.reply(), 300));
    }
    line.append(" reason=").append(log_view(r.reason, spare));
    // Every value is capped above, so the buffer stays below ~2 KiB per thread.
    spdlog::default_logger_raw()->log(spdlog::level::info,
                                      spdlog::string_view_t(line.data(), line.size()));
}

}  // namespace

daemon_state& state() {
    return *g_state;
}

void set_state(std::unique_ptr<daemon_state> s) {
    g_state = std::move(s);
}

// ---- store_holder ---------------------------------------------------------------------

bool store_holder::ready() {
    if (open_.load(std::memory_order_acquire)) return true;
    return try_open();
}

bool store_holder::try_open() {
    std::lock_guard lk(open_mu_);
    if (open_.load(std::memory_order_acquire)) return true;
    auto now = std::chrono::steady_clock::now();
    // Cheap while the store does not exist: one stat() per RCPT at most, one open attempt per
    // retry_interval.
    struct stat sb;
    if (::stat((dir_ / "data.mdb").c_str(), &sb) != 0) return false;
    if (last_attempt_.time_since_epoch().count() != 0 && now - last_attempt_ < retry_interval)
        return false;
    last_attempt_ = now;
    try {
        store_ = store::open(dir_, true);
        open_.store(true, std::memory_order_release);
        spdlog::info("store {} opened read-only", dir_.string());
        return true;
    } catch (const std::exception& e) {
        spdlog::warn("store {} not usable yet: {}", dir_.string(), log_safe(e.what()));
        store_.reset();
        return false;
    }
}

void store_holder::remap() noexcept {
    try {
        store_->env().adopt_map_size();
    } catch (const std::exception& e) {
        spdlog::warn("re-mapping the store failed: {}", log_safe(e.what()));
    }
}

void store_holder::clear_stale_readers() noexcept {
    if (!open_.load(std::memory_order_acquire)) return;
    try {
        if (auto n = store_->env().reader_check(); n > 0)
            spdlog::info("store: cleared {} stale reader slot(s)", n);
    } catch (const std::exception& e) {
        spdlog::warn("store: reader check failed: {}", log_safe(e.what()));
    }
}

check_result store_holder::check(const check_policy& p, std::string_view arg) {
    try {
        if (!ready()) {
            auto r = check_recipient_syntax_only(p, arg);
            if (r) return *r;
            return internal_error_result(arg, "store " + dir_.string() + " does not exist yet");
        }
        {
            std::shared_lock lk(map_mu_);
            auto r = check_recipient(*store_, p, arg, true);
            if (r.cause != check_cause::store_error) return r;
        }
        // A failed read transaction may be MDB_MAP_RESIZED: re-map (no transaction of ours is
        // open under the exclusive lock) and decide once more.
        std::unique_lock lk(map_mu_);
        remap();
        return check_recipient(*store_, p, arg, true);
    } catch (const std::exception& e) {
        return internal_error_result(arg, std::string("unexpected: ") + e.what());
    } catch (...) {
        return internal_error_result(arg, "unexpected non-standard exception");
    }
}

// ---- replies ----------------------------------------------------------------------------

std::optional<check_result> check_recipient_syntax_only(const check_policy& p,
                                                        std::string_view arg) {
    parse_options po;
    po.brackets_required = true;
    po.smtputf8 = p.smtputf8;
    auto parsed = parse_address(arg, po);
    if (auto* err = std::get_if<address_error>(&parsed)) {
        check_result r;
        r.verdict = decision::reject;
        r.code = "501";
        r.dsn = "5.1.3";
        r.text = "Bad recipient address syntax";
        r.cause = check_cause::malformed;
        r.reason = "malformed address: " + err->reason;
        return r;
    }
    return std::nullopt;
}

check_result internal_error_result(std::string_view arg, std::string reason) {
    check_result r;
    r.verdict = decision::tempfail;
    r.cause = check_cause::internal_error;
    r.code = "451";
    r.dsn = "4.3.0";
    parse_options po;
    po.brackets_required = true;
    auto parsed = parse_address(arg, po);
    if (auto* a = std::get_if<address>(&parsed)) {
        r.recipient = *a;
        r.text = "<" + a->str() + ">: Temporary lookup failure";
    } else {
        r.text = "Temporary lookup failure";
    }
    r.reason = std::move(reason);
    return r;
}

check_result removed_domain_result(check_result r, std::string_view connector) {
    r.verdict = decision::tempfail;
    r.code = "451";
    r.dsn = "4.3.0";
    r.text = "<" + r.recipient->str() +
             ">: Recipient address rejected: domain is being reconfigured, try again later";
    r.reason = "domain " + r.recipient->domain + " was removed from connector " +
               std::string(connector) +
               " moments ago and Postfix still routes it here (its processes re-read the "
               "domain table within seconds to minutes)";
    return r;
}

std::string setreply_text(std::string_view text) {
    // The usual text (one line, no '%', short) needs no change: returned as it is.
    if (text.size() <= 975 && log_clean(text) && text.find('%') == std::string_view::npos)
        return std::string(text);
    std::string out;
    out.reserve(text.size() + 8);
    for (char c : text) {
        if (out.size() >= 975) break;  // smfi_setreply: at most 980 octets per line
        if (c == '\r' || c == '\n' || c == '\0' || c == '\t')
            out.push_back(' ');
        else if (c == '%')
            out += "%%";
        else
            out.push_back(c);
    }
    return out;
}

rcpt_reply to_reply(const check_result& r) {
    rcpt_reply out;
    switch (r.verdict) {
        case decision::accept:
        case decision::not_ours:
            out.act = action::accept;
            return out;
        case decision::reject:
            out.act = action::reject;
            break;
        case decision::tempfail:
            out.act = action::tempfail;
            break;
    }
    out.code = r.code;
    out.dsn = r.dsn;
    out.text = setreply_text(r.text);
    // Defence in depth: a reject must carry a 5xx and a tempfail a 4xx, or libmilter refuses
    // the reply; and a store problem must never turn into a 5xx.
    bool ok_code = out.code.size() == 3 && out.code[0] == (out.act == action::reject ? '5' : '4') &&
                   out.dsn.size() >= 5 && out.dsn[0] == out.code[0];
    if (!ok_code) {
        out.act = action::tempfail;
        out.code = "451";
        out.dsn = "4.3.0";
        out.text = "Temporary lookup failure";
    }
    return out;
}

void count(shm_state* shm, const check_result& r) noexcept {
    if (!shm) return;
    auto& l = shm->layout();
    auto bump = [](std::atomic<std::uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); };
    switch (r.verdict) {
        case decision::not_ours:
            bump(l.not_ours);
            return;
        case decision::accept:
            bump(shm->counters(r.connector).accepted);
            return;
        case decision::reject:
            if (r.code == "501")
                bump(l.rejected_syntax);
            else if (r.connector.empty())
                bump(l.not_ours);  // 550 5.1.2: unknown domain rejected by policy
            else
                bump(shm->counters(r.connector).rejected_unknown);
            return;
        case decision::tempfail:
            if (r.connector.empty())
                bump(l.tempfailed_error_unattributed);
            else if (r.code == "450")
                bump(shm->counters(r.connector).tempfailed_inactive);
            else
                bump(shm->counters(r.connector).tempfailed_error);
            return;
    }
}

std::uint64_t daemon_state::next_id() {
    static std::atomic<std::uint64_t> ids{0};
    return ids.fetch_add(1, std::memory_order_relaxed) + 1;
}

void daemon_state::set_policy(std::shared_ptr<const check_policy> p) {
    std::lock_guard lk(policy_mu_);
    policy_ = std::move(p);
    policy_version_.fetch_add(1, std::memory_order_release);
}

const check_policy& daemon_state::current_policy() {
    struct cached {
        std::uint64_t owner = 0, version = 0;
        std::shared_ptr<const check_policy> policy;
    };
    thread_local cached mine;
    auto v = policy_version_.load(std::memory_order_acquire);
    if (mine.owner != id_ || mine.version != v || !mine.policy) {
        std::lock_guard lk(policy_mu_);
        mine.policy = policy_;
        mine.owner = id_;
        mine.version = policy_version_.load(std::memory_order_relaxed);
    }
    return *mine.policy;
}

bool daemon_state::replica_stale(const check_policy& p) const noexcept {
    // mx-replica publishes its last contact with PostgreSQL (docs/cluster.md); never seen
    // (0) counts as stale too: the replica has not proven it follows.
    if (!shm) return true;
    auto contact = shm->layout().cluster_contact_ms.load(std::memory_order_relaxed);
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    return static_cast<std::int64_t>(contact) + p.max_staleness * 1000 < now;
}

check_result daemon_state::decide(std::string_view arg, bool smtputf8, std::string_view queue_id,
                                  std::string_view client) {
    check_result r;
    try {
        const check_policy* p = &current_policy();
        if (p->max_staleness > 0 && replica_stale(*p)) {
            r = internal_error_result(arg, "cluster replica older than max_staleness");
        } else if (p->smtputf8 == smtputf8) {
            r = store->check(*p, arg);
        } else {
            check_policy copy = *p;
            copy.smtputf8 = smtputf8;
            r = store->check(copy, arg);
        }
        // Mail we accept must find its drop folder in virtual(8)'s map, and a domain removed a
        // moment ago must be known as removed: bring the tables up to the store's generation
        // first (a no-op unless mxctl changed something since).
        if ((r.verdict == decision::accept || r.verdict == decision::not_ours) && tables &&
            tables->enabled() && shm && shm->generation() > tables->known_generation())
            tables->refresh(*store, false, false);
        if (r.verdict == decision::not_ours && tables && r.recipient)
            if (auto was = tables->recently_removed(r.recipient->domain))
                r = removed_domain_result(std::move(r), *was);
        count(shm ? &*shm : nullptr, r);
        if (spdlog::should_log(spdlog::level::info)) log_decision(r, arg, queue_id, client);
    } catch (...) {
        // Logging or counting failed (e.g. out of memory): still a safe answer.
        r = internal_error_result(arg, "unexpected error while deciding");
    }
    return r;
}

}  // namespace mx::milter
