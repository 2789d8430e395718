// message_json: the JSON document of a message — what a mail client would show of it
// (docs/targets.md "What the JSON contains"), for the webhook target and `mxctl failed show`.
// The MIME walk (GMime: RFC 2047 header decoding, RFC 2231 parameters, transfer decoding) only
// ever runs in the converter child of target_webhook_json.cpp (address-space and CPU limit,
// wall-clock timeout): in-process after fork in mx-importer, or as `mx-importer --message-json`
// exec'd by mxctl, which therefore links no MIME library.
//
// Promises (checked against Python's email package by tests/importer/fidelity):
// - the header/body boundary is where a reader puts it: a header block that ends in a line
//   that cannot be a header (no empty line) ends there and that line starts the body; a file
//   whose first line is not a header is all body (a leading mbox "From " line is skipped);
// - an invalid Content-Type (no "type/subtype") is text/plain; charset=us-ascii (RFC 2045 5.2);
//   a part without one is text/plain, or message/rfc822 inside multipart/digest (RFC 2046);
// - "text" / "html" are the parts RFC 2183-aware clients show as the message: the first
//   text/plain and the first text/html not marked Content-Disposition: attachment, found
//   through multipart/* (multipart/related: only its start part), never inside an attached
//   message/rfc822; inline text parts with a filename are body text;
// - text is UTF-8: the declared charset is converted (iconv names via GMime), bytes invalid in
//   it become U+FFFD; with no charset, us-ascii, or a charset iconv does not know, bytes that
//   are valid UTF-8 are taken as UTF-8, anything else is read as windows-1252 (the WHATWG
//   reading of "us-ascii"/unlabelled 8-bit text);
// - every other leaf part is an attachment, in document order; message/rfc822 is one
//   attachment (the embedded message's bytes), not descended into; filenames are RFC 2231 and
//   RFC 2047 decoded;
// - "from"/"to"/"cc": the first such header field as a list of {name, address}, groups
//   flattened, comments not taken as names; "subject" is the first Subject field; encoded-words
//   with raw 8-bit bytes or base64 padding mid-sequence decode as RFC 2047 means them;
// - message_json_main() gives mxctl the same document, from the same limited child.
// Security: all input is hostile. The walk is iterative (no recursion on hostile nesting); the
// structure repair pass is one linear scan with at most max_mime_multiparts open boundaries;
// every string that reaches JSON is valid UTF-8 (NUL becomes U+FFFD).
#include <fcntl.h>
#include <iconv.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <gmime/gmime.h>
#include <openssl/evp.h>

#include "message_json.hpp"
#include "message_parse.hpp"
#include "target_http.hpp"
#include "util/sanitizers.hpp"

