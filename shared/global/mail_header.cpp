#include "global/mail_header.hpp"

#include <algorithm>
#include <cctype>

namespace mx::mail {
namespace {

bool is_wsp(char c) {
    return c == ' ' || c == '\t';
}

bool valid_field_name(std::string_view n) {
    if (n.empty() || n.size() > 200) return false;
    return std::all_of(n.begin(), n.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u > 32 && u < 127 && c != ':';
    });
}

// Header values never carry NUL/CR/LF (they end up in JSON, logs, reason files and bounces).
void append_clean(std::string& out, std::string_view add) {
    for (char c : add) out.push_back(c == '\0' || c == '\r' || c == '\n' ? ' ' : c);
}

// Appends a continuation line (blanks kept: RFC 5322 2.2.3 unfolding) within the field cap.
void append_continuation(header_block& h, std::string_view line, const header_limits& limits) {
    auto& f = h.fields.back();
    if (f.value.size() >= limits.max_header_bytes) {
        f.truncated = h.truncated = true;
        return;
    }
    std::size_t room = limits.max_header_bytes - f.value.size();
    if (line.size() > room) {
        line = line.substr(0, room);
        f.truncated = h.truncated = true;
    }
    append_clean(f.value, line);
}

// Removes the characters of an address that are blanks outside a quoted string.
std::string without_blanks(std::string_view s) {
    std::string out;
    bool quoted = false;
    for (char c : s) {
        if (c == '"') quoted = !quoted;
        if (quoted || !is_wsp(c)) out += c;
    }
    return out;
}

}  // namespace

std::string_view trim(std::string_view s) {
    while (!s.empty() && (is_wsp(s.front()) || s.front() == '\r' || s.front() == '\n'))
        s.remove_prefix(1);
    while (!s.empty() && (is_wsp(s.back()) || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

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

const header_field* header_block::find(std::string_view name) const {
    for (const auto& f : fields)
        if (iequals(f.name, name)) return &f;
    return nullptr;
}

std::optional<std::string> header_block::get(std::string_view name) const {
    if (const auto* f = find(name)) return f->value;
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

header_block parse_header_block(std::string_view data, const header_limits& limits) {
    header_block h;
    std::size_t pos = 0;
    const std::size_t scan_end = std::min(data.size(), limits.max_header_block);
    bool first_line = true;
    while (pos < scan_end) {
        std::size_t eol = data.find('\n', pos);
        bool cut = eol == std::string_view::npos || eol >= scan_end;
        std::size_t line_end = cut ? scan_end : eol;
        std::size_t next = cut ? scan_end : eol + 1;
        std::string_view line = data.substr(pos, line_end - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) {  // end of the header section
            h.complete = true;
            h.section_bytes = next;
            return h;
        }
        if (is_wsp(line.front())) {
            if (!h.fields.empty()) {
                append_continuation(h, line, limits);
            } else if (first_line) {  // a continuation of nothing
                h.well_formed = false;
                h.section_bytes = pos;
                return h;
            }  // else: a stray continuation right after an mbox "From " line, skipped
            first_line = false;
            pos = next;
            continue;
        }
        std::size_t colon = line.find(':');
        std::string_view name =
            colon == std::string_view::npos ? std::string_view{} : line.substr(0, colon);
        while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
        if (!valid_field_name(name)) {
            // Not a header: the section ends here (a "From " mbox line first is skipped).
            if (first_line && line.substr(0, 5) == "From ") {
                pos = next;
                first_line = false;
                continue;
            }
            h.well_formed = !first_line;
            h.section_bytes = pos;
            return h;
        }
        if (h.fields.size() >= limits.max_headers) {
            h.truncated = true;
            h.section_bytes = pos;
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
        first_line = false;
        pos = next;
    }
    // Ran out of data (a message that is only headers) or hit the scan cap.
    if (scan_end < data.size()) h.truncated = true;
    h.section_bytes = pos;
    return h;
}

std::vector<std::string> extract_addresses(std::string_view v, std::size_t max) {
    std::vector<std::string> out;
    std::string element;  // text of the current element outside comments
    std::string angle;    // content of <...>
    bool have_angle = false;
    auto flush = [&] {
        std::string a;
        if (have_angle) {
            std::string_view t = trim(angle);
            if (!t.empty() && t.front() == '@') {  // obsolete source route "@a,@b:x@y"
                auto c = t.find(':');
                t = c == std::string_view::npos ? std::string_view{} : t.substr(c + 1);
            }
            a = without_blanks(t);
        } else if (auto t = trim(element); t.find_first_of(" \t\"") == std::string_view::npos) {
            a = std::string(t);  // a bare token with blanks or quotes is a display name
        }
        if (out.size() < max && a.find('@') != std::string::npos && a.front() != '@' &&
            a.back() != '@')
            out.push_back(std::move(a));
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
                if (v[i] == '\\' && i + 1 < v.size()) q += v[i++];
                q += v[i++];
            }
            q += '"';
            ++i;
            if (!have_angle) element += q;
            continue;
        }
        if (c == '<') {
            auto close = v.find('>', i + 1);
            angle = std::string(v.substr(
                i + 1, close == std::string_view::npos ? std::string_view::npos : close - i - 1));
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
    auto a = extract_addresses(v, 1);
    if (a.empty()) return std::nullopt;
    return a.front();
}

std::string path_address(std::string_view value) {
    std::string_view v = trim(value);
    auto lt = v.find('<');
    if (lt != std::string_view::npos) {
        auto gt = v.find('>', lt + 1);
        std::string_view inner =
            v.substr(lt + 1, gt == std::string_view::npos ? v.npos : gt - lt - 1);
        return std::string(trim(inner));
    }
    std::string out;  // "a@b (comment)": the comment goes
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
