// message_parse: what the importer needs to know about one dropped file, from its bytes.
//
// Promises:
// - Headers are read by mail::parse_header_block (global/mail_header.hpp: caps, truncation
//   flags, unfolding, address lists); this file adds only what is the importer's own.
// - extract_envelope() applies the documented envelope precedence (docs/importer.md):
//   leading X-Sender/X-Receiver block (IIS/Exchange pickup) > topmost Delivered-To (Postfix
//   virtual/pipe) > topmost X-Original-To > To/Cc (last resort; the caller logs it).
// - analyse_message() adds metadata: Message-ID, RFC 2047-decoded Subject/From (UTF-8, via
//   GMime), the Postfix or Sendmail queue id from the topmost Received, and the MIME
//   structure from mimetic (bodies skipped, so memory stays bounded by the header caps). It
//   is what the parse worker runs; the fuzzer runs it in-process.
// Security: all input is hostile. mimetic's address getters are never called (they crash on
// group syntax); mimetic only sees a copy whose every header is capped; bodies are never
// decoded (mimetic's base64 decoder over-reads). Decoded text is made single-line.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "global/mail_header.hpp"

namespace mx::importer {

// The header caps (mail::header_limits) plus what only the importer bounds.
struct parse_limits : mail::header_limits {
    std::size_t max_recipients = 1000;
    std::size_t max_mime_multiparts = 256;  // more boundary= parameters: structure not parsed
};

struct envelope {
    std::string sender;  // empty with sender_known: the null sender <>
    bool sender_known = false;
    std::vector<std::string> recipients;  // raw addresses (not yet normalised), deduplicated
    std::string original_recipient;       // X-Original-To, when present
    std::string source;  // x-receiver | delivered-to | x-original-to | to-cc | none
};

envelope extract_envelope(const mail::header_block& h, const parse_limits& limits = {});

// The queue id in a Received field value written by Postfix ("by HOST (Postfix) with ESMTP
// id 4Abc", "(Postfix, from userid 0)") or Sendmail ("by HOST (8.17.1.9/8.17.1.9) with ESMTP id
// 5B1LXabc012345"): letters and digits after " id ", at most 64; empty for any other MTA or shape.
std::string received_queue_id(std::string_view received_value);

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
message_info message_info_from_json(nlohmann::json&& j);  // moves the strings out

}  // namespace mx::importer
