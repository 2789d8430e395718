// smtp_client: submits one message over SMTP with libcurl (none / STARTTLS required /
// implicit TLS; AUTH PLAIN, LOGIN, CRAM-MD5 or XOAUTH2).
//
// Promises:
// - STARTTLS mode uses CURLUSESSL_ALL: a server that does not offer STARTTLS is refused, never
//   used in plaintext. Certificates are verified unless the route says otherwise.
// - A password or bearer token is never sent over an unencrypted connection unless the route
//   has allow_plaintext_auth; the refusal is a result (failure::config), not an exception.
// - Failures are values (smtp_result) classified for retry decisions; the last server reply
//   is in `detail`. The transcript (when asked for) masks every AUTH payload: secrets never
//   reach logs or mxctl output. No exception crosses into libcurl callbacks.
// - mail_from "" gives the null reverse path MAIL FROM:<>.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "global/smtp_route.hpp"

namespace mx {

struct smtp_credentials {
    enum class kind { none, password, bearer };
    kind type = kind::none;
    std::string username;
    std::string secret;  // password or OAuth2 access token; never logged
};

struct smtp_envelope {
    std::string mail_from;  // empty: <>
    std::vector<std::string> rcpt_to;
};

struct transcript_line {
    char direction;  // '<' server, '>' client, '*' libcurl information
    std::string text;
};

struct smtp_result {
    enum class failure {
        none,
        config,     // refused before connecting (plaintext password, missing credentials)
        connect,    // DNS, TCP, timeout, connection lost: try later
        tls,        // STARTTLS not offered / handshake / certificate
        auth,       // the server refused the credentials (535 and friends)
        temporary,  // 4xx reply to MAIL/RCPT/DATA
        permanent,  // 5xx reply to MAIL/RCPT/DATA
        other,
    };
    failure kind = failure::none;
    int curl_code = 0;
    long smtp_code = 0;
    std::string detail;  // human text: curl's description and the server's last reply
    bool ok() const { return kind == failure::none; }
    // Worth retrying later (everything except a permanent 5xx rejection of the message).
    bool transient() const { return kind != failure::none && kind != failure::permanent; }
    // The server itself is unusable right now (other messages to it would fail too).
    bool server_problem() const {
        return kind == failure::connect || kind == failure::tls || kind == failure::auth ||
               kind == failure::config;
    }
};

std::string_view to_string(smtp_result::failure f);

class smtp_client {
  public:
    smtp_client(smtp_route route, std::string ehlo_name)
        : route_(std::move(route)), ehlo_(std::move(ehlo_name)) {}

    // Sends `message` (CRLF line ends expected; dot-stuffing is libcurl's).
    smtp_result send(const smtp_credentials& cred, const smtp_envelope& env,
                     std::string_view message, std::vector<transcript_line>* transcript = nullptr);
    // Connects, negotiates TLS, authenticates and issues NOOP: a dry run for `mxctl smtp-test`.
    smtp_result probe(const smtp_credentials& cred, std::vector<transcript_line>* transcript);

    const smtp_route& route() const { return route_; }

  private:
    smtp_result run(const smtp_credentials& cred, const smtp_envelope* env,
                    std::string_view message, std::vector<transcript_line>* transcript);
    smtp_route route_;
    std::string ehlo_;
};

}  // namespace mx
