#include "global/recipient_check.hpp"

#include <exception>

#include "global/cluster.hpp"

namespace mx {
namespace {

check_result make(decision d, const char* code, const char* dsn, std::string text,
                  std::string reason) {
    check_result r;
    r.verdict = d;
    r.code = code;
    r.dsn = dsn;
    r.text = std::move(text);
    r.reason = std::move(reason);
    return r;
}

std::string replace_all(std::string s, std::string_view what, std::string_view with) {
    for (std::size_t pos = s.find(what); pos != std::string::npos;
         pos = s.find(what, pos + with.size()))
        s.replace(pos, what.size(), with);
    return s;
}

// Reply text must be one line; anything from the envelope is already validated, this is the
// last line of defence against an administrator's template.
std::string one_line(std::string s) {
    for (char& c : s)
        if (c == '\r' || c == '\n' || c == '\0') c = ' ';
    if (s.size() > 900) s.resize(900);
    return s;
}

// What a recipient's domain decides before any mailbox is read: the connector serving it and
// whether that connector is active (nullopt: a domain naming a missing connector).
struct domain_state {
    std::optional<domain_match> match;
    std::optional<bool> active;
};

// Memoised per thread for one store snapshot (store_view::snapshot()): the same snapshot has
// the same domains and connectors, so the memo can never be stale; any commit starts a new
// snapshot. Most RCPTs of a session (and of a server) go to the same few domains, and the two
// lookups were ~12 % of a milter decision's instructions (callgrind). Write views (nullopt
// snapshot) always read.
domain_state domain_state_of(store_view& v, const std::string& domain) {
    struct memo {
        std::pair<std::uint64_t, std::uint64_t> snapshot{0, 0};
        std::string domain;
        domain_state state;
    };
    thread_local memo last;
    auto snap = v.snapshot();
    if (snap && snap->first != 0 && last.snapshot == *snap && last.domain == domain)
        return last.state;
    domain_state st;
    st.match = v.match_domain(domain);
    if (st.match) st.active = v.connector_active(st.match->connector);
    if (snap && domain.size() <= 256) {
        last.snapshot = *snap;
        last.domain = domain;
        last.state = st;
    }
    return st;
}

}  // namespace

std::string_view to_string(decision d) {
    switch (d) {
        case decision::accept:
            return "accept";
        case decision::reject:
            return "reject";
        case decision::tempfail:
            return "tempfail";
        case decision::not_ours:
            return "not-ours";
    }
    return "tempfail";
}

check_policy check_policy::from(const config& cfg) {
    check_policy p;
    p.reject_unknown_domains = cfg.milter.reject_unknown_domains;
    p.accept_postmaster = cfg.milter.accept_postmaster;
    p.hide_existence = cfg.milter.hide_existence;
    p.reject_text = cfg.milter.reject_text;
    p.subaddress_delimiter = cfg.subaddress_delimiter;
    if (auto c = cluster::cluster_of(cfg)) p.max_staleness = c->max_staleness.count();
    return p;
}

std::string check_result::reply() const {
    if (code.empty()) return {};
    return code + " " + dsn + " " + text;
}

std::optional<mailbox_match> resolve_mailbox(store_view& v, const address& a,
                                             std::string_view delim) {
    std::string key = a.str();
    if (auto c = v.mailbox_connector(key))
        return mailbox_match{std::move(*c), std::move(key), "exact"};
    if (auto base = strip_extension(a.local, delim)) {
        std::string k = *base + "@" + a.domain;
        if (auto c = v.mailbox_connector(k))
            return mailbox_match{std::move(*c), std::move(k), "subaddress"};
    }
    std::string ca = catch_all_key(a.domain);
    if (auto c = v.mailbox_connector(ca))
        return mailbox_match{std::move(*c), std::move(ca), "catch-all"};
    return std::nullopt;
}

check_result check_address(store_view& v, const check_policy& p, const address& a) {
    // Reply texts only: an accepted recipient (most RCPTs) builds none of them.
    auto bracketed = [&a] {
        std::string b;
        b.reserve(a.local.size() + a.domain.size() + 3);
        return b.append(1, '<').append(a.local).append(1, '@').append(a.domain).append(1, '>');
    };
    auto ds = domain_state_of(v, a.domain);
    const auto& dm = ds.match;
    if (!dm) {
        if (p.reject_unknown_domains) {
            auto r =
                make(decision::reject, "550", "5.1.2",
                     p.hide_existence
                         ? std::string("Recipient address rejected")
                         : bracketed() + ": Recipient address rejected: Domain not served here",
                     "domain " + a.domain + " is served by no connector");
            r.recipient = a;
            return r;
        }
        check_result r;
        r.verdict = decision::not_ours;
        r.reason = "domain " + a.domain + " is served by no connector; Postfix decides";
        r.recipient = a;
        return r;
    }
    const auto& active = ds.active;
    if (!active) {
        // A domain pointing at a vanished connector is a store inconsistency: temporary.
        auto r =
            make(decision::tempfail, "451", "4.3.0", bracketed() + ": Temporary lookup failure",
                 "domain " + dm->pattern + " names missing connector " + dm->connector);
        r.recipient = a;
        return r;
    }
    const std::string& conn_name = dm->connector;
    check_result r;
    r.recipient = a;
    r.connector = conn_name;
    if (!*active) {
        auto t = make(decision::tempfail, "450", "4.2.1",
                      bracketed() + ": Recipient address rejected: Mailbox temporarily unavailable",
                      "connector " + conn_name + " is inactive");
        t.recipient = a;
        t.connector = conn_name;
        return t;
    }
    auto mb = resolve_mailbox(v, a, p.subaddress_delimiter);
    if (mb && mb->connector == conn_name) {
        r.verdict = decision::accept;
        r.mailbox = std::move(mb->mailbox);
        r.matched_by = std::move(mb->matched_by);
        // One allocation (a chain of operator+ reallocated several times per RCPT).
        r.reason.reserve(32 + r.mailbox.size() + conn_name.size());
        r.reason.append("mailbox ").append(r.mailbox).append(" (").append(r.matched_by);
        r.reason.append(") on connector ").append(conn_name);
        return r;
    }
    if (p.accept_postmaster && a.local == "postmaster") {
        r.verdict = decision::accept;
        r.matched_by = "postmaster";
        r.reason = "postmaster@ of a served domain is always accepted (RFC 5321 4.5.1)";
        return r;
    }
    // 550 5.1.1, in r (which already holds the recipient and connector): the answer to every
    // RCPT of a dictionary attack, so each string is built once.
    r.verdict = decision::reject;
    r.code = "550";
    r.dsn = "5.1.1";
    r.text = p.hide_existence ? std::string("Recipient address rejected")
                              : one_line(replace_all(p.reject_text, "{address}", bracketed()));
    r.reason.reserve(40 + a.local.size() + a.domain.size() + conn_name.size());
    r.reason.append("no mailbox for ").append(a.local).append(1, '@').append(a.domain);
    r.reason.append(" on connector ").append(conn_name);
    return r;
}

import_decision decide_import(store_view& v, const check_policy& p, const address& a,
                              std::string_view connector) {
    using k = import_decision::kind;
    auto r = check_address(v, p, a);
    switch (r.verdict) {
        case decision::accept:
            if (r.connector != connector)
                return {k::no_mailbox,
                        {},
                        "<" + a.str() + "> belongs to connector " + r.connector + ", not " +
                            std::string(connector)};
            if (r.matched_by == "postmaster") return {k::postmaster, a.str(), r.reason};
            return {k::mailbox, r.mailbox, r.reason};
        case decision::tempfail:
            return {k::tempfail, {}, r.reason};
        case decision::reject:
        case decision::not_ours:
            break;
    }
    return {k::no_mailbox, {}, "no mailbox for <" + a.str() + "> (removed after SMTP time?)"};
}

check_result check_recipient(store& s, const check_policy& p, std::string_view arg,
                             bool brackets_required) {
    parse_options po;
    po.brackets_required = brackets_required;
    po.smtputf8 = p.smtputf8;
    auto parsed = parse_address(arg, po);
    if (auto* err = std::get_if<address_error>(&parsed)) {
        auto r = make(decision::reject, "501", "5.1.3", "Bad recipient address syntax",
                      "malformed address: " + err->reason);
        r.cause = check_cause::malformed;
        return r;
    }
    const auto& a = std::get<address>(parsed);
    try {
        auto v = s.read();
        return check_address(v, p, a);
    } catch (const std::exception& e) {
        auto r =
            make(decision::tempfail, "451", "4.3.0", "<" + a.str() + ">: Temporary lookup failure",
                 std::string("store error: ") + e.what());
        r.cause = check_cause::store_error;
        r.recipient = a;
        return r;
    }
}

}  // namespace mx
