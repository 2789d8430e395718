// libFuzzer target: arbitrary bytes as what a socketmap client sends mx-milter, framed the way
// the server reads them (shared/util/netstring.cpp): consume netstrings from the buffer until
// more bytes are needed or the framing is refused. Checks that a parsed payload never exceeds the
// limit, that the consumed length is inside the buffer and re-encodes to the same bytes, and
// that framing a parsed payload again parses back to it; ASan/UBSan catch the rest.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "util/netstring.hpp"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    constexpr std::size_t limit = 100000;  // socketmap_max_request
    std::string_view in(reinterpret_cast<const char*>(data), size);
    try {
        while (!in.empty()) {
            auto r = mx::util::parse_netstring(in, limit);
            if (!r) break;  // incomplete: the server waits for more bytes
            const auto& [payload, used] = *r;
            check(payload.size() <= limit);
            check(used > payload.size() && used <= in.size());
            // What was consumed is exactly a canonical netstring, except for leading zeros in
            // the length ("007:abcdefg," is accepted, as Postfix's own reader does).
            auto again = mx::util::netstring(payload);
            check(in.substr(0, used).size() >= again.size());
            check(in.substr(used - payload.size() - 1, payload.size() + 1) ==
                  again.substr(again.size() - payload.size() - 1));
            auto round = mx::util::parse_netstring(again, limit);
            check(round && round->first == payload && round->second == again.size());
            in.remove_prefix(used);
        }
    } catch (const mx::util::netstring_error&) {
        // Refused framing: the server answers PERM and closes the connection.
    }
    return 0;
}
