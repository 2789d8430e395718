// event_scan: the bounded scanners the event parsers share (Postfix lines in event_parser.cpp,
// mx-importer lines in event_importer.cpp). No allocation, no regex: they run once per line.
#pragma once

#include <cstdint>
#include <string_view>

namespace mx::logreport::detail {

using sv = std::string_view;
constexpr auto npos = sv::npos;

inline bool starts(sv s, sv p) {
    return s.size() >= p.size() && s.compare(0, p.size(), p) == 0;
}
inline bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// Value of "<...>" at s[0] == '<': up to the '>' that is followed by ',', ' ' or the end.
// Returns the inner text and sets `next` past the '>'.
inline sv angle_value(sv s, std::size_t& next) {
    if (s.empty() || s[0] != '<') {
        next = 0;
        return {};
    }
    std::size_t i = 1;
    for (;;) {
        const std::size_t gt = s.find('>', i);
        if (gt == npos) {
            next = s.size();
            return s.substr(1);
        }
        if (gt + 1 == s.size() || s[gt + 1] == ',' || s[gt + 1] == ' ' || s[gt + 1] == ';' ||
            s[gt + 1] == ':') {
            next = gt + 1;
            return s.substr(1, gt - 1);
        }
        i = gt + 1;
    }
}

// Parses "key=<v>" or "key=v" terminated by `sep` (", " for qmgr/delivery, " " for envelopes).
inline std::int64_t to_int(sv s) {
    std::int64_t v = 0;
    std::size_t n = 0;
    for (const char c : s) {
        if (!is_digit(c) || ++n > 18) break;
        v = v * 10 + (c - '0');
    }
    return n == 0 ? -1 : v;
}

}  // namespace mx::logreport::detail
