#include "global/mail_header.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
#include <thread>

namespace mx::mail {
namespace {

bool is_wsp(char c) {
    return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (is_wsp(s.front()) || s.front() == '\r' || s.front() == '\n'))
        s.remove_prefix(1);
    while (!s.empty() && (is_wsp(s.back()) || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

bool valid_field_name(std::string_view n) {
    if (n.empty() || n.size() > 200) return false;
    return std::all_of(n.begin(), n.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u > 32 && u < 127 && c != ':';
    });
}

// Length of a valid UTF-8 sequence starting at s[i], 0 if invalid.
std::size_t utf8_len(std::string_view s, std::size_t i) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k)
        if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return 0;
    return n;
}

std::uint64_t random64() {
    static std::atomic<std::uint64_t> counter{0};
    thread_local std::mt19937_64 rng{[] {
        std::random_device rd;
        std::uint64_t seed = (std::uint64_t{rd()} << 32) ^ rd();
        seed ^= std::hash<std::thread::id>{}(std::this_thread::get_id());
        seed ^= static_cast<std::uint64_t>(::getpid()) << 17;
        seed ^=
            static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        return seed;
    }()};
    // The counter keeps two values from one thread distinct even if the generator repeated.
    return rng() ^ (counter.fetch_add(1, std::memory_order_relaxed) * 0x9E3779B97F4A7C15ULL);
}

const char* b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(std::string_view in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                     (static_cast<unsigned char>(in[i + 1]) << 8) |
                     static_cast<unsigned char>(in[i + 2]);
        out += b64[(v >> 18) & 63];
        out += b64[(v >> 12) & 63];
        out += b64[(v >> 6) & 63];
        out += b64[v & 63];
    }
    if (i < in.size()) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16;
        if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
        out += b64[(v >> 18) & 63];
        out += b64[(v >> 12) & 63];
        out += i + 1 < in.size() ? b64[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::string clean_host(std::string_view host) {
    std::string h;
    for (char c : host)
        if (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') h += c;
    return h.empty() ? std::string("localhost") : h;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

std::string to_lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool is_ascii(std::string_view s) {
    return std::all_of(s.begin(), s.end(),
                       [](char c) { return static_cast<unsigned char>(c) < 128; });
}

std::optional<std::string> header_block::get(std::string_view name) const {
    for (const auto& f : fields)
        if (iequals(f.name, name)) return f.value;
    return std::nullopt;
}

std::vector<std::string> header_block::get_all(std::string_view name) const {
    std::vector<std::string> out;
    for (const auto& f : fields)
        if (iequals(f.name, name)) out.push_back(f.value);
    return out;
}

std::string_view header_section(std::string_view m) {
    std::size_t pos = 0;
    while (pos < m.size()) {
        auto nl = m.find('\n', pos);
        std::size_t end = nl == std::string_view::npos ? m.size() : nl + 1;
        auto line = m.substr(pos, end - pos);
        if (line == "\n" || line == "\r\n") return m.substr(0, end);
        pos = end;
    }
    return m;
}

header_block parse_header_block(std::string_view m, std::size_t max_bytes) {
    header_block hb;
    std::size_t pos = 0;
    bool first = true;
    while (pos < m.size()) {
        if (pos >= max_bytes) {
            hb.truncated = true;
            break;
        }
        auto nl = m.find('\n', pos);
        std::size_t end = nl == std::string_view::npos ? m.size() : nl + 1;
        std::string_view line = m.substr(pos, end - pos);
        std::string_view content = line;
        while (!content.empty() && (content.back() == '\n' || content.back() == '\r'))
            content.remove_suffix(1);
        if (content.empty()) {
            pos = end;
            break;
        }
        if (is_wsp(content.front())) {
            if (!hb.fields.empty()) {
                auto& v = hb.fields.back().value;
                if (v.size() < max_bytes) {
                    v += ' ';
                    v += trim(content);
                }
            }
            pos = end;
            first = false;
            continue;
        }
        if (first && content.rfind("From ", 0) == 0) {  // mbox separator line
            pos = end;
            first = false;
            continue;
        }
        auto colon = content.find(':');
        std::string_view name =
            colon == std::string_view::npos ? std::string_view{} : trim(content.substr(0, colon));
        if (!valid_field_name(name)) {
            if (first) hb.well_formed = false;
            break;  // the body starts here (no empty line)
        }
        hb.fields.push_back({std::string(name), std::string(trim(content.substr(colon + 1)))});
        pos = end;
        first = false;
    }
    hb.section_bytes = pos;
    return hb;
}

std::vector<std::string> extract_addresses(std::string_view v) {
    std::vector<std::string> out;
    std::string element;  // text of the current element outside comments/quotes
    std::string angle;    // content of <...>
    bool have_angle = false;
    auto flush = [&] {
        std::string a = have_angle ? angle : element;
        // Strip an obsolete source route "@a,@b:x@y".
        if (have_angle && !a.empty() && a.front() == '@') {
            auto c = a.find(':');
            a = c == std::string::npos ? std::string() : a.substr(c + 1);
        }
        auto t = trim(a);
        std::string addr;
        for (char c : t)
            if (!is_wsp(c)) addr += c;
        if (addr.find('@') != std::string::npos && addr.front() != '@' && addr.back() != '@')
            out.push_back(addr);
        element.clear();
        angle.clear();
        have_angle = false;
    };
    std::size_t i = 0;
    int depth = 0;
    while (i < v.size()) {
        char c = v[i];
        if (depth > 0) {  // inside a comment
            if (c == '\\')
                ++i;
            else if (c == '(')
                ++depth;
            else if (c == ')')
                --depth;
            ++i;
            continue;
        }
        if (c == '(') {
            depth = 1;
            ++i;
            continue;
        }
        if (c == '"') {  // quoted string: part of a local part or a display name
            std::string q = "\"";
            ++i;
            while (i < v.size() && v[i] != '"') {
                if (v[i] == '\\' && i + 1 < v.size()) {
                    q += v[i];
                    ++i;
                }
                q += v[i];
                ++i;
            }
            q += '"';
            ++i;
            if (!have_angle) element += q;
            continue;
        }
        if (c == '<') {
            auto close = v.find('>', i + 1);
            std::string_view inner = v.substr(
                i + 1, close == std::string_view::npos ? std::string_view::npos : close - i - 1);
            angle = std::string(inner);
            have_angle = true;
            i = close == std::string_view::npos ? v.size() : close + 1;
            continue;
        }
        if (c == ':' && !have_angle) {  // group name ends; its members follow
            element.clear();
            ++i;
            continue;
        }
        if (c == ',' || c == ';') {
            flush();
            ++i;
            continue;
        }
        element += c;
        ++i;
    }
    flush();
    return out;
}

std::optional<std::string> first_address(std::string_view v) {
    auto a = extract_addresses(v);
    if (a.empty()) return std::nullopt;
    return a.front();
}

bool is_sendable_address(std::string_view a) {
    if (a.empty() || a.size() > 254) return false;
    auto at = a.rfind('@');
    if (at == std::string_view::npos || at == 0 || at + 1 == a.size() || at > 64) return false;
    for (char c : a) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 32 || u >= 127 || c == '<' || c == '>' || c == '(' || c == ')' || c == ',' ||
            c == ';' || c == '\\' || c == '"' || c == '[' || c == ']')
            return false;
    }
    auto domain = a.substr(at + 1);
    return domain.find('@') == std::string_view::npos && domain.front() != '.' &&
           domain.back() != '.' && domain.find("..") == std::string_view::npos;
}

std::string single_line(std::string_view v, std::size_t max_len) {
    std::string out;
    out.reserve(std::min(v.size(), max_len));
    bool space = false;
    for (std::size_t i = 0; i < v.size();) {
        auto u = static_cast<unsigned char>(v[i]);
        if (u == '\r' || u == '\n' || u == '\t' || u == ' ') {
            space = !out.empty();
            ++i;
            continue;
        }
        if (u < 32 || u == 127) {
            ++i;
            continue;
        }
        std::size_t n = utf8_len(v, i);
        std::string_view piece = n ? v.substr(i, n) : std::string_view("?");
        if (out.size() + (space ? 1 : 0) + piece.size() > max_len) break;
        if (space) out += ' ';
        space = false;
        out += piece;
        i += n ? n : 1;
    }
    return out;
}

std::string encode_words(std::string_view text) {
    if (is_ascii(text)) return std::string(text);
    std::string out;
    std::size_t i = 0;
    while (i < text.size()) {
        // <= 45 bytes per word: "=?UTF-8?B?" + 60 + "?=" = 72 columns.
        std::size_t end = i;
        while (end < text.size()) {
            std::size_t n = utf8_len(text, end);
            if (n == 0) n = 1;
            if (end + n - i > 45) break;
            end += n;
        }
        if (end == i) end = i + 1;
        if (!out.empty()) out += ' ';
        out += "=?UTF-8?B?" + base64(text.substr(i, end - i)) + "?=";
        i = end;
    }
    return out;
}

std::string header_line(std::string_view name, std::string_view value) {
    std::string out;
    std::string line = std::string(name) + ":";
    std::size_t i = 0;
    bool first_word = true;
    while (i < value.size()) {
        while (i < value.size() && value[i] == ' ') ++i;
        if (i >= value.size()) break;
        auto sp = value.find(' ', i);
        auto word = value.substr(i, sp == std::string_view::npos ? std::string_view::npos : sp - i);
        i = sp == std::string_view::npos ? value.size() : sp;
        if (!first_word && line.size() + 1 + word.size() > 78) {
            out += line + "\r\n";
            line = " ";
            line += word;
        } else {
            line += ' ';
            line += word;
        }
        first_word = false;
    }
    out += line + "\r\n";
    return out;
}

std::string rfc5322_date(std::int64_t t) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    return buf;
}

std::string iso8601(std::int64_t t) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string make_message_id(std::string_view host) {
    char buf[64];
    auto now = std::chrono::system_clock::now().time_since_epoch();
    std::snprintf(
        buf, sizeof buf, "%lld.%016llx",
        static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(now).count()),
        static_cast<unsigned long long>(random64()));
    return "<" + std::string(buf) + "@" + clean_host(host) + ">";
}

