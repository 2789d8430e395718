// milter_client: a small MTA-side client of the milter wire protocol (version 6), for tests and
// benchmarks of mx-milter. It speaks what Postfix speaks: OPTNEG, macros, CONNECT, MAIL, RCPT,
// ABORT, QUIT — and lets a test send raw bytes. miltertest cannot assert the reply text of an
// RCPT, this can.
// Security: test code only; replies are bounded (1 MB) so a broken daemon cannot exhaust memory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mx::milter_test {

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
    // Connects to a unix socket path; throws std::runtime_error naming the call on failure.
    static client connect_unix(const std::string& path, int timeout_ms = 10000);
    client(client&& o) noexcept
        : fd_(std::exchange(o.fd_, -1)), timeout_ms_(o.timeout_ms_), protocol_(o.protocol_) {}
    client& operator=(client&& o) noexcept;
    client(const client&) = delete;
    client& operator=(const client&) = delete;
    ~client();

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
    int fd() const { return fd_; }

  private:
    explicit client(int fd, int timeout_ms) : fd_(fd), timeout_ms_(timeout_ms) {}
    void read_exact(char* buf, std::size_t n);
    int fd_ = -1;
    int timeout_ms_ = 10000;
    std::uint32_t protocol_ = 0;  // the steps/no-reply bits the milter negotiated
};

// One netstring request/response to a Postfix socketmap server (for socketmap tests).
std::string socketmap_query(const std::string& path, std::string_view request);

}  // namespace mx::milter_test
