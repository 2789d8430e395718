// hex: SHA-256 digests as lower-case hex (OpenSSL's EVP), for fingerprints, stamps and bounded
// keys, and percent-encoding (RFC 3986 style, upper-case hex) for keys and path components.
// Knows nothing about mail.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mx::util {

// SHA-256 of data as 64 lower-case hex digits.
std::string sha256_hex(std::string_view data);

// Every byte for which keep(byte, position) is false becomes "%XX" (upper-case hex). '%'
// itself should not be kept, or the encoding is not reversible.
std::string percent_encode(std::string_view s, bool (*keep)(unsigned char c, std::size_t pos));

}  // namespace mx::util
