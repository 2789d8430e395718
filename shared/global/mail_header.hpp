// mail_header: the little RFC 5322 / 2047 / 2045 knowledge the bounce builder, the SMTP
// client and `mxctl send` share — written for hostile input, never via mimetic's getters.
//
// Promises:
// - parse_header_block() reads at most max_bytes of the header section, never throws on
//   garbage, and returns unfolded (name, value) pairs in order; it stops at the first empty line.
// - extract_addresses() understands display names, quoted strings, comments, angle addresses
//   and groups ("undisclosed-recipients:;" or without the ";") without crashing on any input.
// - Every function that produces a header line (header_line, encode_words) emits no CR or LF
//   except the CRLF folding it inserts itself: values copied from hostile input cannot inject
//   header fields. Non-ASCII text becomes RFC 2047 encoded-words (UTF-8, base64).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mx::mail {

struct header_field {
    std::string name;   // as written
    std::string value;  // unfolded, leading whitespace removed, trailing CR/LF removed
};

struct header_block {
    std::vector<header_field> fields;
    std::size_t section_bytes = 0;  // bytes of the header section incl. the empty line
    bool truncated = false;         // max_bytes reached before the empty line
    bool well_formed = true;        // first line looked like a header field
    // First field with this name (case-insensitive).
    std::optional<std::string> get(std::string_view name) const;
    std::vector<std::string> get_all(std::string_view name) const;
};

header_block parse_header_block(std::string_view message, std::size_t max_bytes = 256 * 1024);
// The header section (up to and including the empty line, or all of it if there is none).
std::string_view header_section(std::string_view message);

// Addresses (local@domain, without <>) named in an address-list field value.
std::vector<std::string> extract_addresses(std::string_view field_value);
// The first address of a field (From:), if any.
std::optional<std::string> first_address(std::string_view field_value);

bool is_ascii(std::string_view s);
bool iequals(std::string_view a, std::string_view b);
std::string to_lower(std::string_view s);
// A plausible envelope address for sending: local@domain, printable ASCII, no space, no <>
// and no control characters, length within RFC 5321 limits.
bool is_sendable_address(std::string_view addr);

// One-line, safe version of a hostile value: CR/LF/TAB become spaces, other controls dropped,
// runs of whitespace collapsed, capped at max_len bytes (on a UTF-8 boundary).
std::string single_line(std::string_view v, std::size_t max_len = 900);
// RFC 2047 encoding of text (already single_line'd) when it is not plain ASCII.
std::string encode_words(std::string_view text);
// "Name: value" folded at whitespace to <= 78 columns where possible, CRLF-terminated.
// The value must not contain CR or LF (pass it through single_line/encode_words first).
std::string header_line(std::string_view name, std::string_view value);

// RFC 5322 date in UTC ("Tue, 02 Jan 2024 15:04:05 +0000").
std::string rfc5322_date(std::int64_t unix_time);
// ISO 8601 UTC ("2024-01-02T15:04:05Z").
std::string iso8601(std::int64_t unix_time);
// <time.random@host>, unique across threads and processes.
std::string make_message_id(std::string_view host);
// A fresh MIME boundary (thread-safe; no shared unsynchronised counter like mimetic's).
std::string make_boundary();
// Quoted-printable (RFC 2045) with CRLF line ends; input lines end in LF or CRLF.
std::string quoted_printable(std::string_view text);
// Bare LF and bare CR become CRLF.
std::string to_crlf(std::string_view data);
// Removes the named fields (with continuation lines) from the header section; body untouched.
std::string remove_fields(std::string_view message, const std::vector<std::string>& names);

}  // namespace mx::mail
