// recipient_check: the RCPT TO decision, one implementation for mx-milter and `mxctl check`.
//
// Decision table (first match wins):
//   malformed argument (no <>, NUL, >254 octets, 8-bit without SMTPUTF8, empty)
//                                         -> reject   501 5.1.3 Bad recipient address syntax
//   domain served by no connector         -> not-ours (continue: Postfix decides), or reject
//                                            550 5.1.2 when milter.unknown_domain = "reject"
//   connector inactive                    -> tempfail 450 4.2.1 (sender retries; nothing lost)
//   mailbox: exact, then without +ext, then catch-all @domain
//                                         -> accept   (SMFIS_CONTINUE)
//   postmaster@ a served domain           -> accept   (RFC 5321 4.5.1; configurable); the
//                                            importer delivers it to postmaster_target
//   otherwise                             -> reject   550 5.1.1 User unknown
//   store error or anything unexpected    -> tempfail 451 4.3.0 — never a 5xx
// Reply texts never contain CR/LF and have '%' doubled only by the milter (smfi_setreply).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "global/address.hpp"
#include "global/config.hpp"
#include "global/store.hpp"

namespace mx {

enum class decision { accept, reject, tempfail, not_ours };
std::string_view to_string(decision d);

struct check_policy {
    bool reject_unknown_domains = false;
    bool accept_postmaster = true;
    bool hide_existence = false;
    bool smtputf8 = true;
    std::string reject_text = "{address}: Recipient address rejected: User unknown";
    std::string subaddress_delimiter = "+";
    // [cluster] max_staleness in seconds (0: off): mx-milter answers 451 4.3.0 instead of
    // deciding from a replica whose last contact with PostgreSQL is older.
    std::int64_t max_staleness = 0;

    static check_policy from(const config& cfg);
};

// What produced a verdict, for callers that act on it (the milter re-maps the store and
// retries after a store_error); `reason` is text for humans, never parsed.
enum class check_cause {
    table,           // the decision table above decided
    malformed,       // the argument did not parse (501 5.1.3)
    store_error,     // the store could not be read (451 4.3.0)
    internal_error,  // anything unexpected (451 4.3.0)
};

struct check_result {
    decision verdict = decision::tempfail;
    check_cause cause = check_cause::table;
    std::string code;  // "550"; empty for accept / not-ours
    std::string dsn;   // "5.1.1"
    std::string text;  // reply text after code and dsn
    std::string connector;
    std::string mailbox;     // the matching mailbox key
    std::string matched_by;  // exact | subaddress | catch-all | postmaster
    std::string reason;      // why, for humans and logs
    std::optional<address> recipient;

    // "550 5.1.1 <x@d>: Recipient address rejected: User unknown"; empty when no reply.
    std::string reply() const;
};

// A recipient resolved to its mailbox (used by the importer as well).
struct mailbox_match {
    std::string connector;
    std::string mailbox;     // key in the mailboxes table
    std::string matched_by;  // exact | subaddress | catch-all
};
std::optional<mailbox_match> resolve_mailbox(store_view& v, const address& a,
                                             std::string_view subaddress_delimiter);

// Decision for a parsed address (no exception handling: store errors propagate).
check_result check_address(store_view& v, const check_policy& p, const address& a);

// The importer's side of the same decision, for a recipient found in a file of `connector`'s
// drop folder. Built on check_address() so that whatever the milter accepted the importer can
// deliver: an accepted mailbox -> that mailbox; an accepted postmaster@ -> the installation's
// postmaster destination (never a bounce: a bounce of mail to postmaster is backscatter to a
// forged sender); everything the milter would refuse -> no_mailbox (permanent, 5.1.1).
struct import_decision {
    enum class kind { mailbox, postmaster, no_mailbox, tempfail };
    kind what = kind::tempfail;
    std::string mailbox;  // mailbox key (kind::mailbox), or "postmaster@<domain>"
    std::string detail;   // why, for the journal and the reason file
};
import_decision decide_import(store_view& v, const check_policy& p, const address& a,
                              std::string_view connector);

// Full decision for an SMTP RCPT argument (e.g. "<Bob@Example.COM>"): parses it, looks it up
// in one short read transaction, and turns any store failure into 451 4.3.0.
check_result check_recipient(store& s, const check_policy& p, std::string_view smtp_argument,
                             bool brackets_required = true);

}  // namespace mx
