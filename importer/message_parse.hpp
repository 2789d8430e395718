// message_parse: what the importer needs to know about one dropped file, from its bytes.
//
// Promises:
// - scan_headers() walks the header block once, linearly, with hard caps (bytes scanned,
//   bytes kept per header, number of headers); it never allocates more than the caps allow and
//   never throws on any input. Values are unfolded; CR/LF/NUL never appear in them.
// - extract_envelope() applies the documented envelope precedence (docs/importer.md):
//   leading X-Sender/X-Receiver block (IIS/Exchange pickup) > topmost Delivered-To (Postfix
//   virtual/pipe) > topmost X-Original-To > To/Cc (last resort; the caller logs it).
// - analyse_message() adds metadata: Message-ID, RFC 2047-decoded Subject/From (UTF-8, via
//   GMime), Postfix queue id from the topmost Received, and the MIME structure from mimetic
//   (bodies skipped, so memory stays bounded by the header caps). It is what the parse worker
//   runs; the fuzzer runs it in-process.
// Security: all input is hostile. mimetic's address getters are never called (they crash on
// group syntax); mimetic only sees a copy whose every header is capped; bodies are never
// decoded (mimetic's base64 decoder over-reads). Decoded text is made single-line.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mx::importer {

struct parse_limits {
    std::size_t max_header_bytes = 100 * 1024;       // per header (Postfix header_size_limit)
    std::size_t max_header_block = 8 * 1024 * 1024;  // scanned before giving up on the block
    std::size_t max_headers = 10000;
    std::size_t max_recipients = 1000;
    std::size_t max_mime_multiparts = 256;  // more boundary= parameters: structure not parsed
};

struct header_field {
    std::string name;   // as written
    std::string value;  // unfolded, leading blanks trimmed, capped
    bool truncated = false;
};

struct header_block {
    std::vector<header_field> fields;
    std::size_t end = 0;           // offset of the first body byte
    bool complete = false;         // an empty line ended the block
    bool truncated = false;        // some cap was hit
    bool leading_garbage = false;  // the first line was not a header
};

header_block scan_headers(std::string_view data, const parse_limits& limits = {});

struct envelope {
    std::string sender;  // empty with sender_known: the null sender <>
    bool sender_known = false;
    std::vector<std::string> recipients;  // raw addresses (not yet normalised), deduplicated
    std::string original_recipient;       // X-Original-To, when present
    std::string source;  // x-receiver | delivered-to | x-original-to | to-cc | none
};

envelope extract_envelope(const header_block& h, const parse_limits& limits = {});

// "<a@b>", "Name <a@b>", "a@b (comment)" -> "a@b"; "<>" -> "". Never throws.
std::string extract_address(std::string_view value);
// Addresses of an address-list header (To/Cc) without mimetic: quotes, comments, groups and
// <> are handled; tokens without '@' are dropped.
std::vector<std::string> extract_address_list(std::string_view value, std::size_t max);

// RFC 2047 encoded words -> UTF-8 (GMime), then control characters replaced, capped.
std::string decode_header_text(std::string_view raw, std::size_t max_len = 998);

struct message_info {
    envelope env;
    std::string message_id;
    std::string subject;  // decoded
    std::string from;     // decoded
    std::string queue_id;
    std::size_t header_bytes = 0;
    bool header_truncated = false;
    bool has_header_block = false;
    std::string content_type;
    std::size_t mime_parts = 0;     // entities mimetic saw (1 for a single-part message)
    bool structure_parsed = false;  // false: too many multiparts or no header block
    std::string note;               // why something was skipped
};

// data: the whole message (mapped); runs mimetic on a capped copy when needed.
message_info analyse_message(std::string_view data, const parse_limits& limits = {});

nlohmann::json to_json(const message_info& m);
message_info message_info_from_json(const nlohmann::json& j);

}  // namespace mx::importer
