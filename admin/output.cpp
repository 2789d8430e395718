// mxctl output helpers: JSON, aligned tables, argument normalisation, secret input.
#include <iostream>
#include <variant>

#include "global/address.hpp"
#include "mxctl.hpp"

namespace mx::admin {

std::string normalize_mailbox_arg(const std::string& arg) {
    if (!arg.empty() && arg.front() == '@') {
        std::string why;
        auto d = normalize_domain(arg.substr(1), &why);
        if (!d) throw cli_error("invalid catch-all '" + arg + "': " + why);
        return "@" + *d;
    }
    auto parsed = parse_address(arg);
    if (auto* e = std::get_if<address_error>(&parsed))
        throw cli_error("invalid address '" + arg + "': " + e->reason +
                        " (expected local@domain, or @domain for a catch-all)");
    return std::get<address>(parsed).str();
}

void print_json(const nlohmann::json& j) {
    std::cout << j.dump(2) << "\n";
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
    if (rows.empty()) return;
    std::vector<std::size_t> width;
    for (const auto& r : rows)
        for (std::size_t i = 0; i < r.size(); ++i) {
            if (width.size() <= i) width.push_back(0);
            width[i] = std::max(width[i], r[i].size());
        }
    for (const auto& r : rows) {
        std::string line;
        for (std::size_t i = 0; i < r.size(); ++i) {
            line += r[i];
            if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
        }
        std::cout << line << "\n";
    }
}

std::string read_secret_value(const std::string& v) {
    if (v != "-") return v;
    std::string line;
    std::getline(std::cin, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
}

}  // namespace mx::admin
