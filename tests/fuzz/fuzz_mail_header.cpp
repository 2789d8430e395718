// fuzz_mail_header: the one header parser (shared/global/mail_header) on its own — the header
// section with small caps, every field's value through the address-list and single-path
// parsers, and field removal — what the importer, the bounce builder and `mxctl send` run on
// hostile input.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "global/mail_header.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    mx::mail::header_limits limits;
    limits.max_header_bytes = 2048;  // small caps: the fuzzer reaches the limits quickly
    limits.max_headers = 64;
    limits.max_header_block = 64 * 1024;
    auto h = mx::mail::parse_header_block(in, limits);
    for (const auto& f : h.fields) {
        if (f.value.find_first_of(std::string_view("\0\r\n", 3)) != std::string::npos)
            __builtin_trap();  // the promise: no NUL, CR or LF in a value
        (void)mx::mail::extract_addresses(f.value, 100);
        (void)mx::mail::path_address(f.value);
    }
    if (h.section_bytes > in.size()) __builtin_trap();
    (void)mx::mail::remove_fields(in.substr(0, 64 * 1024), {"Bcc", "Resent-Bcc"});
    return 0;
}