namespace mx::importer {
namespace {

struct gobject_unref {
    void operator()(gpointer p) const {
        if (p) g_object_unref(p);
    }
};
template <class T>
using gobject_ptr = std::unique_ptr<T, gobject_unref>;

std::string base64(const unsigned char* p, std::size_t n) {
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, static_cast<int>(n));
    out.resize(static_cast<std::size_t>(len));
    return out;
}

std::string lower(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
}

bool ieq(const char* a, const char* b) {
    return a && b && g_ascii_strcasecmp(a, b) == 0;
}

std::string_view trimmed(std::string_view v) {
    while (!v.empty() && g_ascii_isspace(v.front())) v.remove_prefix(1);
    while (!v.empty() && g_ascii_isspace(v.back())) v.remove_suffix(1);
    return v;
}

bool valid_utf8(std::string_view s) {
    return g_utf8_validate(s.data(), static_cast<gssize>(s.size()), nullptr);
}

// Any bytes -> valid UTF-8 (invalid sequences become U+FFFD).
std::string make_valid(std::string_view s) {
    if (valid_utf8(s)) return std::string(s);
    char* v = g_utf8_make_valid(s.data(), static_cast<gssize>(s.size()));
    std::string out = v ? v : "";
    g_free(v);
    return out;
}

// iconv to UTF-8; a byte the charset cannot map becomes U+FFFD and conversion goes on
// (what readers do with a part that lies about a known charset). nullopt: unknown charset.
std::optional<std::string> convert(std::string_view in, const char* charset) {
    iconv_t cd = g_mime_iconv_open("UTF-8", charset);
    if (cd == reinterpret_cast<iconv_t>(-1)) return std::nullopt;
    std::string out;
    out.reserve(in.size() + in.size() / 4 + 16);
    char* src = const_cast<char*>(in.data());
    std::size_t left = in.size();
    char buf[4096];
    while (left > 0) {
        char* dst = buf;
        std::size_t room = sizeof buf;
        std::size_t r = ::iconv(cd, &src, &left, &dst, &room);
        out.append(buf, static_cast<std::size_t>(dst - buf));
        if (r != static_cast<std::size_t>(-1)) continue;
        if (errno == E2BIG) continue;
        // EILSEQ / EINVAL (a sequence cut at the end): one byte becomes U+FFFD.
        out += "\xEF\xBF\xBD";
        ++src;
        --left;
        ::iconv(cd, nullptr, nullptr, nullptr, nullptr);
    }
    char* dst = buf;
    std::size_t room = sizeof buf;
    ::iconv(cd, nullptr, nullptr, &dst, &room);  // flush shift state (ISO-2022-JP)
    out.append(buf, static_cast<std::size_t>(dst - buf));
    g_mime_iconv_close(cd);
    return make_valid(out);
}

// Decoded text bytes in the declared charset -> UTF-8 (the fallbacks are in the file comment).
std::string text_to_utf8(std::string_view bytes, const char* declared) {
    std::string cs = declared ? lower(std::string(declared)) : "";
    while (!cs.empty() && (cs.back() == ' ' || cs.back() == '\t')) cs.pop_back();
    while (!cs.empty() && (cs.front() == ' ' || cs.front() == '\t')) cs.erase(0, 1);
    bool unlabelled = cs.empty() || cs == "us-ascii" || cs == "ascii" || cs == "ansi_x3.4-1968";
    if (cs == "utf-8" || cs == "utf8") return make_valid(bytes);
    if (!unlabelled)
        if (auto s = convert(bytes, cs.c_str())) return *std::move(s);
    // No charset, us-ascii or one nobody knows: 8-bit bytes are the sender's guess.
    if (valid_utf8(bytes)) return std::string(bytes);
    if (auto s = convert(bytes, "windows-1252")) return *std::move(s);
    return make_valid(bytes);
}

// RFC 2045 5.2 / RFC 2046 5.1.5: the type a reader assumes for a part, lower case.
// Of several Content-Type fields GMime builds the part from the last one; so do we.
std::string effective_type(GMimeObject* obj, bool in_digest) {
    const char* raw = nullptr;
    if (GMimeHeaderList* hl = g_mime_object_get_header_list(obj)) {
        int n = g_mime_header_list_get_count(hl);
        for (int i = 0; i < n; ++i) {
            GMimeHeader* h = g_mime_header_list_get_header_at(hl, i);
            if (ieq(g_mime_header_get_name(h), "Content-Type")) raw = g_mime_header_get_value(h);
        }
    }
    if (!raw) return in_digest ? "message/rfc822" : "text/plain";
    std::string_view v = raw;
    v = v.substr(0, v.find(';'));
    while (!v.empty() && g_ascii_isspace(v.front())) v.remove_prefix(1);
    while (!v.empty() && g_ascii_isspace(v.back())) v.remove_suffix(1);
    auto slash = v.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 == v.size() ||
        v.find('/', slash + 1) != std::string_view::npos)
        return "text/plain";
    for (unsigned char c : v)
        if (c <= ' ' || c >= 127) return "text/plain";
    return lower(std::string(v));
}

bool is_attachment(GMimeObject* obj) {
    return ieq(g_mime_object_get_disposition(obj), "attachment");
}

// The bytes an application gets for a part: transfer-decoded content, or the embedded message.
std::string part_bytes(GMimeObject* obj) {
    gobject_ptr<GMimeStream> mem(g_mime_stream_mem_new());
    bool identity = false;
    if (GMIME_IS_PART(obj)) {
        GMimeDataWrapper* w = g_mime_part_get_content(GMIME_PART(obj));
        if (w) g_mime_data_wrapper_write_to_stream(w, mem.get());
        auto enc = g_mime_part_get_content_encoding(GMIME_PART(obj));
        identity = enc != GMIME_CONTENT_ENCODING_BASE64 &&
                   enc != GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE &&
                   enc != GMIME_CONTENT_ENCODING_UUENCODE;
    } else if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
        if (inner) g_mime_object_write_to_stream(GMIME_OBJECT(inner), nullptr, mem.get());
    }
    GByteArray* bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem.get()));
    std::string out =
        bytes ? std::string(reinterpret_cast<const char*>(bytes->data), bytes->len) : "";
    // RFC 2046 5.1.1: the line break before a boundary line belongs to the boundary. With
    // mixed line ends (CRLF content, LF boundary line) GMime leaves its CR in the content.
    if (identity && !out.empty() && out.back() == '\r') out.pop_back();
    return out;
}

