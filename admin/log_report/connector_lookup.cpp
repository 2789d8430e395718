// connector_map lookup (the store-free half; the store loader is connector_map.cpp).
#include <algorithm>

#include "connector_map.hpp"

namespace mx::logreport {

void connector_map::add(std::string_view pattern, std::string_view connector) {
    if (pattern == ".") {
        any_ = std::string(connector);
    } else if (!pattern.empty() && pattern.front() == '.') {
        parents_.insert_or_assign(std::string(pattern.substr(1)), std::string(connector));
    } else if (!pattern.empty()) {
        exact_.insert_or_assign(std::string(pattern), std::string(connector));
    }
}

const std::string* connector_map::lookup(std::string_view domain) const {
    if (auto it = exact_.find(domain); it != exact_.end()) return &it->second;
    // ".example.com" covers "a.example.com" and "b.a.example.com"; the longest parent is the
    // first one met when stripping labels from the left.
    std::string_view d = domain;
    for (std::size_t dot = d.find('.'); dot != std::string_view::npos; dot = d.find('.')) {
        d.remove_prefix(dot + 1);
        if (auto it = parents_.find(d); it != parents_.end()) return &it->second;
    }
    return any_ ? &*any_ : nullptr;
}

std::vector<std::string> connector_map::connectors() const {
    std::vector<std::string> out;
    for (const auto& [k, v] : exact_) out.push_back(v);
    for (const auto& [k, v] : parents_) out.push_back(v);
    if (any_) out.push_back(*any_);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

}  // namespace mx::logreport
