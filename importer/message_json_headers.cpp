// message_json_headers: header fields of the JSON document — RFC 2047 encoded-words decoded as
// RFC 2047 means them (GMime, with the repairs below), address lists flattened to
// {name, address}, comments never taken as names (see message_json.cpp for the promises).
// Security: header values are hostile; every string returned is valid UTF-8.
#include <gmime/gmime.h>

#include <algorithm>
#include <cstring>

#include "message_json_detail.hpp"

namespace mx::importer {

using detail::gobject_ptr;
using detail::make_valid;

namespace {

bool has_8bit(std::string_view v) {
    for (unsigned char c : v)
        if (c >= 0x80) return true;
    return false;
}

// Encoded-words rewritten so GMime's RFC 2047 decoder reads them as RFC 2047 means them:
// - raw 8-bit bytes inside a Q word (=?iso-8859-1?Q?M\xfcller?=, Eudora does this) are bytes
//   of the word's charset: written as =XX they decode in it, instead of being guessed as a
//   separate charset first (GMime's way, which double-decodes them);
// - B words padded with '=' followed by more encoded-words: GMime joins adjacent words of one
//   charset before decoding (to rejoin characters split across words) and its base64 state
//   stops at the padding, losing the rest. Every B word of such a value becomes the Q word
//   of the same bytes (GLib's base64 decoder), which joins without loss.
// Anything else is copied unchanged.
std::string normalise_encoded_words(std::string_view v) {
    struct word {
        std::size_t start, end;  // [start, end) of "=?cs?X?text?="
        std::size_t text;        // offset of text
        char enc;                // 'Q' or 'B'
    };
    std::vector<word> words;
    for (std::size_t i = 0; (i = v.find("=?", i)) != std::string_view::npos;) {
        std::size_t q1 = v.find('?', i + 2);
        if (q1 == std::string_view::npos || q1 + 2 >= v.size() || v[q1 + 2] != '?') {
            i += 2;
            continue;
        }
        char enc = g_ascii_toupper(v[q1 + 1]);
        std::size_t end = v.find("?=", q1 + 3);
        if (end == std::string_view::npos) break;
        if (enc == 'Q' || enc == 'B') words.push_back({i, end + 2, q1 + 3, enc});
        i = end + 2;
    }
    bool padded_b = false;
    for (std::size_t k = 0; k + 1 < words.size(); ++k) {
        const word& w = words[k];
        if (w.enc == 'B' &&
            v.substr(w.text, w.end - 2 - w.text).find('=') != std::string_view::npos)
            padded_b = true;
    }
    static const char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(v.size() + 16);
    std::size_t from = 0;
    for (const word& w : words) {
        std::string_view text = v.substr(w.text, w.end - 2 - w.text);
        bool eight = w.enc == 'Q' && has_8bit(text);
        if (!eight && !(w.enc == 'B' && padded_b)) continue;
        out.append(v.substr(from, w.text - 3 - from));  // up to "?X?"
        out += "?Q?";
        if (eight) {
            for (unsigned char c : text) {
                if (c >= 0x80) {
                    out += '=';
                    out += hex[c >> 4];
                    out += hex[c & 15];
                } else {
                    out += static_cast<char>(c);
                }
            }
        } else {
            std::string b64(text);
            gsize n = 0;
            guchar* bytes = g_base64_decode(b64.c_str(), &n);
            for (gsize k = 0; k < n; ++k) {
                unsigned char c = bytes[k];
                if (g_ascii_isalnum(c)) {
                    out += static_cast<char>(c);
                } else {
                    out += '=';
                    out += hex[c >> 4];
                    out += hex[c & 15];
                }
            }
            g_free(bytes);
        }
        out += "?=";
        from = w.end;
    }
    out.append(v.substr(from));
    return out;
}

// A header field's value, unfolded and RFC 2047-decoded, valid UTF-8.
}  // namespace

std::string detail::header_text(GMimeHeader* h) {
    const char* raw = g_mime_header_get_raw_value(h);
    if (raw && std::strstr(raw, "=?")) {
        std::string fixed = normalise_encoded_words(raw);
        if (fixed != raw) {
            char* unfolded = g_mime_utils_header_unfold(fixed.c_str());
            char* dec = g_mime_utils_header_decode_text(nullptr, unfolded);
            std::string out = make_valid(dec ? dec : "");
            g_free(dec);
            g_free(unfolded);
            return out;
        }
    }
    const char* v = g_mime_header_get_value(h);
    return make_valid(v ? v : "");
}

namespace {

// RFC 5322 3.2.2: comments carry no meaning. Removed (outside quoted strings) before an
// address list is parsed, so "a@b (John)" has no display name, as the RFC and Python say,
// instead of GMime's legacy reading of the comment as the name.
std::string strip_comments(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    int depth = 0;
    bool quoted = false;
    for (std::size_t i = 0; i < v.size(); ++i) {
        char c = v[i];
        if (c == '\\' && i + 1 < v.size() && (quoted || depth > 0)) {
            if (depth == 0) {
                out += c;
                out += v[i + 1];
            }
            ++i;
            continue;
        }
        if (depth == 0 && c == '"') quoted = !quoted;
        if (!quoted) {
            if (c == '(') {
                if (depth++ == 0) out += ' ';
                continue;
            }
            if (c == ')' && depth > 0) {
                --depth;
                continue;
            }
        }
        if (depth == 0) out += c;
    }
    return out;
}

}  // namespace

// {name, address} of each mailbox in the first header field `name`, groups flattened.
nlohmann::json detail::addresses(GMimeObject* msg, const char* name) {
    nlohmann::json out = nlohmann::json::array();
    GMimeHeaderList* hl = g_mime_object_get_header_list(msg);
    GMimeHeader* h = hl ? g_mime_header_list_get_header(hl, name) : nullptr;
    const char* raw = h ? g_mime_header_get_raw_value(h) : nullptr;
    if (!raw) return out;
    char* unfolded = g_mime_utils_header_unfold(normalise_encoded_words(raw).c_str());
    std::string value = strip_comments(unfolded);
    g_free(unfolded);
    gobject_ptr<InternetAddressList> list(internet_address_list_parse(nullptr, value.c_str()));
    if (!list) return out;
    std::vector<InternetAddressList*> lists{list.get()};
    while (!lists.empty()) {
        InternetAddressList* l = lists.back();
        lists.pop_back();
        int n = internet_address_list_length(l);
        for (int i = 0; i < n; ++i) {
            InternetAddress* ia = internet_address_list_get_address(l, i);
            if (INTERNET_ADDRESS_IS_GROUP(ia)) {
                // groups cannot nest (RFC 5322 3.4); members of one are listed in its place
                InternetAddressList* m =
                    internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia));
                if (m && lists.size() < 2) {
                    int k = internet_address_list_length(m);
                    for (int j = 0; j < k; ++j) {
                        InternetAddress* mb = internet_address_list_get_address(m, j);
                        if (!INTERNET_ADDRESS_IS_MAILBOX(mb)) continue;
                        const char* nm = internet_address_get_name(mb);
                        const char* ad =
                            internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(mb));
                        out.push_back({{"name", make_valid(nm ? nm : "")},
                                       {"address", make_valid(ad ? ad : "")}});
                    }
                }
                continue;
            }
            if (!INTERNET_ADDRESS_IS_MAILBOX(ia)) continue;
            const char* nm = internet_address_get_name(ia);
            const char* ad = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
            out.push_back(
                {{"name", make_valid(nm ? nm : "")}, {"address", make_valid(ad ? ad : "")}});
        }
    }
    return out;
}

}  // namespace mx::importer
