// netstring: "LEN:DATA," framing (D. J. Bernstein's netstrings; the framing of Postfix's
// socketmap protocol, socketmap_table(5)), for mx-milter's socketmap server and mxctl doctor's
// socketmap client alike.
// Promises: pure functions on bytes (no I/O), fuzzed by tests/fuzz/fuzz_netstring.
// Security: the bytes may come from any process that may connect to a socket: the length
// field is bounded (at most 7 digits, at most max_len) before anything is allocated.
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace mx::util {

class netstring_error : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The payload of the first complete netstring in buf and how many bytes it used; nullopt when
// more bytes are needed; throws netstring_error on garbage (bad length, missing ',', payload
// longer than max_len).
std::optional<std::pair<std::string, std::size_t>> parse_netstring(std::string_view buf,
                                                                   std::size_t max_len);
// "LEN:payload,"
std::string netstring(std::string_view payload);

}  // namespace mx::util