std::string make_boundary() {
    static const char* alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    std::string b = "=_mx_";
    for (int k = 0; k < 4; ++k) {
        auto r = random64();
        for (int j = 0; j < 8; ++j) {
            b += alnum[r % 62];
            r /= 62;
        }
    }
    return b;
}

std::string quoted_printable(std::string_view text) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        auto nl = text.find('\n', pos);
        std::string_view line =
            text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        std::string cur;
        for (std::size_t i = 0; i < line.size(); ++i) {
            auto u = static_cast<unsigned char>(line[i]);
            bool last = i + 1 == line.size();
            std::string piece;
            if ((u >= 33 && u <= 126 && u != '=') || ((u == ' ' || u == '\t') && !last))
                piece = std::string(1, static_cast<char>(u));
            else
                piece = {'=', hex[u >> 4], hex[u & 15]};
            if (cur.size() + piece.size() > 75) {
                out += cur + "=\r\n";
                cur.clear();
            }
            cur += piece;
        }
        out += cur;
        if (nl == std::string_view::npos) break;
        out += "\r\n";
        pos = nl + 1;
    }
    return out;
}

std::string to_crlf(std::string_view d) {
    std::string out;
    out.reserve(d.size() + d.size() / 40);
    for (std::size_t i = 0; i < d.size(); ++i) {
        char c = d[i];
        if (c == '\r') {
            out += "\r\n";
            if (i + 1 < d.size() && d[i + 1] == '\n') ++i;
        } else if (c == '\n') {
            out += "\r\n";
        } else {
            out += c;
        }
    }
    return out;
}

std::string remove_fields(std::string_view m, const std::vector<std::string>& names) {
    auto section = header_section(m);
    std::string out;
    bool dropping = false;
    std::size_t pos = 0;
    while (pos < section.size()) {
        auto nl = section.find('\n', pos);
        std::size_t end = nl == std::string_view::npos ? section.size() : nl + 1;
        auto line = section.substr(pos, end - pos);
        pos = end;
        if (!line.empty() && is_wsp(line.front())) {
            if (!dropping) out += line;
            continue;
        }
        auto colon = line.find(':');
        dropping = false;
        if (colon != std::string_view::npos) {
            auto name = trim(line.substr(0, colon));
            for (const auto& n : names)
                if (iequals(name, n)) dropping = true;
        }
        if (!dropping) out += line;
    }
    out += m.substr(section.size());
    return out;
}

}  // namespace mx::mail
