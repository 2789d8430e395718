// line_parser_json: journalctl -o json lines (see line_parser.hpp). A minimal scanner for
// flat objects: only the fields a report needs are decoded, the rest skipped; \u escapes and
// byte-array fields become UTF-8 / raw bytes.
#include <climits>
#include <cstring>

#include "event_scan.hpp"
#include "line_parser.hpp"

namespace mx::logreport {
namespace {

using detail::is_digit;

// Minimal JSON object scanner for journalctl -o json lines: flat object, string/number/array/
// null/object values. Only the fields we need are decoded; the rest is skipped.
struct json_scanner {
    std::string_view s;
    std::size_t i = 0;

    void ws() {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
    }
    // Raw extent of a string starting at s[i] == '"'; sets i past the closing quote.
    bool raw_string(std::string_view& raw, bool& escaped) {
        if (i >= s.size() || s[i] != '"') return false;
        const std::size_t start = ++i;
        escaped = false;
        while (i < s.size()) {
            const char c = s[i];
            if (c == '\\') {
                escaped = true;
                i += 2;
                continue;
            }
            if (c == '"') {
                raw = s.substr(start, i - start);
                ++i;
                return true;
            }
            ++i;
        }
        return false;
    }
    // Skips any value (nested arrays/objects counted, not recursed).
    bool skip_value() {
        ws();
        if (i >= s.size()) return false;
        if (s[i] == '"') {
            std::string_view r;
            bool e;
            return raw_string(r, e);
        }
        if (s[i] == '[' || s[i] == '{') {
            int depth = 0;
            while (i < s.size()) {
                const char c = s[i];
                if (c == '"') {
                    std::string_view r;
                    bool e;
                    if (!raw_string(r, e)) return false;
                    continue;
                }
                if (c == '[' || c == '{') ++depth;
                if (c == ']' || c == '}') {
                    if (--depth == 0) {
                        ++i;
                        return true;
                    }
                }
                ++i;
            }
            return false;
        }
        while (i < s.size() && s[i] != ',' && s[i] != '}') ++i;
        return true;
    }
};

int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

// Decodes JSON string escapes; invalid escapes are copied through (never fail on hostile data).
void unescape(std::string_view raw, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < raw.size(); ++i) {
        const char c = raw[i];
        if (c != '\\' || i + 1 >= raw.size()) {
            out.push_back(c);
            continue;
        }
        const char e = raw[++i];
        switch (e) {
            case 'n':
                out.push_back('\n');
                break;
            case 't':
                out.push_back('\t');
                break;
            case 'r':
                out.push_back('\r');
                break;
            case 'b':
                out.push_back('\b');
                break;
            case 'f':
                out.push_back('\f');
                break;
            case 'u': {
                unsigned cp = 0;
                bool ok = i + 4 < raw.size();
                for (int k = 1; ok && k <= 4; ++k) {
                    const int h = hexval(raw[i + k]);
                    if (h < 0) ok = false;
                    cp = cp * 16 + static_cast<unsigned>(h < 0 ? 0 : h);
                }
                if (!ok) {
                    out.push_back('?');
                    break;
                }
                i += 4;
                if (cp == 0) cp = '?';  // keep NULs out of the message
                put_utf8(out, cp);
                break;
            }
            default:
                out.push_back(e);
                break;  // \" \\ \/ and anything else verbatim
        }
    }
}

// journald writes non-UTF-8 messages as an array of byte values: [72,101,...].
bool byte_array(std::string_view raw, std::string& out) {
    out.clear();
    int v = -1;
    for (const char c : raw) {
        if (is_digit(c)) {
            v = (v < 0 ? 0 : v) * 10 + (c - '0');
            if (v > 255) return false;
        } else if (c == ',' || c == ']') {
            if (v >= 0) out.push_back(v == 0 ? '?' : static_cast<char>(v));
            v = -1;
        } else if (c != '[' && c != ' ') {
            return false;
        }
    }
    return true;
}

}  // namespace

bool line_parser::parse_json(std::string_view line, log_line& out) {
    json_scanner js{line, 1};
    std::int64_t realtime = -1;
    std::int32_t pid = -1, spid = -1;
    bool have_msg = false, have_tag = false;
    json_host_.clear();
    for (;;) {
        js.ws();
        if (js.i >= line.size()) return false;
        if (line[js.i] == '}') break;
        if (line[js.i] == ',') {
            ++js.i;
            continue;
        }
        std::string_view key;
        bool esc;
        if (!js.raw_string(key, esc)) return false;
        js.ws();
        if (js.i >= line.size() || line[js.i] != ':') return false;
        ++js.i;
        js.ws();
        if (js.i >= line.size()) return false;
        const bool is_str = line[js.i] == '"';
        const std::size_t vstart = js.i;
        std::string_view raw;
        if (is_str) {
            if (!js.raw_string(raw, esc)) return false;
        } else {
            if (!js.skip_value()) return false;
            raw = line.substr(vstart, js.i - vstart);
        }
        if (key == "MESSAGE") {
            if (is_str) {
                unescape(raw, json_message_);
                have_msg = true;
            } else if (!raw.empty() && raw[0] == '[') {
                have_msg = byte_array(raw, json_message_);
            }
        } else if (key == "SYSLOG_IDENTIFIER" && is_str) {
            unescape(raw, json_tag_);
            have_tag = true;
        } else if (key == "_HOSTNAME" && is_str) {
            unescape(raw, json_host_);
        } else if (key == "__REALTIME_TIMESTAMP" || key == "SYSLOG_PID" || key == "_PID") {
            std::int64_t v = 0;
            // At most 18 digits: checked before the loop, so v * 10 cannot overflow.
            bool ok = !raw.empty() && raw.size() <= 18;
            for (const char ch : ok ? raw : std::string_view{}) {
                if (!is_digit(ch)) {
                    ok = false;
                    break;
                }
                v = v * 10 + (ch - '0');
            }
            if (ok) {
                if (key[0] == '_' && key[1] == '_') {
                    realtime = v;
                } else if (v <= INT32_MAX) {
                    (key[0] == 'S' ? spid : pid) = static_cast<std::int32_t>(v);
                }
            }
        }
    }
    if (!have_msg || !have_tag || realtime < 0 || json_tag_.empty()) return false;
    // Journal MESSAGE values may end with a newline; a log line never does.
    while (!json_message_.empty() && (json_message_.back() == '\n' || json_message_.back() == '\r'))
        json_message_.pop_back();
    out.format = line_format::journal_json;
    out.time = realtime / 1000000;
    out.usec = static_cast<std::int32_t>(realtime % 1000000);
    out.hour = static_cast<std::int8_t>(local_hour_of(out.time));
    out.pid = spid >= 0 ? spid : pid;
    out.host = json_host_;
    out.tag = json_tag_;
    out.message = json_message_;
    const std::string_view tag = json_tag_;
    const std::size_t first = tag.find('/');
    out.syslog_name = first == std::string_view::npos ? tag : tag.substr(0, first);
    const std::size_t last = tag.rfind('/');
    out.daemon = last == std::string_view::npos ? tag : tag.substr(last + 1);
    return true;
}

}  // namespace mx::logreport
