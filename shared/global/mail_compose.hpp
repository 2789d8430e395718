// mail_compose: writing mail — header lines, RFC 2047 words, dates, Message-IDs, boundaries,
// quoted-printable — for the bounce builder, the SMTP client and `mxctl send`.
//
// Promises:
// - Every function that produces a header line (header_line, encode_words) emits no CR or LF
//   except the CRLF folding it inserts itself: values copied from hostile input cannot inject
//   header fields. Non-ASCII text becomes RFC 2047 encoded-words (UTF-8, base64).
// - make_message_id() and make_boundary() are thread-safe and unique across processes.
// Reading headers is mail_header.hpp's job.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mx::mail {

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

}  // namespace mx::mail
