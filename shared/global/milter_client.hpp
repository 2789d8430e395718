// milter_client: a small MTA-side client of the milter wire protocol (version 6), and of Postfix's
// socketmap protocol: what mxctl doctor uses to ask mx-milter, and what the tests and the
// benchmark of mx-milter drive it with. It speaks what Postfix speaks: OPTNEG, macros, CONNECT,
// MAIL, RCPT, ABORT, QUIT — and lets a test send raw bytes (miltertest cannot assert the reply
// text of an RCPT, this can).
// Promises: every wait is bounded by the client's timeout; failures throw std::runtime_error
// (util::socket_error for socket calls) naming what failed.
// Security: replies are bounded (1 MB) so a broken daemon cannot exhaust memory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "global/postfix_conf.hpp"
#include "util/socket_io.hpp"

namespace mx::milter_proto {

// Protocol step flags (SMFIP_*) as on the wire.
inline constexpr std::uint32_t p_noconnect = 0x1, p_nohelo = 0x2, p_nomail = 0x4, p_norcpt = 0x8,
                               p_nobody = 0x10, p_nohdrs = 0x20, p_noeoh = 0x40,
                               p_nounknown = 0x100, p_nodata = 0x200, p_nr_conn = 0x1000,
                               p_nr_mail = 0x4000;

struct reply {
    char cmd = 0;      // 'c' continue, 'r' reject, 't' tempfail, 'y' reply code, 'a' accept...
    std::string data;  // for 'y': "550 5.1.1 text" (without the trailing NUL)

    // "250" for continue, "550"/"451"... for 'y', "5xx"/"4xx" for bare r/t.
    std::string code() const;
    std::string text() const;  // the reply after "code " for 'y'
};

class client {
  public:
    // Connects to a unix socket path; throws util::socket_error naming the call on failure.
    static client connect_unix(const std::string& path, int timeout_ms = 10000);
    // Connects to a libmilter socket spec (unix: or inet:), e.g. [milter] socket.
    static client open(const postfix::milter_endpoint& ep, int timeout_ms = 10000);

    // OPTNEG offering everything Postfix offers; returns the milter's (version, actions, steps).
    struct negotiated {
        std::uint32_t version = 0, actions = 0, protocol = 0;
    };
    negotiated negotiate(std::uint32_t protocol_offer = 0x1fffff);
    // CONNECT and MAIL: no reply (std::nullopt) when the milter negotiated SMFIP_NR_CONN /
    // SMFIP_NR_MAIL, as Postfix does — the MTA then does not wait.
    std::optional<reply> connect(const std::string& hostname, const std::string& ipv4,
                                 std::uint16_t port = 25);
    // Sends macros for a command (e.g. 'R', {{"i","ABC123"}}) — no reply.
    void macros(char for_cmd, const std::vector<std::pair<std::string, std::string>>& kv);
    std::optional<reply> mail(const std::vector<std::string>& args);
    reply rcpt(const std::string& arg);
    void abort();
    void quit();

    void send_packet(char cmd, std::string_view data);
    void send_raw(std::string_view bytes);
    reply read_reply();
    int fd() const { return fd_.get(); }

  private:
    explicit client(util::unique_fd fd, int timeout_ms)
        : fd_(std::move(fd)), timeout_ms_(timeout_ms) {}
    void read_exact(char* buf, std::size_t n);
    util::unique_fd fd_;
    std::string in_;  // bytes received beyond the last reply
    int timeout_ms_ = 10000;
    std::uint32_t protocol_ = 0;  // the steps/no-reply bits the milter negotiated
};

// One netstring request/response to a Postfix socketmap server ("domain example.com" ->
// "OK ..." / "NOTFOUND "); throws util::socket_error / util::netstring_error.
std::string socketmap_query(const std::string& path, std::string_view request,
                            int timeout_ms = 10000);

}  // namespace mx::milter_proto
