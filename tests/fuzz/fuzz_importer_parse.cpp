// fuzz_importer_parse: the importer's parse path for one dropped file — header scan with caps,
// envelope precedence, address lists (never mimetic's getters), RFC 2047 via GMime and the
// mimetic structure walk with bodies skipped — exactly what the parse worker runs.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "message_parse.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    mx::importer::parse_limits limits;
    limits.max_header_bytes = 4096;  // small caps: the fuzzer reaches the limits quickly
    limits.max_mime_multiparts = 64;
    auto m = mx::importer::analyse_message(in, limits);
    (void)mx::importer::to_json(m).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return 0;
}
