// aggregator: turns parsed log events into the report's counters.
//
// Counting rules (kept compatible with pflogsumm where both tools count the same thing; see
// docs/log-report.md): `received` = smtpd "QID: client=" lines + pickup lines; `delivered` =
// delivery lines with status=sent (local "forwarded as" excluded, counted as `forwarded`);
// `deferred` = status=deferred lines (`deferred_messages` = distinct message lifecycles);
// `bounced` = status=bounced lines; `rejected` = reject and milter-reject lines at any stage
// (smtpd, postscreen, cleanup); `milter_rejected` = the milter-reject part of it.
//
// Promises: memory is bounded. The open-message table holds only messages not yet `removed`
// (and forgets a message idle for more than a week of log time); every per-key table (domains,
// addresses, clients, reasons) has a cap, beyond which the rarest keys are dropped (top lists
// stay right for heavy hitters, which is what they are for) or folded into "(other)".
//
// Security: keys come from hostile lines; they are length-capped before they are stored and
// only ever printed through the renderers, which escape them.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "connector_map.hpp"
#include "event_parser.hpp"
#include "line_parser.hpp"

namespace mx::logreport {

// Counts per key with a size cap; when full, the keys with the lowest counts are dropped
// (lossy counting: heavy hitters survive, the long tail is approximate).
class bounded_counter {
  public:
    explicit bounded_counter(std::size_t cap = 50000) : cap_(cap) {}
    void add(std::string_view key, std::uint64_t n = 1);
    std::vector<std::pair<std::string, std::uint64_t>> top(std::size_t n) const;
    std::size_t size() const { return map_.size(); }
    bool truncated() const { return dropped_ > 0; }

  private:
    void prune();
    std::size_t cap_;
    std::uint64_t dropped_ = 0;
    string_map<std::uint64_t> map_;
};

// Delivery delays rounded to two significant digits (Postfix's own precision below 100 s):
// exact percentiles for what Postfix prints, bounded memory for any volume.
class delay_stats {
  public:
    void add(double seconds);
    std::uint64_t count() const { return count_; }
    double percentile(double p) const;  // p in [0, 100]
    double max() const { return max_; }
    double mean() const { return count_ ? sum_ / static_cast<double>(count_) : 0; }

  private:
    std::map<std::int64_t, std::uint64_t> buckets_;  // key: value in 1/1000 s, 2 significant
    std::uint64_t count_ = 0;
    double sum_ = 0;
    double max_ = 0;
};

struct totals {
    std::uint64_t lines = 0;
    std::uint64_t unparsed = 0;
    std::uint64_t other_lines = 0;   // lines of other programs (not postfix*)
    std::uint64_t filtered_out = 0;  // outside --since/--until
    std::uint64_t connections = 0;
    std::uint64_t disconnections = 0;
    std::uint64_t received = 0;
    std::uint64_t received_smtpd = 0;
    std::uint64_t received_pickup = 0;
    std::uint64_t queued = 0;  // messages that reached qmgr (first "from=, size=" per lifecycle)
    std::uint64_t recipients = 0;  // sum of nrcpt over queued messages
    std::uint64_t bytes_received = 0;
    std::uint64_t delivered = 0;
    std::uint64_t forwarded = 0;
    std::uint64_t deferred = 0;
    std::uint64_t deferred_messages = 0;
    std::uint64_t bounced = 0;
    std::uint64_t expired = 0;
    std::uint64_t rejected = 0;
    std::uint64_t milter_rejected = 0;
    std::uint64_t reject_warnings = 0;
    std::uint64_t held = 0;
    std::uint64_t discarded = 0;
    std::uint64_t notifications = 0;  // non-delivery / delay / success notices generated
    std::uint64_t removed = 0;
    std::uint64_t warnings = 0;
    std::uint64_t delivered_to_connectors = 0;  // status=sent for a domain a connector owns
    // mx-importer outcome lines (same log, facility mail), per recipient
    std::uint64_t imported = 0;
    std::uint64_t import_failed = 0;  // moved to ImportFailed (non-delivery report sent)
    std::uint64_t import_deferred = 0;
    std::uint64_t import_duplicates = 0;
    std::uint64_t importer_lines = 0;
};

struct domain_stats {
    std::uint64_t delivered = 0;
    std::uint64_t deferred = 0;
    std::uint64_t bounced = 0;
    std::uint64_t rejected = 0;
    std::uint64_t milter_rejected = 0;
    std::uint64_t imported = 0;
    std::uint64_t import_failed = 0;
    std::array<std::uint64_t, reject_reason_count> rejects_by_reason{};
    const std::string* connector = nullptr;  // owner (points into the connector_map)
    bool selected = true;                    // passes the --domain/--connector filter
};

struct hour_stats {
    std::uint64_t received = 0;
    std::uint64_t delivered = 0;
    std::uint64_t deferred = 0;
    std::uint64_t bounced = 0;
    std::uint64_t rejected = 0;
};

struct report_filter {
    std::optional<std::int64_t> since;    // inclusive, epoch seconds
    std::optional<std::int64_t> until;    // exclusive
    std::vector<std::string> domains;     // lower-case; recipient domain must be one of these
    std::vector<std::string> connectors;  // recipient domain must belong to one of these
    bool by_recipient() const { return !domains.empty() || !connectors.empty(); }
};

class aggregator {
  public:
    aggregator(report_filter filter, const connector_map* connectors);

