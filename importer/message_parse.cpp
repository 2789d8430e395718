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

bool ieq(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

bool is_wsp(char c) {
    return c == ' ' || c == '\t';
}

// Header values never carry NUL/CR/LF (they end up in JSON, logs and reason files).
void append_clean(std::string& out, std::string_view add) {
    for (char c : add) out.push_back(c == '\0' || c == '\r' || c == '\n' ? ' ' : c);
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (is_wsp(s.front()) || s.front() == '\r' || s.front() == '\n'))
        s.remove_prefix(1);
    while (!s.empty() && (is_wsp(s.back()) || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

// A field name: printable US-ASCII except ':' (RFC 5322 2.2).
bool valid_field_name(std::string_view n) {
    if (n.empty() || n.size() > 200) return false;
    for (unsigned char c : n)
        if (c < 33 || c > 126 || c == ':') return false;
    return true;
}

const header_field* first_field(const header_block& h, std::string_view name) {
    for (const auto& f : h.fields)
        if (ieq(f.name, name)) return &f;
    return nullptr;
}

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
    const char first_lo = needle[0], first_up = static_cast<char>(needle[0] - 'a' + 'A');
    for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i) {
        char c = hay[i];
        if (c != first_lo && c != first_up) continue;
        if (ieq(hay.substr(i, needle.size()), needle)) {
            if (++n >= stop_at) return n;
            i += needle.size() - 1;
        }
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

header_block scan_headers(std::string_view data, const parse_limits& limits) {
    header_block h;
    std::size_t pos = 0;
    const std::size_t scan_end = std::min(data.size(), limits.max_header_block);
    bool first_line = true;
    while (pos < scan_end) {
        std::size_t eol = data.find('\n', pos);
        std::size_t line_end = (eol == std::string_view::npos || eol >= scan_end) ? scan_end : eol;
        std::size_t next = (eol == std::string_view::npos || eol >= scan_end) ? scan_end : eol + 1;
        std::string_view line = data.substr(pos, line_end - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) {  // end of the header block
            h.complete = true;
            h.end = next;
            return h;
        }
        if (is_wsp(line.front())) {
            if (!h.fields.empty()) {
                auto& f = h.fields.back();
                if (f.value.size() < limits.max_header_bytes) {
                    std::string_view add = line;
                    std::size_t room = limits.max_header_bytes - f.value.size();
                    if (add.size() > room) {
                        add = add.substr(0, room);
                        f.truncated = h.truncated = true;
                    }
                    append_clean(f.value, add);
                } else {
                    f.truncated = h.truncated = true;
                }
            } else if (first_line) {
                h.leading_garbage = true;
                h.end = pos;
                return h;
            }
        } else {
            std::size_t colon = line.find(':');
            std::string_view name =
                colon == std::string_view::npos ? std::string_view{} : line.substr(0, colon);
            while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
            if (!valid_field_name(name)) {
                // Not a header: the block ends here (a "From " mbox line first is skipped).
                if (first_line && line.size() >= 5 && line.substr(0, 5) == "From ") {
                    pos = next;
                    first_line = false;
                    continue;
                }
                h.leading_garbage = first_line;
                h.end = pos;
                return h;
            }
            if (h.fields.size() >= limits.max_headers) {
                h.truncated = true;
                h.end = pos;
                return h;
            }
            header_field f;
            f.name = std::string(name);
            std::string_view v = line.substr(colon + 1);
            while (!v.empty() && is_wsp(v.front())) v.remove_prefix(1);
            if (v.size() > limits.max_header_bytes) {
                v = v.substr(0, limits.max_header_bytes);
                f.truncated = h.truncated = true;
            }
            append_clean(f.value, v);
            h.fields.push_back(std::move(f));
        }
        first_line = false;
        pos = next;
    }
    // Ran out of data (a message that is only headers) or hit the scan cap.
    if (scan_end < data.size()) h.truncated = true;
    h.end = pos;
    return h;
}

std::string extract_address(std::string_view value) {
    std::string_view v = trim(value);
    auto lt = v.find('<');
    if (lt != std::string_view::npos) {
        auto gt = v.find('>', lt + 1);
        std::string_view inner =
            v.substr(lt + 1, gt == std::string_view::npos ? v.npos : gt - lt - 1);
        return std::string(trim(inner));
    }
    // strip a trailing (comment)
    std::string out;
    int depth = 0;
    for (char c : v) {
        if (c == '(')
            ++depth;
        else if (c == ')' && depth > 0)
            --depth;
        else if (depth == 0)
            out.push_back(c);
    }
    return std::string(trim(out));
}

std::vector<std::string> extract_address_list(std::string_view value, std::size_t max) {
    std::vector<std::string> out;
    std::string cur;
    bool in_quote = false, in_angle = false, escaped = false;
    int comment = 0;
    std::string angle;
    bool have_angle = false;
    auto flush = [&] {
        std::string a = have_angle ? angle : std::string(trim(cur));
        a = std::string(trim(a));
        if (a.find('@') != std::string::npos && out.size() < max &&
            a.find_first_of(" \t\"") == std::string::npos)
            out.push_back(a);
        else if (a.find('@') != std::string::npos && out.size() < max && have_angle)
            out.push_back(a);
        cur.clear();
        angle.clear();
        have_angle = false;
    };
    for (char c : value) {
        if (escaped) {
            (in_angle ? angle : cur).push_back(c);
            escaped = false;
            continue;
        }
        if (c == '\\' && (in_quote || comment)) {
            escaped = true;
            continue;
        }
        if (comment) {
            if (c == '(') ++comment;
            if (c == ')') --comment;
            continue;
        }
        if (in_quote) {
            if (c == '"') in_quote = false;
            (in_angle ? angle : cur).push_back(c);
            continue;
        }
        if (in_angle) {
            if (c == '>')
                in_angle = false;
            else
                angle.push_back(c);
            continue;
        }
        switch (c) {
            case '"':
                in_quote = true;
                cur.push_back(c);
                break;
            case '(':
                comment = 1;
                break;
            case '<':
                in_angle = true;
                have_angle = true;
                angle.clear();
                break;
            case ',':
            case ';':
                flush();
                break;
            case ':':
                cur.clear();
                break;  // "group:" display name of a group
            default:
                cur.push_back(c);
        }
    }
    flush();
    return out;
}

envelope extract_envelope(const header_block& h, const parse_limits& limits) {
    envelope e;
    std::set<std::string> seen;
    auto add = [&](std::string a) {
        if (a.empty() || e.recipients.size() >= limits.max_recipients) return;
        if (seen.insert(a).second) e.recipients.push_back(std::move(a));
    };
    // 1. IIS/Exchange pickup: a leading run of X-Sender / X-Receiver lines.
    if (!h.fields.empty() &&
        (ieq(h.fields[0].name, "X-Sender") || ieq(h.fields[0].name, "X-Receiver"))) {
        for (const auto& f : h.fields) {
            if (ieq(f.name, "X-Sender")) {
                if (!e.sender_known) {
                    e.sender = extract_address(f.value);
                    e.sender_known = true;
                }
            } else if (ieq(f.name, "X-Receiver")) {
                add(extract_address(f.value));
            } else {
                break;
            }
        }
        if (!e.recipients.empty()) {
            e.source = "x-receiver";
            return e;
        }
    }
    if (auto* rp = first_field(h, "Return-Path")) {
        e.sender = extract_address(rp->value);
        e.sender_known = true;
    }
    if (auto* xo = first_field(h, "X-Original-To"))
        e.original_recipient = extract_address(xo->value);
    // 2. Postfix virtual(8)/pipe(8): the topmost Delivered-To is this delivery's recipient.
    if (auto* dt = first_field(h, "Delivered-To")) {
        add(extract_address(dt->value));
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
        if (ieq(f.name, "To") || ieq(f.name, "Cc"))
            for (auto& a : extract_address_list(f.value, limits.max_recipients)) add(a);
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

message_info analyse_message(std::string_view data, const parse_limits& limits) {
    message_info m;
    header_block h = scan_headers(data, limits);
    m.env = extract_envelope(h, limits);
    m.header_bytes = h.end;
    m.header_truncated = h.truncated;
    m.has_header_block = !h.fields.empty();
    if (auto* f = first_field(h, "Message-ID"))
        m.message_id = one_line(std::string(trim(f->value)), 998);
    if (auto* f = first_field(h, "Subject")) m.subject = decode_header_text(f->value);
    if (auto* f = first_field(h, "From")) m.from = decode_header_text(f->value);
    if (auto* f = first_field(h, "Content-Type")) m.content_type = one_line(f->value, 200);
    // Postfix queue id: "Received: from ... by host (Postfix) with ESMTP id 4Abc; date".
    if (auto* f = first_field(h, "Received")) {
        std::string_view v = f->value;
        if (v.find("(Postfix)") != std::string_view::npos) {
            auto p = v.find(" id ");
            if (p != std::string_view::npos) {
                std::string id;
                for (char c : v.substr(p + 4)) {
                    if (!std::isalnum(static_cast<unsigned char>(c))) break;
                    id.push_back(c);
                    if (id.size() > 64) break;
                }
                m.queue_id = id;
            }
        }
    }
    if (h.fields.empty()) {
        m.note = "no header block";
        return m;
    }
    if (!h.complete && h.end < data.size()) {
        m.note = "header block over the scan limit: structure not parsed";
        return m;
    }
    std::size_t boundaries = count_icase(data, "boundary", limits.max_mime_multiparts + 1);
    if (boundaries > limits.max_mime_multiparts) {
        m.note = "more than " + std::to_string(limits.max_mime_multiparts) +
                 " multipart boundaries: structure not parsed";
        return m;
    }
    // mimetic sees the original bytes, or a copy whose every header is capped.
    std::string capped;
    std::string_view input = data;
    if (h.truncated) {
        capped.reserve(h.fields.size() * 64 + (data.size() - h.end) + 2);
        for (const auto& f : h.fields) capped += f.name + ": " + f.value + "\r\n";
        capped += "\r\n";
        capped.append(data.substr(std::min(h.end, data.size())));
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

message_info message_info_from_json(const nlohmann::json& j) {
    message_info m;
    m.env.sender = j.value("sender", "");
    m.env.sender_known = j.value("sender_known", false);
    if (auto it = j.find("recipients"); it != j.end() && it->is_array())
        for (const auto& r : *it)
            if (r.is_string()) m.env.recipients.push_back(r.get<std::string>());
    m.env.original_recipient = j.value("original_recipient", "");
    m.env.source = j.value("envelope_source", "none");
    m.message_id = j.value("message_id", "");
    m.subject = j.value("subject", "");
    m.from = j.value("from", "");
    m.queue_id = j.value("queue_id", "");
    m.header_bytes = j.value("header_bytes", std::size_t{0});
    m.header_truncated = j.value("header_truncated", false);
    m.has_header_block = j.value("has_header_block", false);
    m.content_type = j.value("content_type", "");
    m.mime_parts = j.value("mime_parts", std::size_t{0});
    m.structure_parsed = j.value("structure_parsed", false);
    m.note = j.value("note", "");
    return m;
}

}  // namespace mx::importer
