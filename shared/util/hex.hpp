// hex: SHA-256 digests as lower-case hex (OpenSSL's EVP), for fingerprints, stamps and bounded
// keys. Knows nothing about mail.
#pragma once

#include <string>
#include <string_view>

namespace mx::util {

// SHA-256 of data as 64 lower-case hex digits.
std::string sha256_hex(std::string_view data);

}  // namespace mx::util
