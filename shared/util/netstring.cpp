// netstring: socketmap framing (see netstring.hpp).
#include "util/netstring.hpp"

namespace mx::util {

std::optional<std::pair<std::string, std::size_t>> parse_netstring(std::string_view buf,
                                                                   std::size_t max_len) {
    std::size_t i = 0, len = 0;
    while (i < buf.size() && buf[i] >= '0' && buf[i] <= '9') {
        len = len * 10 + static_cast<std::size_t>(buf[i] - '0');
        if (len > max_len) throw netstring_error("request longer than the limit");
        if (++i > 7) throw netstring_error("length field too long");
    }
    if (i == buf.size()) return std::nullopt;  // still reading the length
    if (i == 0 || buf[i] != ':') throw netstring_error("malformed netstring length");
    if (buf.size() < i + 1 + len + 1) return std::nullopt;
    if (buf[i + 1 + len] != ',') throw netstring_error("netstring not terminated by ','");
    return std::make_pair(std::string(buf.substr(i + 1, len)), i + 1 + len + 1);
}

std::string netstring(std::string_view payload) {
    return std::to_string(payload.size()) + ":" + std::string(payload) + ",";
}

}  // namespace mx::util
