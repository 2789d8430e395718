// prometheus: helpers for the text exposition format (0.0.4), shared by `mxctl stats` and
// `mxctl log-report --prometheus`. Header-only so the store-free log-report library can use it
// without linking the rest of mx_util.
#pragma once

#include <string>
#include <string_view>

namespace mx::util {

// A label value with backslash, double quote and newline escaped.
inline std::string prometheus_label_value(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

}  // namespace mx::util
