// ops import: bulk mailbox import from CSV (header address,connector[,target]) or JSON, for
// `mxctl mailbox import FILE` and the console's upload — one parser, one transaction.
//
// Promises: all or nothing — every row is checked (address, target, connector, duplicates in
// the file or the store) inside one ops::write() transaction; if any row is refused nothing is
// written and import_error lists every refused line (the first max_problems of them), each as
// "SOURCE: line N: what to fix".
// Security: the text is untrusted (an upload); lines are only parsed, never executed, and the
// error list is bounded.
#include <algorithm>
#include <optional>
#include <string_view>

#include "ops.hpp"

namespace mx::ops {
namespace {

constexpr std::size_t max_problems = 100;

// Splits one CSV line (RFC 4180 quoting) into trimmed fields; nullopt on an open quote.
std::optional<std::vector<std::string>> csv_fields(std::string_view line) {
    std::vector<std::string> out(1);
    bool quoted = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
        char c = line[i];
        if (quoted) {
            if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
                out.back().push_back('"');
                ++i;
            } else if (c == '"') {
                quoted = false;
            } else {
                out.back().push_back(c);
            }
        } else if (c == '"') {
            quoted = true;
        } else if (c == ',') {
            out.emplace_back();
        } else {
            out.back().push_back(c);
        }
    }
    if (quoted) return std::nullopt;
    for (auto& f : out) {
        auto s = f.find_first_not_of(" \t");
        auto e = f.find_last_not_of(" \t");
        f = s == std::string::npos ? std::string() : f.substr(s, e - s + 1);
    }
    return out;
}

// Refused lines of one pass, in line order, the first max_problems kept (and all counted).
struct collector {
    std::string source;
    std::vector<std::pair<std::size_t, std::string>> problems;  // line, message
    std::size_t count = 0;
    void add(std::size_t line, const std::string& where, const std::string& what) {
        if (++count <= max_problems)
            problems.emplace_back(line, source + ": " + where + ": " + what);
    }
    void add(const import_row& r, const std::string& what) { add(r.line, r.where, what); }
    // Merges another pass's refusals (line order kept across both).
    void merge(const collector& o) {
        problems.insert(problems.end(), o.problems.begin(), o.problems.end());
        std::stable_sort(problems.begin(), problems.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        if (problems.size() > max_problems) problems.resize(max_problems);
        count += o.count;
    }
    void raise() const {
        if (count == 0) return;
        std::vector<std::string> p;
        for (const auto& [line, msg] : problems) p.push_back(msg);
        if (count > p.size())
            p.push_back("... and " + std::to_string(count - p.size()) + " more refused line(s)");
        throw import_error(std::move(p));
    }
};

// One row of either format; an address that does not normalise is refused (recorded in c,
// nullopt) and the parser goes on with the next line.
std::optional<import_row> make_row(collector& c, std::string where, std::size_t line,
                                   const std::string& address, std::string connector,
                                   std::string target) {
    import_row r;
    r.where = std::move(where);
    r.line = line;
    try {
        r.box.address = normalize_mailbox_arg(address);
    } catch (const op_error& err) {
        c.add(r, err.what());
        return std::nullopt;
    }
    r.box.connector = std::move(connector);
    r.box.target = std::move(target);
    return r;
}

std::vector<import_row> parse_json(std::string_view text, collector& c) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw import_error({c.source + ": invalid JSON: " + e.what()});
    }
    if (j.is_object() && j.contains("mailboxes")) j = j["mailboxes"];
    if (!j.is_array())
        throw import_error({c.source + ": expected a JSON array of {address, connector}"});
    std::vector<import_row> out;
    std::size_t i = 0;
    for (auto& e : j) {
        std::string where = "entry " + std::to_string(++i);
        if (!e.is_object() || !e.contains("address") || !e.contains("connector") ||
            !e["address"].is_string() || !e["connector"].is_string()) {
            c.add(i, where, "needs \"address\" and \"connector\" strings");
            continue;
        }
        if (auto r = make_row(c, std::move(where), i, e["address"].get<std::string>(),
                              e["connector"].get<std::string>(), e.value("target", "")))
            out.push_back(std::move(*r));
    }
    return out;
}

