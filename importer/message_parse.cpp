#include "message_parse.hpp"

#include <gmime/gmime.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>
#include <set>

#include <mimetic/mimetic.h>

namespace mx::importer {
namespace {

std::string one_line(std::string s, std::size_t max_len) {
    for (char& c : s)
        if (static_cast<unsigned char>(c) < 32 || c == 127) c = ' ';
    if (s.size() > max_len) {
        s.resize(max_len);
        // never cut a UTF-8 sequence in half
        while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();
        if (!s.empty() && (static_cast<unsigned char>(s.back()) & 0x80)) s.pop_back();
    }
    return s;
}

std::size_t count_icase(std::string_view hay, std::string_view needle, std::size_t stop_at) {
    std::size_t n = 0;
    if (needle.empty() || hay.size() < needle.size()) return 0;
    // Candidates by memchr for the first letter in either case (vectorised in glibc): a
    // byte-by-byte loop over every message body cost more than the rest of the analysis.
    const char first_lo = needle[0], first_up = static_cast<char>(needle[0] - 'a' + 'A');
    const char* base = hay.data();
    const std::size_t last = hay.size() - needle.size();  // last start position
    auto next = [&](char c, std::size_t from) -> std::size_t {
        if (from > last) return std::string_view::npos;
        const void* p = std::memchr(base + from, c, last - from + 1);
        return p ? static_cast<std::size_t>(static_cast<const char*>(p) - base)
                 : std::string_view::npos;
    };
    std::size_t lo = next(first_lo, 0), up = next(first_up, 0);
    while (lo != std::string_view::npos || up != std::string_view::npos) {
        std::size_t i = std::min(lo, up);
        std::size_t resume = i + 1;
        if (mail::iequals(hay.substr(i, needle.size()), needle)) {
            if (++n >= stop_at) return n;
            resume = i + needle.size();
        }
        if (lo < resume) lo = next(first_lo, resume);
        if (up < resume) up = next(first_up, resume);
    }
    return n;
}

// Entities of a parsed tree, iteratively (no recursion on hostile depth).
std::size_t count_entities(mimetic::MimeEntity& root) {
    std::size_t n = 0;
    std::vector<mimetic::MimeEntity*> todo{&root};
    while (!todo.empty()) {
        auto* e = todo.back();
        todo.pop_back();
        ++n;
        for (auto* child : e->body().parts())
            if (child) todo.push_back(child);
    }
    return n;
}

// mimetic frees child entities in its destructor recursively; detach deep trees iteratively
// first so a hostile nesting cannot exhaust the stack there either.
void destroy_iteratively(mimetic::MimeEntity& root) {
    std::vector<mimetic::MimeEntity*> owned;
    std::vector<mimetic::MimeEntity*> todo{&root};
    while (!todo.empty()) {
        auto* e = todo.back();
        todo.pop_back();
        auto& parts = e->body().parts();
        for (auto* child : parts)
            if (child) {
                todo.push_back(child);
                owned.push_back(child);
            }
        parts.clear();
    }
    for (auto* e : owned) delete e;
}

}  // namespace

envelope extract_envelope(const mail::header_block& h, const parse_limits& limits) {
    envelope e;
    std::set<std::string> seen;
    auto add = [&](std::string a) {
        if (a.empty() || e.recipients.size() >= limits.max_recipients) return;
        if (seen.insert(a).second) e.recipients.push_back(std::move(a));
    };
    // 1. IIS/Exchange pickup: a leading run of X-Sender / X-Receiver lines.
    if (!h.fields.empty() && (mail::iequals(h.fields[0].name, "X-Sender") ||
                              mail::iequals(h.fields[0].name, "X-Receiver"))) {
        for (const auto& f : h.fields) {
            if (mail::iequals(f.name, "X-Sender")) {
                if (!e.sender_known) {
                    e.sender = mail::path_address(f.value);
                    e.sender_known = true;
                }
            } else if (mail::iequals(f.name, "X-Receiver")) {
                add(mail::path_address(f.value));
            } else {
                break;
            }
        }
        if (!e.recipients.empty()) {
            e.source = "x-receiver";
            return e;
        }
    }
    if (auto* rp = h.find("Return-Path")) {
        e.sender = mail::path_address(rp->value);
        e.sender_known = true;
    }
    if (auto* xo = h.find("X-Original-To")) e.original_recipient = mail::path_address(xo->value);
    // 2. Postfix virtual(8)/pipe(8): the topmost Delivered-To is this delivery's recipient.
    if (auto* dt = h.find("Delivered-To")) {
        add(mail::path_address(dt->value));
        if (!e.recipients.empty()) {
            e.source = "delivered-to";
            return e;
        }
    }
    // 3. X-Original-To alone.
    if (!e.original_recipient.empty()) {
        add(e.original_recipient);
        e.source = "x-original-to";
        return e;
    }
    // 4. Last resort: the To/Cc headers (the caller keeps only its connector's domains).
    for (const auto& f : h.fields)
        if (mail::iequals(f.name, "To") || mail::iequals(f.name, "Cc"))
            for (auto& a : mail::extract_addresses(f.value, limits.max_recipients)) add(a);
    e.source = e.recipients.empty() ? "none" : "to-cc";
    return e;
}

std::string decode_header_text(std::string_view raw, std::size_t max_len) {
    static std::once_flag once;
    std::call_once(once, [] { g_mime_init(); });
    std::string in(raw.substr(0, std::min<std::size_t>(raw.size(), 100 * 1024)));
    for (char& c : in)
        if (c == '\0') c = ' ';
    std::string out;
    if (char* d = g_mime_utils_header_decode_text(nullptr, in.c_str())) {
        out = d;
        g_free(d);
    } else {
        out = in;
    }
    // GMime returns UTF-8; make sure of it for JSON and logs.
    if (!g_utf8_validate(out.data(), static_cast<gssize>(out.size()), nullptr)) {
        if (char* v = g_utf8_make_valid(out.data(), static_cast<gssize>(out.size()))) {
            out = v;
            g_free(v);
        }
    }
    return one_line(std::move(out), max_len);
}

namespace {

// The blank-separated words of an unfolded field value (a folded line keeps its tab).
std::vector<std::string_view> words_of(std::string_view v) {
    std::vector<std::string_view> w;
    while (!v.empty()) {
        auto b = v.find_first_not_of(" \t");
        if (b == std::string_view::npos) break;
        v.remove_prefix(b);
        auto e = std::min(v.find_first_of(" \t"), v.size());
        w.push_back(v.substr(0, e));
        v.remove_prefix(e);
    }
    return w;
}

// Whether mimetic would see one entity without walking the body: a header block read whole
// and well formed, with at most one Content-Type field, which (as mimetic reads it) is neither
// multipart/* nor message/rfc822 — mimetic's only two kinds of entity with children. Most
// mail is such a message; the walk over its body costs more than everything else here.
bool single_part(const mail::header_block& h) {
    if (!h.complete || h.truncated || !h.well_formed) return false;
    const mail::header_field* ct = nullptr;
    for (const auto& f : h.fields) {
        if (!mail::iequals(f.name, "Content-Type")) continue;
        if (ct) return false;  // two: which one counts is mimetic's business
        ct = &f;
    }
    if (!ct) return true;  // text/plain (RFC 2045 5.2)
    mimetic::ContentType t(ct->value);
    return !t.isMultipart() && !(t.type() == "message" && t.subtype() == "rfc822");
}

}  // namespace

std::string received_queue_id(std::string_view v) {
    auto w = words_of(v.substr(0, 4096));
    bool known = false;
    for (std::size_t i = 0; i + 2 < w.size(); ++i) {
        if (w[i] != "by") continue;
        // Postfix: "(Postfix)", "(Postfix," (from userid N: submitted with sendmail(1)).
        // Sendmail: "by HOST ($v/$Z)", its version first ("(8.17.1.9/8.17.1.9/Debian-...").
        auto c = w[i + 2];
        known = c.rfind("(Postfix", 0) == 0 ||
                (c.size() > 2 && c[0] == '(' && std::isdigit(static_cast<unsigned char>(c[1])) &&
                 c.find('.') != std::string_view::npos && c.find('/') != std::string_view::npos);
        break;
    }
    if (!known) return {};
    for (std::size_t i = 0; i + 1 < w.size(); ++i) {
        if (w[i] != "id") continue;
        std::string id;
        for (char ch : w[i + 1]) {
            if (!std::isalnum(static_cast<unsigned char>(ch)) || id.size() == 64) break;
            id.push_back(ch);
        }
        return id;
    }
    return {};
}

message_info analyse_message(std::string_view data, const parse_limits& limits) {
    message_info m;
    mail::header_block h = mail::parse_header_block(data, limits);
    m.env = extract_envelope(h, limits);
    m.header_bytes = h.section_bytes;
    m.header_truncated = h.truncated;
    m.has_header_block = !h.fields.empty();
    if (auto* f = h.find("Message-ID"))
        m.message_id = one_line(std::string(mail::trim(f->value)), 998);
    if (auto* f = h.find("Subject")) m.subject = decode_header_text(f->value);
    if (auto* f = h.find("From")) m.from = decode_header_text(f->value);
    if (auto* f = h.find("Content-Type")) m.content_type = one_line(f->value, 200);
    if (auto* f = h.find("Received")) m.queue_id = received_queue_id(f->value);
    if (h.fields.empty()) {
        m.note = "no header block";
        return m;
    }
    if (!h.complete && h.section_bytes < data.size()) {
        m.note = "header block over the scan limit: structure not parsed";
        return m;
    }
    std::size_t boundaries = count_icase(data, "boundary", limits.max_mime_multiparts + 1);
    if (boundaries > limits.max_mime_multiparts) {
        m.note = "more than " + std::to_string(limits.max_mime_multiparts) +
                 " multipart boundaries: structure not parsed";
        return m;
    }
    if (single_part(h)) {
        m.mime_parts = 1;
        m.structure_parsed = true;
        return m;
    }
    // mimetic sees the original bytes, or a copy whose every header is capped.
    std::string capped;
    std::string_view input = data;
    if (h.truncated) {
        capped.reserve(h.fields.size() * 64 + (data.size() - h.section_bytes) + 2);
        for (const auto& f : h.fields) capped += f.name + ": " + f.value + "\r\n";
        capped += "\r\n";
        capped.append(data.substr(std::min(h.section_bytes, data.size())));
        input = capped;
    }
    const int mask = mimetic::imBody | mimetic::imPreamble | mimetic::imEpilogue;
    mimetic::MimeEntity me;
    me.load(input.data(), input.data() + input.size(), mask);
    m.mime_parts = count_entities(me);
    m.structure_parsed = true;
    destroy_iteratively(me);
    return m;
}

nlohmann::json to_json(const message_info& m) {
    return {{"sender", m.env.sender},
            {"sender_known", m.env.sender_known},
            {"recipients", m.env.recipients},
            {"original_recipient", m.env.original_recipient},
            {"envelope_source", m.env.source},
            {"message_id", m.message_id},
            {"subject", m.subject},
            {"from", m.from},
            {"queue_id", m.queue_id},
            {"header_bytes", m.header_bytes},
            {"header_truncated", m.header_truncated},
            {"has_header_block", m.has_header_block},
            {"content_type", m.content_type},
            {"mime_parts", m.mime_parts},
            {"structure_parsed", m.structure_parsed},
            {"note", m.note}};
}

namespace {

// The string at `key`, moved out of `j` (the reply is decoded once); `def` when absent or not
// a string.
std::string take_string(nlohmann::json& j, const char* key, const char* def = "") {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return def;
    return std::move(it->get_ref<std::string&>());
}

}  // namespace

message_info message_info_from_json(const nlohmann::json& j) {
    nlohmann::json copy = j;
    return message_info_from_json(std::move(copy));
}

message_info message_info_from_json(nlohmann::json&& j) {
    message_info m;
    m.env.sender = take_string(j, "sender");
    m.env.sender_known = j.value("sender_known", false);
    if (auto it = j.find("recipients"); it != j.end() && it->is_array())
        for (auto& r : *it)
            if (r.is_string()) m.env.recipients.push_back(std::move(r.get_ref<std::string&>()));
    m.env.original_recipient = take_string(j, "original_recipient");
    m.env.source = take_string(j, "envelope_source", "none");
    m.message_id = take_string(j, "message_id");
    m.subject = take_string(j, "subject");
    m.from = take_string(j, "from");
    m.queue_id = take_string(j, "queue_id");
    m.header_bytes = j.value("header_bytes", std::size_t{0});
    m.header_truncated = j.value("header_truncated", false);
    m.has_header_block = j.value("has_header_block", false);
    m.content_type = take_string(j, "content_type");
    m.mime_parts = j.value("mime_parts", std::size_t{0});
    m.structure_parsed = j.value("structure_parsed", false);
    m.note = take_string(j, "note");
    return m;
}

}  // namespace mx::importer
