// line_parser: splits one mail-log line into timestamp, host, syslog tag, pid and message.
//
// Formats: traditional syslog ("Feb  8 21:28:47 host tag[pid]: msg"), Postfix maillog_file and
// journalctl -o short ("Feb 08 21:28:47[.ffffff] ..."), RFC 3339 / journalctl -o short-iso
// ("2024-02-08T21:28:47[.ffffff][Z|+01:00|+0100] ..."), and journalctl -o json (one object per
// line; __REALTIME_TIMESTAMP, SYSLOG_IDENTIFIER, SYSLOG_PID/_PID, _HOSTNAME, MESSAGE).
//
// Promises: parse() never allocates for text formats (the result views point into the input
// line; for JSON they point into buffers owned by the parser and stay valid until the next
// call). It accepts any byte sequence and returns false for what it does not understand.
// Year-less timestamps get a year inferred from the reference time ("the log is not from the
// future") and move to the next year when the month steps back (December -> January).
//
// Security: lines are hostile input (anyone can make Postfix log an address or a HELO name).
// Every access is bounds-checked on string_view; no recursion; JSON nesting is skipped
// iteratively; numbers are range-checked before arithmetic.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace mx::logreport {

enum class line_format : std::uint8_t { traditional, rfc3339, journal_json };

struct log_line {
    std::int64_t time = 0;  // seconds since the epoch (UTC)
    std::int32_t usec = 0;
    std::int8_t hour = -1;  // hour of day as written in the log (the writer's local time)
    line_format format = line_format::traditional;
    std::int32_t pid = -1;
    std::string_view host;
    std::string_view tag;          // "postfix/submission/smtpd"
    std::string_view syslog_name;  // first component: "postfix", "postfix-in"
    std::string_view daemon;       // last component: "smtpd"
    std::string_view message;      // text after "tag[pid]: "
};

class line_parser {
  public:
    // `now` anchors year inference for year-less formats (tests pass a fixed value).
    explicit line_parser(std::int64_t now = static_cast<std::int64_t>(std::time(nullptr)));

    // Forces the year of year-less timestamps (no inference, no rollover).
    void set_year(int year) { forced_year_ = year; }

    bool parse(std::string_view line, log_line& out);

  private:
    bool parse_traditional(std::string_view line, log_line& out);
    bool parse_rfc3339(std::string_view line, log_line& out);
    bool parse_json(std::string_view line, log_line& out);
    bool parse_tag_and_message(std::string_view rest, log_line& out);
    int year_for_month(int month);
    // Converts a local civil time (no zone written) to UTC, caching the zone offset per hour.
    std::int64_t local_to_utc(int y, int mon, int d, int h, int mi, int s);
    int local_hour_of(std::int64_t utc);

    int now_year_;
    int now_month_;
    int forced_year_ = 0;
    int year_ = 0;        // inferred year of the current stream, 0 = not yet known
    int last_month_ = 0;  // month of the previous year-less line
    // Zone offset caches (mktime/localtime are far too slow per line).
    std::int64_t off_key_ = INT64_MIN;
    std::int64_t off_val_ = 0;
    std::int64_t hour_key_ = INT64_MIN;
    int hour_val_ = 0;
    // Buffers for unescaped JSON string values.
    std::string json_message_;
    std::string json_tag_;
    std::string json_host_;
};

// Days since 1970-01-01 of a proleptic Gregorian date (month 1..12).
std::int64_t days_from_civil(int y, int m, int d) noexcept;
// Inverse of days_from_civil.
void civil_from_days(std::int64_t z, int& y, int& m, int& d) noexcept;

}  // namespace mx::logreport
