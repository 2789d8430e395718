// smtp_route: which SMTP server a connector sends through, and how (the one place that
// resolves connector settings against the installation's [smtp] defaults).
//
// Rules:
// - connector smtp.host empty: the installation-wide [smtp] server (host, port, security),
//   except for Google/Microsoft authentication, whose well-known submission servers are
//   used (smtp.gmail.com / smtp.office365.com, 587, STARTTLS).
// - smtp.security unset: the [smtp] default; port 0: 25 (none), 587 (starttls), 465 (tls).
// - TLS trust (ca_file, verify_peer) and timeouts always come from [smtp].
// - Google and Microsoft always use XOAUTH2; Generic uses the connector's mechanism.
#pragma once

#include <string>

#include "global/config.hpp"
#include "global/model.hpp"

namespace mx {

struct smtp_route {
    std::string connector;  // empty: the installation default
    std::string host;
    int port = 25;
    tls_mode security = tls_mode::none;
    auth_method auth = auth_method::none;
    sasl_mechanism mechanism = sasl_mechanism::automatic;
    std::string username;  // Generic: the connector's; Google/Microsoft: the sending mailbox
    bool allow_plaintext_auth = false;
    std::string ca_file;
    bool verify_peer = true;
    int timeout_seconds = 60;
    bool installation_default = false;  // the host came from [smtp]

    // smtp://host:port/<ehlo> or smtps://... (IPv6 literals bracketed).
    std::string url(const std::string& ehlo_name) const;
    // "smtp://host:port (starttls, generic PLAIN as 'user')" — never contains a secret.
    std::string describe() const;
    // Identifies the server for "this server is down" bookkeeping.
    std::string server_key() const;
};

int default_port(tls_mode m);
smtp_route default_smtp_route(const config& cfg);
smtp_route resolve_smtp_route(const config& cfg, const connector& c);

}  // namespace mx
