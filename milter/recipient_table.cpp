// recipient_table: table mode — the RCPT decision table as a Postfix access(5) `lmdb:` table,
// for `smtpd_recipient_restrictions = check_recipient_access lmdb:<table>`, so that Postfix
// decides in-process, without a milter round trip per RCPT (docs/postfix.md, "Table mode").
//
// Postfix looks up user+ext@domain as: user+ext@domain, user@domain (recipient_delimiter),
// domain, then ".parent" keys, then user@ — the first key found wins, and DUNNO stops the search.
// So the same decision table as recipient_check.hpp becomes:
//   alice@example.com        DUNNO                       a mailbox of the domain's connector
//   postmaster@example.com   DUNNO                       accept_postmaster, exact domains
//   example.com              DUNNO                       the domain has a catch-all mailbox
//   example.com              550 5.1.1 User unknown      an active connector's domain
//   .example.com             550 5.1.1 User unknown      a subdomain pattern
//   off.test                 450 4.2.1 Mailbox temporarily unavailable   inactive connector
// Postfix prefixes each reply text with "<address>: Recipient address rejected: ", which gives
// exactly the milter's default texts.
// What the table cannot say (written to the log at each rewrite, see render()): a "." connector
// (every domain; no key matches every domain), postmaster@ under subdomain patterns, mailbox keys
// Postfix would never look up (quoted local parts, spaces, control characters). For those the
// milter is the way.
// Security: keys come from the store (validated by mxctl) and are re-checked here: no
// whitespace, no control characters, at most 255 octets; values are our fixed texts plus the
// configured reject_text, made one line.
#include <spdlog/spdlog.h>

#include <map>

#include "global/logging.hpp"
#include "milter.hpp"

namespace mx::milter {
namespace {

constexpr std::string_view postfix_prefix = "{address}: Recipient address rejected: ";

// Postfix's reply text after "550 5.1.1 <address>: Recipient address rejected: ".
std::string unknown_user_text(const check_policy& p) {
    std::string t = p.reject_text;
    if (t.compare(0, postfix_prefix.size(), postfix_prefix) == 0)
        t.erase(0, postfix_prefix.size());
    else
        t = "User unknown";  // any other shape would repeat the address Postfix already prints
    for (char& c : t)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    if (t.size() > 400) t.resize(400);
    return t.empty() ? "User unknown" : t;
}

bool usable_key(std::string_view k) {
    if (k.empty() || k.size() > 255) return false;
    for (char c : k) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f || c == '"' || c == '\\') return false;
    }
    return true;
}

}  // namespace

recipient_entries render_recipient_table(store_view& v, const check_policy& p) {
    recipient_entries out;
    auto& t = out.table;
    std::map<std::string, bool, std::less<>> active;
    for (const auto& c : v.connectors()) active[c.name] = c.active;
    const std::string unknown = "550 5.1.1 " + unknown_user_text(p);
    for (const auto& [pattern, owner] : v.domains()) {
        if (pattern == ".") {
            out.unexpressed.push_back("connector " + owner +
                                      " serves \".\" (every domain), which no key matches: "
                                      "its unknown recipients are accepted, then bounced");
            continue;
        }
        auto name = pattern.front() == '.' ? std::string_view(pattern).substr(1)
                                           : std::string_view(pattern);
        if (!plain_domain(name)) {
            out.unexpressed.push_back("domain pattern " + pattern +
                                      " is not a plain domain: its recipients are not checked");
            continue;
        }
        auto a = active.find(owner);
        if (a == active.end())
            t[pattern] = "451 4.3.0 Temporary lookup failure";
        else if (!a->second)
            t[pattern] = "450 4.2.1 Mailbox temporarily unavailable";
        else
            t[pattern] = unknown;
        if (a != active.end() && a->second && p.accept_postmaster) {
            if (pattern.front() == '.')
                out.unexpressed.push_back("postmaster@ under " + pattern +
                                          " is refused unless it has a mailbox");
            else
                t["postmaster@" + pattern] = "DUNNO";
        }
    }
    std::size_t skipped = 0;
    v.for_each_mailbox([&](const mailbox& m) {
        auto at = m.address.rfind('@');
        if (at == std::string::npos) return true;
        std::string_view domain = std::string_view(m.address).substr(at + 1);
        // The milter accepts a mailbox only on the connector that serves its domain.
        auto dm = v.match_domain(domain);
        if (!dm || dm->connector != m.connector) return true;
        auto a = active.find(m.connector);
        if (a == active.end() || !a->second) return true;             // the domain's 450 answers
        std::string key = at == 0 ? std::string(domain) : m.address;  // "@d": catch-all
        if (!usable_key(key)) {
            ++skipped;
            return true;
        }
        t[key] = "DUNNO";
        return true;
    });
    if (skipped)
        out.unexpressed.push_back(std::to_string(skipped) +
                                  " mailbox address(es) (quotes, spaces, control characters) "
                                  "have no key: Postfix refuses them");
    return out;
}

}  // namespace mx::milter
