#include "global/mail_compose.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <random>
#include <thread>

#include "global/mail_header.hpp"

namespace mx::mail {
namespace {

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

}  // namespace mx::mail
