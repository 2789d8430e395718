// message_json_structure: the structure repairs made before GMime parses a message (see
// with_header_boundaries below and the promises in message_json.cpp).
// Security: input is hostile; one linear pass, at most max_mime_multiparts open boundaries.
#include <gmime/gmime.h>

#include <string>
#include <string_view>
#include <vector>

#include "message_json_detail.hpp"
#include "message_parse.hpp"

namespace mx::importer {
namespace {

using detail::gobject_ptr;
using detail::lower;
using detail::trimmed;

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
}  // namespace

std::string_view detail::with_header_boundaries(std::string_view data, std::string& storage) {
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

}  // namespace mx::importer
