// sendmail_cf: parsing of a generated sendmail.cf and the static checks of our wiring (see
// sendmail_cf.hpp).
#include "doctor/sendmail_cf.hpp"

#include <algorithm>
#include <filesystem>
#include <sstream>

namespace mx::admin::doctor::sendmail {
namespace {

constexpr const char* rebuild =
    " (postfix-conf/sendmail.mc, docs/sendmail.md), rebuild sendmail.cf (Debian: "
    "sendmailconfig) and restart sendmail";

std::string trim(std::string_view s) {
    auto b = s.find_first_not_of(" \t\r");
    if (b == std::string_view::npos) return {};
    auto e = s.find_last_not_of(" \t\r");
    return std::string(s.substr(b, e - b + 1));
}

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        auto p = s.find(sep, start);
        if (p == std::string_view::npos) p = s.size();
        if (auto t = trim(s.substr(start, p - start)); !t.empty()) out.push_back(t);
        start = p + 1;
    }
    return out;
}

// The logical lines: continuation lines (leading blank) joined with one blank, comments and
// empty lines dropped.
std::vector<std::string> logical_lines(std::string_view text) {
    std::vector<std::string> out;
    bool last_is_comment = true;
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(start, end - start);
        start = end + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) {
            last_is_comment = true;
            continue;
        }
        if (line.front() == ' ' || line.front() == '\t') {
            if (!last_is_comment && !out.empty()) out.back() += " " + trim(line);
            continue;
        }
        last_is_comment = line.front() == '#';
        if (!last_is_comment) out.emplace_back(line);
    }
    return out;
}

// "name, K=V, K=V, A=rest of the line" (X and M lines; A= is the last field and may hold
// anything). Returns the name; fields by their one-letter key.
std::string fields_of(const std::string& body, std::map<char, std::string>& fields) {
    auto comma = body.find(',');
    std::string name = trim(body.substr(0, comma));
    if (comma == std::string::npos) return name;
    std::string rest = body.substr(comma + 1);
    while (!rest.empty()) {
        std::string t = trim(rest);
        if (t.size() >= 2 && t[1] == '=' && t[0] == 'A') {
            fields['A'] = trim(t.substr(2));
            break;
        }
        auto c = rest.find(',');
        std::string f = trim(rest.substr(0, c));
        if (f.size() >= 2 && f[1] == '=') fields[f[0]] = trim(f.substr(2));
        if (c == std::string::npos) break;
        rest = rest.substr(c + 1);
    }
    return name;
}

void parse_k(const std::string& body, cf& c) {
    std::istringstream in(body);
    map_def m;
    in >> m.name >> m.map_class;
    if (m.name.empty()) return;
    std::string w;
    std::vector<std::string> rest;
    while (in >> w) {
        if (rest.empty() && w.front() == '-')
            m.flags.push_back(w);
        else
            rest.push_back(w);
    }
    for (const auto& r : rest) m.argument += (m.argument.empty() ? "" : " ") + r;
    c.maps[m.name] = std::move(m);
}

// Findings of one kind, appended to `out`.
void fail(std::vector<result>& out, std::string msg, std::string fix) {
    out.push_back({false, std::move(msg), std::move(fix)});
}
void pass(std::vector<result>& out, std::string msg) {
    out.push_back({true, std::move(msg), {}});
}

std::string list_text(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
    return s.empty() ? "empty" : s;
}

void check_milter(const cf& c, const expected& want, std::vector<result>& out) {
    const filter* ours = nullptr;
    std::vector<std::string> others;
    for (const auto& [name, f] : c.filters) {
        if (same_socket(f.socket, want.milter))
            ours = &f;
        else
            others.push_back(name + " S=" + f.socket);
    }
    if (!ours) {
        fail(out,
             "no milter (X line) names mx-milter's socket " + want.milter_spec + " (" +
                 (others.empty() ? std::string("no X line at all") : list_text(others)) +
                 "): Sendmail accepts mail for unknown recipients",
             "add the INPUT_MAIL_FILTER line" + std::string(rebuild));
        return;
    }
    bool ok = true;
    if (ours->flags.find('T') == std::string::npos) {
        ok = false;
        bool reject = ours->flags.find('R') != std::string::npos;
        fail(out,
             "milter " + ours->name + " has F=" + (ours->flags.empty() ? "" : ours->flags) +
                 " instead of F=T: while mx-milter is down Sendmail would " +
                 (reject ? "reject every message permanently" : "accept mail unchecked"),
             "use F=T in its INPUT_MAIL_FILTER line" + std::string(rebuild));
    }
    if (std::find(c.input_filters.begin(), c.input_filters.end(), ours->name) ==
        c.input_filters.end()) {
        ok = false;
        fail(out,
             "milter " + ours->name + " is not in InputMailFilters (" +
                 (c.has_input_filters ? list_text(c.input_filters) : std::string("not set")) +
                 "): Sendmail never calls it",
             "declare it with INPUT_MAIL_FILTER (not MAIL_FILTER)" + std::string(rebuild));
    }
    if (ok)
        pass(out, "milter " + ours->name + " names " + ours->socket +
                      " with F=T and is in InputMailFilters");
}

