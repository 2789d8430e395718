// connector_map: which connector owns a recipient domain, for per-connector grouping.
//
// Patterns follow the store's rules: "example.com" (exact), ".example.com" (every subdomain),
// "." (every domain). The most specific pattern wins: exact, then the longest ".parent", then ".".
//
// Promises: the map itself (this header) knows nothing about LMDB or mxctl, so the parser,
// the aggregation and their tests link without the store. load_connector_map() (connector_map.cpp,
// in the mx_logreport library only) is the single place that reads the store; it returns an
// empty map when the store cannot be opened, and the report then groups by domain only.
//
// Security: domains come from hostile log lines; lookup() only compares, it never allocates
// per call and walks at most the labels of the (length-capped) domain.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mx::admin {
struct mxctl_context;
}

namespace mx::logreport {

struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};
template <class V>
using string_map = std::unordered_map<std::string, V, string_hash, std::equal_to<>>;

class connector_map {
  public:
    void add(std::string_view pattern, std::string_view connector);
    // Owner of a lower-case ASCII domain, or nullptr.
    const std::string* lookup(std::string_view domain) const;
    bool empty() const { return exact_.empty() && parents_.empty() && !any_; }
    // Every connector name known (sorted, unique).
    std::vector<std::string> connectors() const;

  private:
    string_map<std::string> exact_;    // "example.com" -> connector
    string_map<std::string> parents_;  // "example.com" (from ".example.com") -> connector
    std::optional<std::string> any_;   // "."
};

// Reads domain patterns from the LMDB store named by the mxctl configuration. Empty map (and a
// note on `why_not`) when there is no readable store.
connector_map load_connector_map(admin::mxctl_context& ctx, std::string& why_not);

}  // namespace mx::logreport
