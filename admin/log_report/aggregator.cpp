// aggregator: see aggregator.hpp.
#include "aggregator.hpp"

#include <algorithm>
#include <cmath>

namespace mx::logreport {

namespace {

using sv = std::string_view;

inline sv cap_key(sv s) {
    return s.size() > aggregator::max_key ? s.substr(0, aggregator::max_key) : s;
}

// Lower-cased domain of an address into buf ("" for a bare local part such as "root").
sv domain_of(sv address, char* buf, std::size_t cap) {
    const std::size_t at = address.rfind('@');
    if (at == sv::npos) return {};
    sv d = address.substr(at + 1);
    while (!d.empty() && d.back() == '.') d.remove_suffix(1);
    if (d.size() > cap) d = d.substr(0, cap);
    for (std::size_t i = 0; i < d.size(); ++i) {
        const char c = d[i];
        buf[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    }
    return sv(buf, d.size());
}

// Address with the domain lower-cased (local parts can be case-sensitive), capped.
std::string address_key(sv address) {
    std::string s(cap_key(address));
    const std::size_t at = s.rfind('@');
    for (std::size_t i = at == std::string::npos ? s.size() : at; i < s.size(); ++i)
        if (s[i] >= 'A' && s[i] <= 'Z') s[i] = static_cast<char>(s[i] + 32);
    return s;
}

inline void bump(string_map<std::uint64_t>& m, sv key) {
    key = cap_key(key);
    if (auto it = m.find(key); it != m.end()) {
        ++it->second;
    } else if (m.size() < 1000) {  // stages and codes are few; hostile variety stops here
        m.emplace(std::string(key), 1);
    } else {
        ++m[std::string("(other)")];
    }
}

}  // namespace

void bounded_counter::add(std::string_view key, std::uint64_t n) {
    key = cap_key(key);
    if (auto it = map_.find(key); it != map_.end()) {
        it->second += n;
        return;
    }
    if (map_.size() >= cap_) prune();
    map_.emplace(std::string(key), n);
}

void bounded_counter::prune() {
    // Drop the lower half by count: amortised O(1) per insert, heavy hitters survive.
    std::vector<std::uint64_t> counts;
    counts.reserve(map_.size());
    for (const auto& [k, v] : map_) counts.push_back(v);
    auto mid = counts.begin() + static_cast<std::ptrdiff_t>(counts.size() / 2);
    std::nth_element(counts.begin(), mid, counts.end());
    const std::uint64_t threshold = *mid;
    for (auto it = map_.begin(); it != map_.end();) {
        if (it->second <= threshold && map_.size() > cap_ / 4) {
            dropped_ += it->second;
            it = map_.erase(it);
        } else {
            ++it;
        }
    }
}

std::vector<std::pair<std::string, std::uint64_t>> bounded_counter::top(std::size_t n) const {
    std::vector<std::pair<std::string, std::uint64_t>> v(map_.begin(), map_.end());
    const auto cmp = [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
    };
    if (v.size() > n) {
        std::partial_sort(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n), v.end(), cmp);
        v.resize(n);
    } else {
        std::sort(v.begin(), v.end(), cmp);
    }
    return v;
}

void delay_stats::add(double seconds) {
    if (!(seconds >= 0) || seconds > 1e9) return;  // also rejects NaN
    ++count_;
    sum_ += seconds;
    if (seconds > max_) max_ = seconds;
    // Two significant digits in milliseconds.
    std::int64_t ms = std::llround(seconds * 1000);
    std::int64_t scale = 1;
    while (ms >= 100) {
        ms = (ms + 5) / 10;
        scale *= 10;
    }
    ++buckets_[ms * scale];
}

double delay_stats::percentile(double p) const {
    if (count_ == 0) return 0;
    // Nearest-rank: the smallest value with at least p% of samples at or below it.
    std::uint64_t rank =
        static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
    if (rank == 0) rank = 1;
    std::uint64_t seen = 0;
    for (const auto& [k, n] : buckets_) {
        seen += n;
        if (seen >= rank) return static_cast<double>(k) / 1000.0;
    }
    return max_;
}

std::string normalize_reason(std::string_view text) {
    sv t = text;
    if (const std::size_t said = t.find(" said: "); said != sv::npos) t = t.substr(said + 7);
    constexpr sv suspended = "delivery temporarily suspended: ";
    if (t.substr(0, suspended.size()) == suspended) t.remove_prefix(suspended.size());
    std::string out;
    if (t.substr(0, 11) == "connect to ") {
        const std::size_t last = t.rfind(": ");
        out = "connect: ";
        out += last == sv::npos ? t : t.substr(last + 2);
    } else {
        out = t;
    }
    if (out.size() > 120) out.resize(120);
    return out;
}

aggregator::aggregator(report_filter filter, const connector_map* connectors)
    : filter_(std::move(filter))
    , connectors_(connectors && !connectors->empty() ? connectors : nullptr) {}

void aggregator::add_line(std::string_view raw, line_parser& parser) {
    ++t_.lines;
    if (!parser.parse(raw, line_)) {
        ++t_.unparsed;
        if (on_unparsed) on_unparsed(raw);
        return;
    }
    // Only Postfix's own lines are ours to understand ("postfix", "postfix-in", "postfix/..."):
    // other programs in a shared mail.log are not "unparsed", just not ours.
    const bool importer = line_.syslog_name == "mx-importer";
    if (!importer && line_.syslog_name.substr(0, 7) != "postfix") {
        ++t_.other_lines;
        return;
    }
    if ((filter_.since && line_.time < *filter_.since) ||
        (filter_.until && line_.time >= *filter_.until)) {
        ++t_.filtered_out;
        return;
    }
    if (importer) ++t_.importer_lines;
    if (!(importer ? parse_importer_event(line_, ev_) : parse_event(line_, ev_))) {
        ++t_.unparsed;
        if (on_unparsed) on_unparsed(raw);
        return;
    }
    add_event(line_, ev_);
}

aggregator::msg_state& aggregator::open_message(std::string_view qid, std::int64_t now,
                                                bool fresh) {
    auto it = open_.find(qid);
    if (it == open_.end()) {
        it = open_.emplace(std::string(qid), msg_state{}).first;
        it->second.first_seen = now;
    } else if (fresh && (it->second.received || it->second.queued)) {
        // A new client=/pickup for a queue ID still open: the ID was reused and the old
        // message's "removed" line is missing (log gap). Close the old one first.
        close_message(it->second);
        it->second = msg_state{};
        it->second.first_seen = now;
    }
    it->second.last_seen = now;
    return it->second;
}

void aggregator::close_message(msg_state& m) {
    if (filter_.by_recipient() && m.received && !m.counted && m.matched) {
        m.counted = true;
        ++t_.received;
        if (m.hour >= 0) ++hours_[static_cast<std::size_t>(m.hour)].received;
    }
}

void aggregator::sweep(std::int64_t now) {
    // A message idle for a week of log time lost its "removed" line (log cut or rotation gap);
    // forgetting it keeps the table bounded on endless input.
    constexpr std::int64_t max_idle = 7 * 86400;
    for (auto it = open_.begin(); it != open_.end();) {
        if (now - it->second.last_seen > max_idle) {
            close_message(it->second);
            it = open_.erase(it);
        } else {
            ++it;
        }
    }
}

domain_stats* aggregator::recipient_domain(std::string_view address, bool& pass) {
    char buf[max_key];
    const sv d = domain_of(address, buf, sizeof buf);
    auto it = domains_.find(d);
    domain_stats* ds;
    if (it != domains_.end()) {
        ds = &it->second;
    } else {
        domain_stats fresh;
        if (connectors_) fresh.connector = connectors_->lookup(d);
        if (filter_.by_recipient()) {
            const bool dom_ok = filter_.domains.empty() ||
                                std::find(filter_.domains.begin(), filter_.domains.end(), d) !=
                                    filter_.domains.end();
            const bool conn_ok =
                filter_.connectors.empty() ||
                (fresh.connector && std::find(filter_.connectors.begin(), filter_.connectors.end(),
                                              *fresh.connector) != filter_.connectors.end());
            fresh.selected = dom_ok && conn_ok;
        }
        if (domains_.size() < max_domains) {
            ds = &domains_.emplace(std::string(d), fresh).first->second;
        } else {
            // Past the cap (relay probes for random domains): fold into "(other)", but keep
            // the filter decision of this domain.
            other_domains_.connector = nullptr;
            pass = fresh.selected;
            return pass ? &other_domains_ : nullptr;
        }
    }
    pass = ds->selected;
    return pass ? ds : nullptr;
}

void aggregator::add_event(const log_line& line, const event& ev) {
    const std::int64_t now = line.time;
    if (first_time_ == 0 || now < first_time_) first_time_ = now;
    if (now > last_time_) last_time_ = now;
    const std::size_t hour =
        line.hour >= 0 && line.hour < 24 ? static_cast<std::size_t>(line.hour) : 0;
    if (++since_sweep_ >= (1u << 20)) {
        since_sweep_ = 0;
        sweep(now);
    }

    switch (ev.kind) {
        case event_kind::unparsed:
            ++t_.unparsed;
            return;
        case event_kind::info:
            return;
        case event_kind::warning:
            ++t_.warnings;
            return;
        case event_kind::connect:
            if (line.daemon == "smtpd") ++t_.connections;
            return;
        case event_kind::disconnect:
            if (line.daemon == "smtpd") ++t_.disconnections;
            return;
        case event_kind::client:
        case event_kind::pickup:
            return on_received(ev, now, hour);
        case event_kind::message_id:
            open_message(ev.queue_id, now, false);
            return;
        case event_kind::queued:
            return on_queued(ev, now);
        case event_kind::removed: {
            ++t_.removed;
            auto it = open_.find(ev.queue_id);
            if (it != open_.end()) {
                close_message(it->second);
                open_.erase(it);
            }
            return;
        }
        case event_kind::expired: {
            auto it = open_.find(ev.queue_id);
            if (filter_.by_recipient() && (it == open_.end() || !it->second.matched)) return;
            ++t_.expired;
            return;
        }
        case event_kind::import_result:
            return on_import(ev);
        case event_kind::notification:
            ++t_.notifications;
            return;
        case event_kind::delivery:
            return on_delivery(ev, now, hour);
        case event_kind::reject:
            return on_reject(ev, hour);
    }
}

void aggregator::on_received(const event& ev, std::int64_t now, std::size_t hour) {
    const bool by_rcpt = filter_.by_recipient();
    msg_state& m = open_message(ev.queue_id, now, true);
    if (m.received) return;  // a second client= line for the same lifecycle
    m.received = true;
    m.hour = static_cast<std::int8_t>(hour);
    if (ev.kind == event_kind::client)
        ++t_.received_smtpd;
    else
        ++t_.received_pickup;
    if (!by_rcpt) {
        m.counted = true;
        ++t_.received;
        ++hours_[hour].received;
    }
    return;
}

void aggregator::on_queued(const event& ev, std::int64_t now) {
    const bool by_rcpt = filter_.by_recipient();
    msg_state& m = open_message(ev.queue_id, now, false);
    if (m.queued) return;  // qmgr logs from= again on every queue run
    m.queued = true;
    if (by_rcpt) return;  // recipients are not known yet at this point
    ++t_.queued;
    if (ev.nrcpt > 0) t_.recipients += static_cast<std::uint64_t>(ev.nrcpt);
    if (ev.size > 0) t_.bytes_received += static_cast<std::uint64_t>(ev.size);
    return;
}

void aggregator::on_import(const event& ev) {
    bool pass = true;
    domain_stats* ds = recipient_domain(ev.to, pass);
    if (!pass) return;
    switch (ev.outcome) {
        case import_outcome::imported:
            ++t_.imported;
            if (ds) ++ds->imported;
            return;
        case import_outcome::failed:
            ++t_.import_failed;
            if (ds) ++ds->import_failed;
            import_failure_reasons_.add(ev.reply.empty() ? std::string_view("(none)") : ev.reply);
            return;
        case import_outcome::deferred:
            ++t_.import_deferred;
            return;
        case import_outcome::duplicate:
            ++t_.import_duplicates;
            return;
        case import_outcome::other:
            return;
    }
    return;
}

void aggregator::on_delivery(const event& ev, std::int64_t now, std::size_t hour) {
    const bool by_rcpt = filter_.by_recipient();
    bool pass = true;
    domain_stats* ds = recipient_domain(ev.to, pass);
    if (!pass) return;
    msg_state* m = nullptr;
    if (by_rcpt || ev.status == delivery_status::deferred) {
        m = &open_message(ev.queue_id, now, false);
        m->matched = true;
    }
    switch (ev.status) {
        case delivery_status::sent:
            if (ev.forwarded) {
                ++t_.forwarded;
                return;
            }
            ++t_.delivered;
            ++hours_[hour].delivered;
            if (ds) {
                ++ds->delivered;
                if (ds->connector) ++t_.delivered_to_connectors;
            }
            if (ev.delay >= 0) delays_.add(ev.delay);
            return;
        case delivery_status::deferred:
            ++t_.deferred;
            ++hours_[hour].deferred;
            if (ds) ++ds->deferred;
            if (m && !m->deferred) {
                m->deferred = true;
                ++t_.deferred_messages;
            }
            deferral_reasons_.add(normalize_reason(ev.status_text));
            return;
        case delivery_status::bounced:
            ++t_.bounced;
            ++hours_[hour].bounced;
            if (ds) ++ds->bounced;
            bounce_reasons_.add(normalize_reason(ev.status_text));
            return;
        case delivery_status::expired:
            ++t_.expired;
            return;
        case delivery_status::other:
            return;
    }
    return;
}

void aggregator::on_reject(const event& ev, std::size_t hour) {
    const bool by_rcpt = filter_.by_recipient();
    switch (ev.rkind) {
        case reject_kind::reject_warning:
            ++t_.reject_warnings;
            return;
        case reject_kind::hold:
        case reject_kind::milter_hold:
            ++t_.held;
            return;
        case reject_kind::discard:
        case reject_kind::milter_discard:
            ++t_.discarded;
            return;
        case reject_kind::reject:
        case reject_kind::milter_reject:
            break;
    }
    if (!ev.queue_id.empty() && ev.stage != "RCPT") {
        // A whole message rejected after it got a queue ID (DATA, END-OF-MESSAGE,
        // header/body checks): Postfix deletes the file without logging "removed".
        auto it = open_.find(ev.queue_id);
        if (it != open_.end()) {
            close_message(it->second);
            open_.erase(it);
        }
    }
    bool pass = true;
    domain_stats* ds = nullptr;
    if (!ev.to.empty()) {
        ds = recipient_domain(ev.to, pass);
    } else if (by_rcpt) {
        pass = false;  // CONNECT/HELO/MAIL-stage rejects name no recipient
    }
    if (!pass) return;
    count_reject(ev, ds, hour);
}

void aggregator::count_reject(const event& ev, domain_stats* ds, std::size_t hour) {
    const bool milter = ev.rkind == reject_kind::milter_reject;
    const reject_reason reason = classify_reject(ev);
    ++t_.rejected;
    ++hours_[hour].rejected;
    ++rejects_by_reason_[static_cast<std::size_t>(reason)];
    bump(rejects_by_stage_, ev.stage);
    if (milter) {
        ++t_.milter_rejected;
        bump(milter_rejects_by_stage_, ev.stage);
    }
    if (!ev.code.empty() || !ev.dsn.empty()) {
        char key[32];
        const sv code = ev.code.substr(0, 3), dsn = ev.dsn.substr(0, 12);
        std::size_t n = 0;
        for (char c : code) key[n++] = c;
        if (!code.empty() && !dsn.empty()) key[n++] = ' ';
        for (char c : dsn) key[n++] = c;
        bump(rejects_by_code_, sv(key, n));
    }
    if (ds) {
        ++ds->rejected;
        if (milter) ++ds->milter_rejected;
        ++ds->rejects_by_reason[static_cast<std::size_t>(reason)];
    }
    if (!ev.to.empty()) rejected_recipients_.add(address_key(ev.to));
    if (!ev.client_ip.empty() || !ev.client_host.empty()) {
        char key[max_key + 2];
        const sv host = cap_key(ev.client_host).substr(0, max_key / 2);
        const sv ip = ev.client_ip.substr(0, max_key / 2 - 2);
        std::size_t n = 0;
        for (char c : host) key[n++] = c;
        key[n++] = '[';
        for (char c : ip) key[n++] = c;
        key[n++] = ']';
        rejecting_clients_.add(sv(key, n));
    }
}

void aggregator::finish() {
    // Messages still in the queue at the end of the log: counted now (marked, so a later
    // finish() in --follow mode does not count them twice).
    for (auto& [qid, m] : open_) close_message(m);
}

}  // namespace mx::logreport
