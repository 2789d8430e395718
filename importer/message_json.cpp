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
#include "message_json_detail.hpp"
#include "message_parse.hpp"
#include "target_http.hpp"
#include "util/sanitizers.hpp"

namespace mx::importer {
namespace {

using detail::addresses;
using detail::gobject_ptr;
using detail::header_text;
using detail::lower;
using detail::make_valid;
using detail::trimmed;
using detail::with_header_boundaries;

std::string base64(const unsigned char* p, std::size_t n) {
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, static_cast<int>(n));
    out.resize(static_cast<std::size_t>(len));
    return out;
}

bool ieq(const char* a, const char* b) {
    return a && b && g_ascii_strcasecmp(a, b) == 0;
}

bool valid_utf8(std::string_view s) {
    return g_utf8_validate(s.data(), static_cast<gssize>(s.size()), nullptr);
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

}  // namespace

std::string detail::lower(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
}

std::string_view detail::trimmed(std::string_view v) {
    while (!v.empty() && g_ascii_isspace(v.front())) v.remove_prefix(1);
    while (!v.empty() && g_ascii_isspace(v.back())) v.remove_suffix(1);
    return v;
}

std::string detail::make_valid(std::string_view s) {
    if (g_utf8_validate(s.data(), static_cast<gssize>(s.size()), nullptr)) return std::string(s);
    char* v = g_utf8_make_valid(s.data(), static_cast<gssize>(s.size()));
    std::string out = v ? v : "";
    g_free(v);
    return out;
}

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
