// mail_header: the one RFC 5322 header parser of the project — for the importer's dropped
// files, the bounce builder, `mxctl send` and the fuzzers. Written for hostile input, never
// via mimetic's getters (they crash on group syntax).
//
// Promises:
// - parse_header_block() walks the header section once, linearly, with hard caps (bytes
//   scanned, bytes kept per field, number of fields); it never allocates more than the bytes it
//   scanned and never throws on any input. Values are unfolded as RFC 5322 2.2.3 says (the line
//   break removed, the continuation's blanks kept), leading blanks trimmed; NUL, CR and LF never
//   appear in them. Every cap that bites sets a truncation flag.
// - A leading mbox "From " line is skipped; the section ends at the first empty line, or at the
//   first line that cannot be a header field (complete == false then).
// - extract_addresses() understands display names, quoted strings, comments, angle addresses,
//   source routes and groups ("undisclosed-recipients:;" or without the ";") on any input.
// Writing header lines (single_line, header_line, encode_words) lives in mail_compose.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mx::mail {

struct header_limits {
    std::size_t max_header_bytes = 100 * 1024;       // kept per field (Postfix header_size_limit)
    std::size_t max_header_block = 8 * 1024 * 1024;  // scanned before giving up on the section
    std::size_t max_headers = 10000;                 // fields kept
};

struct header_field {
    std::string name;        // as written
    std::string value;       // unfolded, leading blanks trimmed, capped; no NUL/CR/LF
    bool truncated = false;  // max_header_bytes cut this value
};

struct header_block {
    std::vector<header_field> fields;
    std::size_t section_bytes = 0;  // offset of the first body byte (after the empty line)
    bool complete = false;          // an empty line ended the section
    bool truncated = false;         // some cap was hit
    bool well_formed = true;        // the first line (after an mbox "From ") was a header field
    // First field with this name (case-insensitive).
    const header_field* find(std::string_view name) const;
    std::optional<std::string> get(std::string_view name) const;
    std::vector<std::string> get_all(std::string_view name) const;
};

header_block parse_header_block(std::string_view message, const header_limits& limits = {});
// The header section (up to and including the empty line, or all of it if there is none).
std::string_view header_section(std::string_view message);
// Removes the named fields (with continuation lines) from the header section; body untouched.
std::string remove_fields(std::string_view message, const std::vector<std::string>& names);

// Addresses (local@domain, without <>) named in an address-list field value, at most max.
// Tokens without '@', and bare (not <>-enclosed) tokens with blanks or quotes, are dropped.
std::vector<std::string> extract_addresses(
    std::string_view field_value, std::size_t max = std::numeric_limits<std::size_t>::max());
// The first address of a field (From:), if any.
std::optional<std::string> first_address(std::string_view field_value);
// The address of a single-path field (Return-Path, Delivered-To, X-Original-To, X-Receiver):
// "<a@b>", "Name <a@b>", "a@b (comment)" -> "a@b"; "<>" -> "" (the null sender). No '@' check.
std::string path_address(std::string_view field_value);

// Without leading and trailing blanks, CR and LF.
std::string_view trim(std::string_view s);
bool is_ascii(std::string_view s);
bool iequals(std::string_view a, std::string_view b);
std::string to_lower(std::string_view s);
// A plausible envelope address for sending: local@domain, printable ASCII, no space, no <>
// and no control characters, length within RFC 5321 limits.
bool is_sendable_address(std::string_view addr);

}  // namespace mx::mail