    // One raw line. `show_unparsed` (optional) receives lines that were not understood.
    void add_line(std::string_view raw, line_parser& parser);
    // Already parsed (the hot path of add_line; exposed for tests).
    void add_event(const log_line& line, const event& ev);
    // Closes the report (counts still-open messages that matched a recipient filter).
    void finish();

    std::function<void(std::string_view)> on_unparsed;

    const totals& total() const { return t_; }
    const std::array<std::uint64_t, reject_reason_count>& rejects_by_reason() const {
        return rejects_by_reason_;
    }
    const string_map<std::uint64_t>& rejects_by_stage() const { return rejects_by_stage_; }
    const string_map<std::uint64_t>& milter_rejects_by_stage() const {
        return milter_rejects_by_stage_;
    }
    const string_map<std::uint64_t>& rejects_by_code() const { return rejects_by_code_; }
    const bounded_counter& rejected_recipients() const { return rejected_recipients_; }
    const bounded_counter& rejecting_clients() const { return rejecting_clients_; }
    const bounded_counter& deferral_reasons() const { return deferral_reasons_; }
    const bounded_counter& bounce_reasons() const { return bounce_reasons_; }
    const bounded_counter& import_failure_reasons() const { return import_failure_reasons_; }
    const delay_stats& delays() const { return delays_; }
    const std::array<hour_stats, 24>& hours() const { return hours_; }
    const string_map<domain_stats>& domains() const { return domains_; }
    const domain_stats& other_domains() const { return other_domains_; }
    const connector_map* connectors() const { return connectors_; }
    std::int64_t first_time() const { return first_time_; }
    std::int64_t last_time() const { return last_time_; }
    std::size_t open_messages() const { return open_.size(); }
    const report_filter& filter() const { return filter_; }

    static constexpr std::size_t max_domains = 10000;
    static constexpr std::size_t max_key = 256;  // bytes of any stored key

  private:
    struct msg_state {
        std::int64_t first_seen = 0;
        std::int64_t last_seen = 0;
        bool received = false;  // client=/pickup seen in this lifecycle
        bool queued = false;    // first qmgr from= counted
        bool deferred = false;  // counted in deferred_messages
        bool matched = false;   // a recipient passed the domain/connector filter
        bool counted = false;   // received counted (filter mode counts at close)
        std::int8_t hour = -1;  // hour of the client=/pickup line
    };
    msg_state& open_message(std::string_view qid, std::int64_t now, bool fresh);
    void close_message(msg_state& m);
    // Recipient domain filter + per-domain stats slot (nullptr when filtered out).
    domain_stats* recipient_domain(std::string_view address, bool& pass);
    void sweep(std::int64_t now);
    // add_event's cases, one per kind of event with more than a counter to bump.
    void on_received(const event& ev, std::int64_t now, std::size_t hour);
    void on_queued(const event& ev, std::int64_t now);
    void on_import(const event& ev);
    void on_delivery(const event& ev, std::int64_t now, std::size_t hour);
    void on_reject(const event& ev, std::size_t hour);
    void count_reject(const event& ev, domain_stats* ds, std::size_t hour);

    report_filter filter_;
    const connector_map* connectors_;
    totals t_;
    std::array<std::uint64_t, reject_reason_count> rejects_by_reason_{};
    string_map<std::uint64_t> rejects_by_stage_;
    string_map<std::uint64_t> milter_rejects_by_stage_;
    string_map<std::uint64_t> rejects_by_code_;
    bounded_counter rejected_recipients_;
    bounded_counter rejecting_clients_;
    bounded_counter deferral_reasons_{5000};
    bounded_counter bounce_reasons_{5000};
    bounded_counter import_failure_reasons_{5000};
    delay_stats delays_;
    std::array<hour_stats, 24> hours_{};
    string_map<domain_stats> domains_;
    domain_stats other_domains_;
    string_map<msg_state> open_;
    std::int64_t first_time_ = 0;
    std::int64_t last_time_ = 0;
    std::uint64_t since_sweep_ = 0;
    log_line line_;
    event ev_;
};

// "connect to h[ip]:25: Connection refused" -> "connect: Connection refused";
// "host h[ip] said: 450 4.2.0 text (in reply to RCPT TO command)" -> "450 4.2.0 text (...)".
std::string normalize_reason(std::string_view text);

}  // namespace mx::logreport
