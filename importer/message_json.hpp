// message_json: the JSON document of a message (docs/targets.md "What the JSON contains"),
// built with GMime. Its own library (mx_message_json): only mx-importer, the tests and the
// fuzzers link it; mx_targets reaches it through the converter child (target_http.hpp).
//
// Promises: see message_json.cpp (what the document says, checked against Python's email
// package by tests/importer/fidelity). Security: the input is hostile; run it only in the
// converter child (limits, timeout), never in a daemon's or mxctl's own process.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace mx::importer {

// File bytes -> document. Throws target_error when GMime builds no message from a file that
// has header fields.
nlohmann::json message_to_json(std::string_view data, std::uint64_t inline_max);
// The converter's output: `top` (envelope, connector, ...) with the message's document merged
// in, serialised (invalid UTF-8 replaced).
std::string message_document(std::string_view data, std::uint64_t inline_max, nlohmann::json top);
// `mx-importer --message-json FILE`: message_document() for a file (opened O_NOFOLLOW),
// written to stdout in the converter child's protocol ("E" + why and status 3 on failure).
int message_json_main(const std::string& file, std::uint64_t inline_max,
                      const std::string& top_json);

}  // namespace mx::importer
