// address: parsing and normalisation of e-mail addresses and connector domain patterns.
//
// Promises: every address the product compares goes through here, so the milter, the
// importer and mxctl agree on what "the same address" means:
// - `<>` and source routes are stripped; the domain is case-folded and IDNA2008/UTS#46
//   normalised (UTF-8 and xn-- forms are the same domain);
// - the local part is compared case-insensitively (ASCII folding; UTF-8 bytes kept);
// - a quoted local part that needs no quoting is unquoted ("bob"@d is bob@d);
// - subaddresses (bob+tag@d) and catch-alls (@d) are derived here, nowhere else.
// Security: input is hostile (SMTP arguments, dropped files): lengths are bounded (local part
// 64, domain 253, whole address 254 octets), NUL/CR/LF and bare 8-bit without SMTPUTF8 are
// refused, and a normalised address never contains '/', "..", or control characters in its
// domain, so it can be used to build paths after path-safe encoding (see maildir_path()).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace mx {

struct address {
    std::string local;   // normalised local part (unquoted when possible, ASCII lower-cased)
    std::string domain;  // ASCII (A-label) lower-case domain, or a lower-cased [literal]

    std::string str() const {
        std::string s;
        s.reserve(local.size() + 1 + domain.size());
        return s.append(local).append(1, '@').append(domain);
    }
    bool operator==(const address&) const = default;
};

struct address_error {
    std::string reason;  // short, for the SMTP reply and CLI errors
};

struct parse_options {
    bool brackets_required = false;  // SMTP argument form "<a@d>"
    bool smtputf8 = true;            // non-ASCII allowed
};

std::variant<address, address_error> parse_address(std::string_view input,
                                                   const parse_options& opts = {});

// Normalises a domain (IDNA to A-labels, lower case, no trailing dot); nullopt if invalid.
std::optional<std::string> normalize_domain(std::string_view domain, std::string* why = nullptr);

// A connector domain pattern: "example.com" (exact), ".example.com" (every subdomain, not the
// domain itself, like Postfix's parent_domain_matches_subdomains), "." (every domain).
std::optional<std::string> normalize_domain_pattern(std::string_view pattern,
                                                    std::string* why = nullptr);

// "bob+tag" -> "bob" with delimiter '+'; nullopt when there is no extension.
std::optional<std::string> strip_extension(std::string_view local, std::string_view delimiter);

// The catch-all key of a domain: "@example.com".
inline std::string catch_all_key(std::string_view domain) {
    return "@" + std::string(domain);
}

// UTF-8 display form of an A-label domain (for humans; never for comparisons).
std::string domain_to_unicode(std::string_view ascii_domain);

}  // namespace mx
