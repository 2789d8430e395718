// line_parser: see line_parser.hpp. Hand-written scanners, no regex: this runs once per line
// of multi-gigabyte logs.
#include "line_parser.hpp"

#include <climits>
#include <cstring>

#include "event_scan.hpp"

namespace mx::logreport {

namespace {

using detail::is_digit;

// Reads exactly n digits at p[0..n) (caller checked the length).
inline bool digits(const char* p, int n, int& v) {
    int r = 0;
    for (int i = 0; i < n; ++i) {
        if (!is_digit(p[i])) return false;
        r = r * 10 + (p[i] - '0');
    }
    v = r;
    return true;
}

// "Jan".."Dec" -> 1..12, 0 if not a month. Switch on the first letter keeps it branch-light.
int month_of(const char* p) {
    const char a = p[0], b = p[1], c = p[2];
    switch (a) {
        case 'J':
            if (b == 'a' && c == 'n') return 1;
            if (b == 'u' && c == 'n') return 6;
            if (b == 'u' && c == 'l') return 7;
            return 0;
        case 'F':
            return (b == 'e' && c == 'b') ? 2 : 0;
        case 'M':
            if (b == 'a' && c == 'r') return 3;
            if (b == 'a' && c == 'y') return 5;
            return 0;
        case 'A':
            if (b == 'p' && c == 'r') return 4;
            if (b == 'u' && c == 'g') return 8;
            return 0;
        case 'S':
            return (b == 'e' && c == 'p') ? 9 : 0;
        case 'O':
            return (b == 'c' && c == 't') ? 10 : 0;
        case 'N':
            return (b == 'o' && c == 'v') ? 11 : 0;
        case 'D':
            return (b == 'e' && c == 'c') ? 12 : 0;
        default:
            return 0;
    }
}

bool valid_time(int mon, int d, int h, int mi, int s) {
    return mon >= 1 && mon <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59 && s <= 60;
}

// Optional ".ffffff" fraction; returns microseconds and advances i.
int fraction(std::string_view s, std::size_t& i) {
    if (i >= s.size() || s[i] != '.') return 0;
    ++i;
    int us = 0, n = 0;
    while (i < s.size() && is_digit(s[i])) {
        if (n < 6) us = us * 10 + (s[i] - '0');
        ++n;
        ++i;
    }
    for (; n < 6; ++n) us *= 10;
    return us;
}

}  // namespace

std::int64_t days_from_civil(int y, int m, int d) noexcept {
    // Howard Hinnant's algorithm: exact for the proleptic Gregorian calendar.
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, int& y, int& m, int& d) noexcept {
    z += 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
    m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
    y = static_cast<int>(static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2));
}

line_parser::line_parser(std::int64_t now) {
    struct tm tmv {};
    time_t t = static_cast<time_t>(now);
    localtime_r(&t, &tmv);
    now_year_ = tmv.tm_year + 1900;
    now_month_ = tmv.tm_mon + 1;
}

int line_parser::year_for_month(int month) {
    if (forced_year_ != 0) return forced_year_;
    if (year_ == 0) {
        // First line: the log is not from the future. A month after the current one means the
        // line was written last year (reading December's log in January).
        year_ = month > now_month_ ? now_year_ - 1 : now_year_;
    } else if (month < last_month_ && last_month_ - month >= 6) {
        // Stepping back half a year or more inside one stream is a New Year rollover, not
        // clock jitter (lines slightly out of order stay in the same year).
        ++year_;
    } else if (month > last_month_ && month - last_month_ >= 6) {
        // Lines going back across New Year (reading files newest first): step back too.
        --year_;
    }
    last_month_ = month;
    return year_;
}

std::int64_t line_parser::local_to_utc(int y, int mon, int d, int h, int mi, int s) {
    const std::int64_t days = days_from_civil(y, mon, d);
    const std::int64_t key = days * 24 + h;
    if (key != off_key_) {
        struct tm tmv {};
        tmv.tm_year = y - 1900;
        tmv.tm_mon = mon - 1;
        tmv.tm_mday = d;
        tmv.tm_hour = h;
        tmv.tm_min = 30;
        tmv.tm_isdst = -1;
        const time_t t = mktime(&tmv);
        const std::int64_t civil = days * 86400 + h * 3600 + 30 * 60;
        off_val_ = t == static_cast<time_t>(-1) ? 0 : civil - static_cast<std::int64_t>(t);
        off_key_ = key;
    }
    return days * 86400 + h * 3600 + mi * 60 + s - off_val_;
}

int line_parser::local_hour_of(std::int64_t utc) {
    const std::int64_t key = utc >= 0 ? utc / 3600 : (utc - 3599) / 3600;
    if (key != hour_key_) {
        struct tm tmv {};
        time_t t = static_cast<time_t>(key * 3600);
        localtime_r(&t, &tmv);
        // Offset of this hour; applying it to every second of the hour is exact for whole-hour
        // zones and good enough (one hour bucket) for the rest.
        hour_val_ = tmv.tm_hour;
        hour_key_ = key;
    }
    return hour_val_;
}

