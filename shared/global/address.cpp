#include "global/address.hpp"

#include <idn2.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace mx {
namespace {

constexpr std::size_t max_local = 64;
constexpr std::size_t max_domain = 253;
constexpr std::size_t max_address = 254;

bool is_atext(unsigned char c) {
    if (c >= 0x80) return true;  // UTF-8 (RFC 6532), checked separately for SMTPUTF8
    if (std::isalnum(c)) return true;
    return std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr && c != 0;
}

bool is_dot_atom(std::string_view s) {
    if (s.empty() || s.front() == '.' || s.back() == '.') return false;
    char prev = 0;
    for (char ch : s) {
        if (ch == '.') {
            if (prev == '.') return false;
        } else if (!is_atext(static_cast<unsigned char>(ch))) {
            return false;
        }
        prev = ch;
    }
    return true;
}

void ascii_lower(std::string& s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
}

bool has_8bit(std::string_view s) {
    return std::any_of(s.begin(), s.end(),
                       [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

bool valid_ldh_label(std::string_view l) {
    if (l.empty() || l.size() > 63) return false;
    if (l.front() == '-' || l.back() == '-') return false;
    return std::all_of(l.begin(), l.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    });
}

// Parses a quoted-string local part starting at s[0] == '"'; returns the unescaped content
// and sets `end` to the index after the closing quote.
std::optional<std::string> parse_quoted(std::string_view s, std::size_t& end) {
    std::string out;
    for (std::size_t i = 1; i < s.size(); ++i) {
        char c = s[i];
        if (c == '\\') {
            if (++i >= s.size()) return std::nullopt;
            c = s[i];
            if (static_cast<unsigned char>(c) < 0x20 && c != '\t') return std::nullopt;
            out.push_back(c);
        } else if (c == '"') {
            end = i + 1;
            return out;
        } else {
            if (static_cast<unsigned char>(c) < 0x20 && c != '\t') return std::nullopt;
            out.push_back(c);
        }
    }
    return std::nullopt;
}

std::string requote(std::string_view content) {
    std::string q = "\"";
    for (char c : content) {
        if (c == '"' || c == '\\') q.push_back('\\');
        q.push_back(c);
    }
    q.push_back('"');
    return q;
}

}  // namespace

std::optional<std::string> normalize_domain(std::string_view input, std::string* why) {
    auto fail = [&](const char* r) -> std::optional<std::string> {
        if (why) *why = r;
        return std::nullopt;
    };
    std::string d(input);
    if (!d.empty() && d.back() == '.') d.pop_back();
    if (d.empty()) return fail("empty domain");
    if (d.size() > max_domain * 4) return fail("domain too long");
    if (d.front() == '[') {
        if (d.back() != ']' || d.size() < 3) return fail("malformed domain literal");
        for (char c : d)
            if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f ||
                c == '\\' || c == '/')
                return fail("malformed domain literal");
        ascii_lower(d);
        return d;
    }
    if (has_8bit(d) || d.find("xn--") != std::string::npos || d.find("XN--") != std::string::npos) {
        // IDNA2008 with UTS#46 mapping; A-labels are checked by converting them back.
        char* out = nullptr;
        int rc = idn2_lookup_u8(reinterpret_cast<const uint8_t*>(d.c_str()),
                                reinterpret_cast<uint8_t**>(&out),
                                IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
        if (rc != IDN2_OK) {
            if (why) *why = std::string("invalid internationalised domain: ") + idn2_strerror(rc);
            return std::nullopt;
        }
        d = out;
        idn2_free(out);
    }
    ascii_lower(d);
    if (d.size() > max_domain) return fail("domain longer than 253 octets");
    std::size_t start = 0;
    while (true) {
        std::size_t dot = d.find('.', start);
        std::string_view label(d.data() + start,
                               (dot == std::string::npos ? d.size() : dot) - start);
        if (!valid_ldh_label(label))
            return fail("invalid domain (letters, digits, '-' and '.' only)");
        if (dot == std::string::npos) break;
        start = dot + 1;
    }
    return d;
}

std::optional<std::string> normalize_domain_pattern(std::string_view pattern, std::string* why) {
    if (pattern == ".") return std::string(".");
    if (!pattern.empty() && pattern.front() == '.') {
        auto d = normalize_domain(pattern.substr(1), why);
        if (!d) return std::nullopt;
        if (d->front() == '[') {
            if (why) *why = "a domain literal has no subdomains";
            return std::nullopt;
        }
        return "." + *d;
    }
    return normalize_domain(pattern, why);
}

std::variant<address, address_error> parse_address(std::string_view in, const parse_options& opts) {
    auto fail = [](std::string r) -> std::variant<address, address_error> {
        return address_error{std::move(r)};
    };
    if (in.empty()) return fail("empty address");
    for (char c : in)
        if (c == '\0' || c == '\r' || c == '\n') return fail("control character in address");
    std::string_view s = in;
    bool bracketed = s.front() == '<';
    if (bracketed) {
        if (s.size() < 2 || s.back() != '>') return fail("unbalanced angle brackets");
        s = s.substr(1, s.size() - 2);
    } else if (opts.brackets_required) {
        return fail("address must be enclosed in <>");
    }
    if (s.empty()) return fail("empty address");
    // Source route (RFC 5321 4.1.2: accept and ignore): "@a,@b:user@d".
    if (s.front() == '@' && s.find(':') != std::string_view::npos && s.find(':') + 1 < s.size()) {
        s = s.substr(s.find(':') + 1);
    }
    if (s.size() > max_address) return fail("address longer than 254 octets");
    if (!opts.smtputf8 && has_8bit(s)) return fail("non-ASCII address without SMTPUTF8");
    for (char c : s)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            return fail("control character in address");

    address a;
    std::size_t at;
    if (s.front() == '"') {
        std::size_t end = 0;
        auto content = parse_quoted(s, end);
        if (!content) return fail("unterminated quoted local part");
        if (end >= s.size() || s[end] != '@') return fail("missing '@' after quoted local part");
        at = end;
        std::string lower = *content;
        if (is_dot_atom(lower)) {
            a.local = lower;
        } else {
            a.local = requote(lower);
        }
    } else {
        at = s.rfind('@');
        if (at == std::string_view::npos) return fail("missing '@domain'");
        std::string_view local = s.substr(0, at);
        if (local.empty()) return fail("empty local part");
        if (!is_dot_atom(local)) return fail("invalid local part");
        a.local = std::string(local);
    }
    ascii_lower(a.local);
    if (a.local.size() > max_local) return fail("local part longer than 64 octets");
    std::string why;
    auto d = normalize_domain(s.substr(at + 1), &why);
    if (!d) return fail(why);
    a.domain = std::move(*d);
    if (a.local.size() + 1 + a.domain.size() > max_address)
        return fail("address longer than 254 octets");
    return a;
}

std::optional<std::string> strip_extension(std::string_view local, std::string_view delimiter) {
    if (delimiter.empty() || local.empty() || local.front() == '"') return std::nullopt;
    std::size_t pos = local.find(delimiter);
    if (pos == std::string_view::npos || pos == 0) return std::nullopt;
    return std::string(local.substr(0, pos));
}

std::string domain_to_unicode(std::string_view ascii_domain) {
    std::string d(ascii_domain);
    if (d.find("xn--") == std::string::npos) return d;
    char* out = nullptr;
    if (idn2_to_unicode_8z8z(d.c_str(), &out, 0) != IDN2_OK) return d;
    std::string r(out);
    idn2_free(out);
    return r;
}

}  // namespace mx