std::vector<import_row> parse_csv(std::string_view text, collector& c) {
    std::vector<import_row> out;
    std::size_t lineno = 0;
    int addr_col = -1, conn_col = -1, target_col = -1;
    while (!text.empty()) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        ++lineno;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty() || line[0] == '#') continue;
        std::string where = "line " + std::to_string(lineno);
        auto f = csv_fields(line);
        if (!f) {
            c.add(lineno, where, "unterminated quote");
            continue;
        }
        if (addr_col < 0) {
            for (std::size_t i = 0; i < f->size(); ++i) {
                int col = static_cast<int>(i);
                if ((*f)[i] == "address") addr_col = col;
                if ((*f)[i] == "connector") conn_col = col;
                if ((*f)[i] == "target") target_col = col;
            }
            if (addr_col < 0 || conn_col < 0)
                throw import_error({c.source + ": " + where +
                                    ": the CSV header must name the columns "
                                    "address,connector[,target]"});
            continue;
        }
        if (static_cast<int>(f->size()) <= std::max(addr_col, conn_col)) {
            c.add(lineno, where, "too few fields (expected address,connector[,target])");
            continue;
        }
        const bool has_target = target_col >= 0 && static_cast<int>(f->size()) > target_col;
        if (auto r = make_row(c, std::move(where), lineno, (*f)[addr_col], (*f)[conn_col],
                              has_target ? (*f)[target_col] : std::string()))
            out.push_back(std::move(*r));
    }
    if (addr_col < 0)
        throw import_error({c.source + ": empty file (expected a header address,connector)"});
    return out;
}

}  // namespace

import_error::import_error(std::vector<std::string> problems)
    : op_error(problems.empty() ? "import refused" : [&] {
          std::string all;
          for (const auto& p : problems) all += (all.empty() ? "" : "\n") + p;
          return all;
      }()),
      problems_(std::move(problems)) {}

namespace {

std::vector<import_row> parse_all(std::string_view text, collector& c) {
    auto first = text.find_first_not_of(" \t\r\n");
    bool json = first != std::string_view::npos && (text[first] == '[' || text[first] == '{');
    return json ? parse_json(text, c) : parse_csv(text, c);
}

// Target specs, then every row in one transaction; `parsed` holds the parser's refusals, so
// one answer lists them all in line order. Any refusal aborts the transaction.
std::size_t add_all(env& e, const std::vector<import_row>& rows, const collector& parsed) {
    collector targets{parsed.source, {}, 0};
    for (const auto& r : rows) {
        try {
            check_target_spec(e.cfg(), r.box.target);
        } catch (const op_error& err) {
            targets.add(r, err.what());
        }
    }
    write(e, [&](store_tx& tx) {
        collector c = parsed;  // a retried transaction starts over
        c.merge(targets);
        collector store{parsed.source, {}, 0};
        for (const auto& r : rows) {
            try {
                tx.add_mailbox(r.box);  // checks before it writes: the tx stays usable
            } catch (const rule_error& err) {
                store.add(r, err.what());
            }
        }
        c.merge(store);
        c.raise();
    });
    return rows.size();
}

}  // namespace

std::vector<import_row> parse_mailbox_import(std::string_view text, const std::string& source) {
    collector c{source, {}, 0};
    auto rows = parse_all(text, c);
    c.raise();
    return rows;
}

std::size_t import_mailboxes(env& e, const std::vector<import_row>& rows,
                             const std::string& source) {
    return add_all(e, rows, collector{source, {}, 0});
}

std::size_t import_mailbox_text(env& e, std::string_view text, const std::string& source) {
    collector parsed{source, {}, 0};
    auto rows = parse_all(text, parsed);
    return add_all(e, rows, parsed);
}

}  // namespace mx::ops