struct node {
    GMimeObject* obj;
    bool in_digest;  // parent is multipart/digest: default type message/rfc822
};

std::vector<node> children(GMimeObject* obj) {
    std::vector<node> out;
    if (!GMIME_IS_MULTIPART(obj)) return out;
    GMimeMultipart* mp = GMIME_MULTIPART(obj);
    GMimeContentType* ct = g_mime_object_get_content_type(obj);
    bool digest = ct && ieq(g_mime_content_type_get_media_subtype(ct), "digest");
    int n = g_mime_multipart_get_count(mp);
    for (int i = 0; i < n; ++i)
        if (GMimeObject* c = g_mime_multipart_get_part(mp, i)) out.push_back({c, digest});
    return out;
}

// The part a client shows as the text/<want> body (RFC 2183: not an attachment; RFC 2387:
// multipart/related shows its start part), depth first in document order.
GMimeObject* find_body(GMimeObject* root, std::string_view want) {
    std::vector<node> todo{{root, false}};
    while (!todo.empty()) {
        node n = todo.back();
        todo.pop_back();
        if (is_attachment(n.obj)) continue;
        std::string type = effective_type(n.obj, n.in_digest);
        if (type.rfind("text/", 0) == 0) {
            if (type.substr(5) == want && GMIME_IS_PART(n.obj)) return n.obj;
            continue;
        }
        if (!GMIME_IS_MULTIPART(n.obj)) continue;
        auto kids = children(n.obj);
        if (type == "multipart/related" && !kids.empty()) {
            node pick = kids.front();
            const char* start = g_mime_object_get_content_type_parameter(n.obj, "start");
            if (start) {
                for (auto& k : kids) {
                    const char* id = g_mime_object_get_header(k.obj, "Content-ID");
                    if (id && trimmed(id) == trimmed(start)) {
                        pick = k;
                        break;
                    }
                }
            }
            todo.push_back(pick);
            continue;
        }
        for (auto it = kids.rbegin(); it != kids.rend(); ++it) todo.push_back(*it);
    }
    return nullptr;
}

std::string body_text(GMimeObject* part) {
    return text_to_utf8(part_bytes(part),
                        g_mime_object_get_content_type_parameter(part, "charset"));
}

std::string filename_of(GMimeObject* obj) {
    const char* f = g_mime_object_get_content_disposition_parameter(obj, "filename");
    if (!f) f = g_mime_object_get_content_type_parameter(obj, "name");
    return f ? make_valid(f) : "";
}

