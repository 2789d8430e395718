// Helpers shared by the log-report tests: fixture paths and one-call aggregation.
#pragma once

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "aggregator.hpp"
#include "line_parser.hpp"

namespace mx::logreport::test {

// Every expectation on hours and local times is written for UTC.
inline const bool utc_zone = [] {
    setenv("TZ", "UTC", 1);
    tzset();
    return true;
}();

// 2024-03-01T12:00:00Z: year inference for the February fixtures lands on 2024.
inline constexpr std::int64_t ref_now = 1709294400;

inline std::string fixture(const std::string& name) {
    return std::string(LOG_FIXTURES) + "/" + name;
}

inline std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> v;
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
}

inline std::string find_line(const std::string& file, const std::string& needle) {
    for (const auto& l : read_lines(fixture(file)))
        if (l.find(needle) != std::string::npos) return l;
    throw std::runtime_error("fixture " + file + " has no line with " + needle);
}

inline void feed(aggregator& agg, const std::string& file, std::int64_t now = ref_now) {
    line_parser p(now);
    for (const auto& l : read_lines(fixture(file))) agg.add_line(l, p);
}

}  // namespace mx::logreport::test