bool line_parser::parse(std::string_view line, log_line& out) {
    if (line.size() < 16) return false;
    const char c = line[0];
    if (c == '{') return parse_json(line, out);
    if (is_digit(c)) return parse_rfc3339(line, out);
    return parse_traditional(line, out);
}

// "Feb  8 21:28:47 host ..." / "Feb 08 21:28:47.123456 host ..."
bool line_parser::parse_traditional(std::string_view line, log_line& out) {
    const char* p = line.data();
    const int mon = month_of(p);
    if (mon == 0 || p[3] != ' ') return false;
    // Day: " 8" (syslog), "08" (maillog_file, journalctl) or "8" (some relays).
    std::size_t i = 4;
    if (p[i] == ' ') ++i;
    int d = 0;
    if (!is_digit(p[i])) return false;
    d = p[i++] - '0';
    if (is_digit(p[i])) d = d * 10 + (p[i++] - '0');
    if (p[i] != ' ' || line.size() < i + 10) return false;
    ++i;
    int h, mi, s;
    if (!digits(p + i, 2, h) || p[i + 2] != ':' || !digits(p + i + 3, 2, mi) || p[i + 5] != ':' ||
        !digits(p + i + 6, 2, s))
        return false;
    if (!valid_time(mon, d, h, mi, s)) return false;
    i += 8;
    out.usec = fraction(line, i);
    if (i >= line.size() || line[i] != ' ') return false;
    const int y = year_for_month(mon);
    out.time = local_to_utc(y, mon, d, h, mi, s);
    out.hour = static_cast<std::int8_t>(h);
    out.format = line_format::traditional;
    return parse_tag_and_message(line.substr(i + 1), out);
}

// "2024-02-08T21:28:47[.ffffff][Z|+hh:mm|+hhmm] host ..."
bool line_parser::parse_rfc3339(std::string_view line, log_line& out) {
    const char* p = line.data();
    if (line.size() < 20) return false;
    int y, mon, d, h, mi, s;
    if (!digits(p, 4, y) || p[4] != '-' || !digits(p + 5, 2, mon) || p[7] != '-' ||
        !digits(p + 8, 2, d) || (p[10] != 'T' && p[10] != ' ') || !digits(p + 11, 2, h) ||
        p[13] != ':' || !digits(p + 14, 2, mi) || p[16] != ':' || !digits(p + 17, 2, s))
        return false;
    if (!valid_time(mon, d, h, mi, s)) return false;
    std::size_t i = 19;
    out.usec = fraction(line, i);
    bool zoned = false;
    std::int64_t offset = 0;
    if (i < line.size() && line[i] == 'Z') {
        zoned = true;
        ++i;
    } else if (i < line.size() && (line[i] == '+' || line[i] == '-')) {
        const int sign = line[i] == '-' ? -1 : 1;
        int oh, om;
        if (i + 5 <= line.size() && digits(p + i + 1, 2, oh)) {
            std::size_t j = i + 3;
            if (j < line.size() && line[j] == ':') ++j;
            if (j + 2 <= line.size() && digits(p + j, 2, om) && oh <= 23 && om <= 59) {
                zoned = true;
                offset = sign * (oh * 3600 + om * 60);
                i = j + 2;
            }
        }
        if (!zoned) return false;
    }
    if (i >= line.size() || line[i] != ' ') return false;
    if (zoned) {
        out.time = days_from_civil(y, mon, d) * 86400 + h * 3600 + mi * 60 + s - offset;
    } else {
        out.time = local_to_utc(y, mon, d, h, mi, s);
    }
    out.hour = static_cast<std::int8_t>(h);
    out.format = line_format::rfc3339;
    return parse_tag_and_message(line.substr(i + 1), out);
}

// "host tag[pid]: message" (also "tag: message" without a pid).
bool line_parser::parse_tag_and_message(std::string_view rest, log_line& out) {
    const std::size_t sp = rest.find(' ');
    if (sp == std::string_view::npos || sp == 0) return false;
    out.host = rest.substr(0, sp);
    std::string_view t = rest.substr(sp + 1);
    std::size_t i = 0;
    const std::size_t n = t.size();
    while (i < n && t[i] != '[' && t[i] != ':' && t[i] != ' ') ++i;
    if (i == 0 || i >= n) return false;
    out.tag = t.substr(0, i);
    out.pid = -1;
    if (t[i] == '[') {
        std::size_t j = i + 1;
        std::int64_t pid = 0;
        while (j < n && is_digit(t[j])) {
            if (pid < INT32_MAX / 10) pid = pid * 10 + (t[j] - '0');
            ++j;
        }
        if (j >= n || t[j] != ']' || j == i + 1) return false;
        out.pid = static_cast<std::int32_t>(pid);
        i = j + 1;
    }
    if (i >= n || t[i] != ':') return false;
    ++i;
    if (i < n && t[i] == ' ') ++i;
    out.message = t.substr(i);
    const std::size_t first = out.tag.find('/');
    out.syslog_name = first == std::string_view::npos ? out.tag : out.tag.substr(0, first);
    const std::size_t last = out.tag.rfind('/');
    out.daemon = last == std::string_view::npos ? out.tag : out.tag.substr(last + 1);
    return true;
}

}  // namespace mx::logreport