nlohmann::json attachment(GMimeObject* obj, bool in_digest, std::uint64_t inline_max) {
    nlohmann::json a;
    a["content_type"] = effective_type(obj, in_digest);
    a["filename"] = filename_of(obj);
    const char* disp = g_mime_object_get_disposition(obj);
    a["disposition"] = disp ? lower(make_valid(disp)) : "";
    const char* cid = g_mime_object_get_content_id(obj);
    a["content_id"] = cid ? make_valid(cid) : "";
    std::string bytes = part_bytes(obj);
    a["size"] = bytes.size();
    if (inline_max > 0 && bytes.size() <= inline_max)
        a["content_base64"] =
            base64(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
    return a;
}

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
std::string header_text(GMimeHeader* h) {
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

// {name, address} of each mailbox in the first header field `name`, groups flattened.
nlohmann::json addresses(GMimeObject* msg, const char* name) {
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

// The boundary parameter of a Content-Type value (GMime's parameter parser: quotes, RFC 2231).
std::string boundary_of(const std::string& content_type) {
    gobject_ptr<GMimeContentType> ct(g_mime_content_type_parse(nullptr, content_type.c_str()));
    const char* b = ct ? g_mime_content_type_get_parameter(ct.get(), "boundary") : nullptr;
    return b ? b : "";
}

// The bytes GMime parses: the original, or a copy in which the structure a reader assumes is
// made explicit. Two repairs, each where Python's email package, mutt and Thunderbird agree
// and GMime differs:
// - RFC 5322/2045 end a header block (the message's, a body part's, an embedded message's)
//   with an empty line; broken senders leave it out. Readers start the body at the first line
//   that cannot be a header field; GMime skips such a line, losing text. Every header block
//   is scanned with the header rule of mail::parse_header_block and an empty line is inserted
//   where a block ends without one.
// - A multipart cut off before its close delimiter: readers end its last part at the end of
//   the file, the final line break being the delimiter's (RFC 2046 5.1.1); GMime keeps it in
//   the content. The missing close delimiters are appended.
// - Two delimiter lines in a row delimit no part for readers; GMime makes an empty text/plain
//   part of them. The first of the two is dropped.
// Bounded: at most max_mime_multiparts open boundaries are tracked; one pass over the lines.
std::string_view with_header_boundaries(std::string_view data, std::string& storage) {
    std::string_view d = data;
    if (d.substr(0, 5) == "From ") {  // mbox separator, not a header and not content
        auto eol = d.find('\n');
        d.remove_prefix(eol == std::string_view::npos ? d.size() : eol + 1);
    }
    const parse_limits limits;
    const bool crlf = d.find("\r\n") != std::string_view::npos;
    struct edit {
        std::size_t at, erase;  // insert an empty line at `at` (erase 0), or erase bytes there
    };
    std::vector<edit> edits;        // in increasing offset order
    std::vector<std::string> open;  // boundaries of the multiparts we are in, innermost last
    // Scans the header block at `at` (and an embedded message's right after it); returns where
    // the body starts.
    auto header_block_at = [&](std::size_t at) -> std::size_t {
        for (int embedded = 0; embedded < 8; ++embedded) {
            mail::header_block h = mail::parse_header_block(d.substr(at), limits);
            std::string type;
            for (const auto& f : h.fields)
                if (g_ascii_strcasecmp(f.name.c_str(), "Content-Type") == 0) type = f.value;
            std::string lower_type = lower(std::string(trimmed(type)));
            if (lower_type.rfind("multipart/", 0) == 0 && open.size() < limits.max_mime_multiparts)
                if (std::string b = boundary_of(type); !b.empty()) open.push_back(std::move(b));
            std::size_t body = at + h.section_bytes;
            if (!h.complete && !h.truncated && body < d.size()) edits.push_back({body, 0});
            if (h.truncated || body >= d.size() || lower_type.rfind("message/rfc822", 0) != 0)
                return body;
            at = body;
        }
        return at;
    };
    // Which open multipart a line delimits: index into `open` and whether it is the close
    // delimiter; nullopt for any other line.
    auto delimiter = [&](std::string_view line) -> std::optional<std::pair<std::size_t, bool>> {
        if (line.size() < 3 || line[0] != '-' || line[1] != '-') return std::nullopt;
        while (!line.empty() && g_ascii_isspace(line.back())) line.remove_suffix(1);
        line.remove_prefix(2);
        for (std::size_t i = open.size(); i-- > 0;) {
            const std::string& b = open[i];
            if (line.size() < b.size() || line.compare(0, b.size(), b) != 0) continue;
            std::string_view rest = line.substr(b.size());
            if (rest == "--") return std::pair{i, true};
            if (rest.empty()) return std::pair{i, false};
        }
        return std::nullopt;
    };
    auto line_at = [&](std::size_t at) {
        std::size_t eol = d.find('\n', at);
        return d.substr(at, (eol == std::string_view::npos ? d.size() : eol + 1) - at);
    };
    std::size_t pos = header_block_at(0);
    while (pos < d.size() && !open.empty()) {
        std::string_view line = line_at(pos);
        std::size_t start = pos;
        pos += line.size();
        auto delim = delimiter(line);
        if (!delim) continue;
        auto [i, close] = *delim;
        if (close) {  // this multipart (and any inside it) ends
            open.resize(i);
            continue;
        }
        open.resize(i + 1);  // a part of this multipart begins
        if (pos < d.size()) {
            auto following = delimiter(line_at(pos));
            if (following && following->first == i) {  // no part between two delimiters
                edits.push_back({start, line.size()});
                continue;
            }
        }
        pos = header_block_at(pos);
    }
    if (edits.empty() && open.empty()) return d;
    const char* nl = crlf ? "\r\n" : "\n";
    storage.reserve(d.size() + edits.size() * 2 + open.size() * 80);
    std::size_t from = 0;
    for (const edit& e : edits) {
        storage.append(d.substr(from, e.at - from));
        if (e.erase == 0) storage += nl;
        from = e.at + e.erase;
    }
    storage.append(d.substr(from));
    for (std::size_t i = open.size(); i-- > 0;) {
        if (!storage.empty() && storage.back() != '\n') storage += nl;
        storage += "--" + open[i] + "--" + nl;
    }
    return storage;
}

}  // namespace

nlohmann::json message_to_json(std::string_view data, std::uint64_t inline_max) {
    static std::once_flag once;
    std::call_once(once, [] { g_mime_init(); });
    std::string storage;
    std::string_view input = with_header_boundaries(data, storage);
    nlohmann::json out;
    gobject_ptr<GMimeMessage> msg;
    {
        gobject_ptr<GMimeStream> stream(
            g_mime_stream_mem_new_with_buffer(input.data(), input.size()));
        gobject_ptr<GMimeParser> parser(g_mime_parser_new_with_stream(stream.get()));
        msg.reset(g_mime_parser_construct_message(parser.get(), nullptr));
    }
    if (!msg) {
        // GMime builds no message from a file without any header field (empty, or nothing but
        // body text): then it is all body, text/plain; charset=us-ascii.
        if (!mail::parse_header_block(input).fields.empty())
            throw target_error("GMime could not parse the message");
        std::string_view body = input;
        if (!body.empty() && body.front() == '\n') body.remove_prefix(1);
        return {{"headers", nlohmann::json::array()},
                {"subject", ""},
                {"from", nlohmann::json::array()},
                {"to", nlohmann::json::array()},
                {"cc", nlohmann::json::array()},
                {"text", text_to_utf8(body, nullptr)},
                {"html", nullptr},
                {"attachments", nlohmann::json::array()}};
    }
    GMimeObject* top = GMIME_OBJECT(msg.get());
    nlohmann::json headers = nlohmann::json::array();
    GMimeHeaderList* hl = g_mime_object_get_header_list(top);
    int n = hl ? g_mime_header_list_get_count(hl) : 0;
    for (int i = 0; i < n; ++i) {
        GMimeHeader* h = g_mime_header_list_get_header_at(hl, i);
        const char* name = g_mime_header_get_name(h);
        headers.push_back({{"name", make_valid(name ? name : "")}, {"value", header_text(h)}});
    }
    GMimeObject* root = g_mime_message_get_mime_part(msg.get());
    GMimeObject* text = root ? find_body(root, "plain") : nullptr;
    GMimeObject* html = root ? find_body(root, "html") : nullptr;
    nlohmann::json attachments = nlohmann::json::array();
    std::vector<node> todo;
    if (root) todo.push_back({root, false});
    while (!todo.empty()) {  // leaves in document order
        node cur = todo.back();
        todo.pop_back();
        if (GMIME_IS_MULTIPART(cur.obj)) {
            auto kids = children(cur.obj);
            for (auto it = kids.rbegin(); it != kids.rend(); ++it) todo.push_back(*it);
            continue;
        }
        if (cur.obj == text || cur.obj == html) continue;
        attachments.push_back(attachment(cur.obj, cur.in_digest, inline_max));
    }
    out["headers"] = std::move(headers);
    // The first Subject field (GMime's message subject is the last one).
    GMimeHeader* sh = hl ? g_mime_header_list_get_header(hl, "Subject") : nullptr;
    out["subject"] = sh ? header_text(sh) : "";
    out["from"] = addresses(top, "From");
    out["to"] = addresses(top, "To");
    out["cc"] = addresses(top, "Cc");
    out["text"] = text ? nlohmann::json(body_text(text)) : nlohmann::json(nullptr);
    out["html"] = html ? nlohmann::json(body_text(html)) : nlohmann::json(nullptr);
    out["attachments"] = std::move(attachments);
    return out;
}

std::string message_document(std::string_view data, std::uint64_t inline_max, nlohmann::json top) {
    nlohmann::json j = message_to_json(data, inline_max);
    for (auto& [k, v] : j.items()) top[k] = std::move(v);
    return top.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

int message_json_main(const std::string& file, std::uint64_t inline_max,
                      const std::string& top_json) {
    int status = 0;
    std::string doc;
    try {
        int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) throw target_error(std::string("open: ") + std::strerror(errno));
        std::string data;
        char buf[65536];
        for (;;) {
            ssize_t r = ::read(fd, buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                int e = errno;
                ::close(fd);
                throw target_error(std::string("open: read: ") + std::strerror(e));
            }
            if (r == 0) break;
            data.append(buf, static_cast<std::size_t>(r));
        }
        ::close(fd);
        nlohmann::json top = nlohmann::json::parse(top_json, nullptr, false);
        if (!top.is_object()) top = nlohmann::json::object();
        doc = message_document(data, inline_max, std::move(top));
    } catch (const std::exception& e) {
        doc = std::string("E") + e.what();
        status = 3;
    }
    const char* q = doc.data();
    std::size_t left = doc.size();
    while (left > 0) {
        ssize_t w = ::write(1, q, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return 4;
        q += w;
        left -= static_cast<std::size_t>(w);
    }
    return status;
}

}  // namespace mx::importer