bool map_is_ours(const map_def& m, const expected& want) {
    postfix::milter_endpoint smap{true, want.socketmap, {}, {}};
    return m.map_class == "socket" && !want.socketmap.empty() && same_socket(m.argument, smap);
}

bool check_mailertable(const cf& c, const expected& want, std::vector<result>& out) {
    std::string line = "FEATURE(`mailertable', `socket local:" +
                       (want.socketmap.empty() ? std::string("SOCKETMAP") : want.socketmap) + "')";
    if (want.socketmap.empty()) {
        fail(out, "[milter] socketmap is disabled: Sendmail's mailertable has nothing to ask",
             "set [milter] socketmap (default: socketmap.sock in run_dir) and restart mx-milter");
        return false;
    }
    auto it = c.maps.find("mailertable");
    if (it == c.maps.end()) {
        fail(out,
             "no mailertable map (K mailertable): connector domains are not routed to the " +
                 want.mailer + " mailer",
             "add " + line + std::string(rebuild));
        return false;
    }
    if (!map_is_ours(it->second, want)) {
        fail(out,
             "mailertable is '" + it->second.map_class + " " + it->second.argument +
                 "', not mx-milter's socketmap " + want.socketmap,
             "use " + line + std::string(rebuild));
        return false;
    }
    pass(out, "mailertable is mx-milter's socketmap " + want.socketmap);
    return true;
}

void check_relay(const cf& c, const expected& want, std::vector<result>& out) {
    static const std::vector<std::string> known = {"domain", "mailbox", "connector", "mailertable"};
    bool have_domain = false;
    for (const auto& [name, m] : c.maps) {
        if (!map_is_ours(m, want)) continue;
        if (name == "domain") have_domain = true;
        if (std::find(known.begin(), known.end(), name) == known.end())
            fail(out,
                 "map " + name +
                     " asks mx-milter's socketmap, which knows no map of that name "
                     "(it answers domain, mailbox, connector, mailertable)",
                 "rename the K line's map (Sendmail sends the K name)" + std::string(rebuild));
    }
    if (!have_domain) {
        fail(out,
             "no map 'domain' on mx-milter's socketmap (Kdomain socket -T<TMPF> local:" +
                 want.socketmap +
                 "): Sendmail does not relay to connector domains (550 5.7.1 "
                 "Relaying denied)",
             "add the LOCAL_CONFIG Kdomain line and the SLocal_check_rcpt rules" +
                 std::string(rebuild));
        return;
    }
    for (const auto& [name, rules] : c.rulesets)
        for (const auto& r : rules)
            if (r.find("$(domain ") != std::string::npos) {
                pass(out, "connector domains are relay domains (ruleset " + name +
                              " asks the domain map)");
                return;
            }
    fail(out,
         "no rule asks the domain map: Sendmail does not relay to connector domains (550 5.7.1 "
         "Relaying denied)",
         "add the SLocal_check_rcpt rules (merge them into yours if you have that ruleset)" +
             std::string(rebuild));
}

const mailer* check_mailer(const cf& c, const expected& want, std::vector<result>& out) {
    auto it = c.mailers.find(want.mailer);
    if (it == c.mailers.end()) {
        fail(out,
             "no mailer " + want.mailer + " (M" + want.mailer +
                 " line): mail for connector domains cannot be delivered (mx-milter's "
                 "mailertable routes it to " +
                 want.mailer + ")",
             "add the MAILER_DEFINITIONS M" + want.mailer + " lines" + std::string(rebuild));
        return nullptr;
    }
    const mailer& m = it->second;
    std::size_t before = out.size();
    if (m.program.empty())
        fail(out, "mailer " + m.name + " has no P= (program)",
             "use the M" + m.name + " lines" + std::string(rebuild));
    if (m.flags.find('m') != std::string::npos)
        fail(out,
             "mailer " + m.name +
                 " has F=m (many recipients per call): sendmail-drop takes "
                 "one recipient",
             "remove m from F=" + std::string(rebuild));
    if (m.user.empty())
        fail(out,
             "mailer " + m.name +
                 " has no U=: it would run as Sendmail's default account, which cannot write "
                 "into the drop folders",
             "set U= to the daemon account (user in mx-connector.toml)" + std::string(rebuild));
    std::istringstream argv(m.argv);
    std::vector<std::string> words;
    for (std::string w; argv >> w;) words.push_back(w);
    std::vector<std::string> args(words.empty() ? words.begin() : words.begin() + 1, words.end());
    if (args != std::vector<std::string>{"$h", "$g", "$u"})
        fail(out,
             "mailer " + m.name + " has A=" + m.argv +
                 ": sendmail-drop needs the arguments $h $g $u (drop folder, sender, recipient)",
             "use A=sendmail-drop $h $g $u" + std::string(rebuild));
    if (out.size() == before)
        pass(out, "mailer " + m.name + " runs " + m.program + " as " + m.user);
    return &m;
}

}  // namespace

cf parse_cf(std::string_view text) {
    cf c;
    std::string ruleset;
    for (const auto& line : logical_lines(text)) {
        char kind = line.front();
        std::string body = line.substr(1);
        if (kind == 'O') {
            auto eq = body.find('=');
            if (trim(body.substr(0, eq)) == "InputMailFilters") {
                c.has_input_filters = true;
                c.input_filters = eq == std::string::npos ? std::vector<std::string>{}
                                                          : split(body.substr(eq + 1), ',');
            }
        } else if (kind == 'X') {
            std::map<char, std::string> f;
            filter x;
            x.name = fields_of(body, f);
            x.socket = f['S'];
            x.flags = f['F'];
            if (!x.name.empty()) c.filters[x.name] = std::move(x);
        } else if (kind == 'M') {
            std::map<char, std::string> f;
            mailer m;
            m.name = fields_of(body, f);
            m.program = f['P'];
            m.flags = f['F'];
            m.user = f['U'];
            m.argv = f['A'];
            if (!m.name.empty()) c.mailers[m.name] = std::move(m);
        } else if (kind == 'K') {
            parse_k(body, c);
        } else if (kind == 'S') {
            auto end = body.find_first_of("= \t");
            ruleset = trim(body.substr(0, end));
            c.rulesets[ruleset];
        } else if (kind == 'R' && !ruleset.empty()) {
            c.rulesets[ruleset].push_back(body);
        }
    }
    return c;
}

bool same_socket(const std::string& sendmail_spec, const postfix::milter_endpoint& ours) {
    auto e = postfix::parse_libmilter_spec(trim(sendmail_spec));
    if (!e || e->is_unix != ours.is_unix) return false;
    if (e->is_unix)
        return std::filesystem::path(e->path).lexically_normal() ==
               std::filesystem::path(ours.path).lexically_normal();
    auto loop = [](const std::string& h) {
        return h == "localhost" || h == "127.0.0.1" ? std::string("127.0.0.1") : h;
    };
    return e->port == ours.port && loop(e->host) == loop(ours.host);
}

wiring_check check_wiring(const cf& c, const expected& want) {
    wiring_check w;
    check_milter(c, want, w.results);
    w.mailertable_ours = check_mailertable(c, want, w.results);
    if (!want.socketmap.empty()) check_relay(c, want, w.results);
    w.mx_mailer = check_mailer(c, want, w.results);
    return w;
}

std::optional<std::pair<std::string, std::string>> parse_mailertable_answer(
    const std::string& answer) {
    if (answer.rfind("OK ", 0) != 0) return std::nullopt;
    std::string v = answer.substr(3);
    auto colon = v.find(':');
    if (colon == std::string::npos || colon == 0) return std::nullopt;
    return std::make_pair(v.substr(0, colon), v.substr(colon + 1));
}

}  // namespace mx::admin::doctor::sendmail
