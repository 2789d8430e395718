// smtp_dialog: a plain-text SMTP conversation one command at a time, for doctor's checks (the
// greeting of an outgoing server; RCPT probes through Postfix that QUIT before DATA). Sending
// mail is smtp_client's job (libcurl), which cannot stop after RCPT.
// Promises: every read and write has the dialog's deadline; replies are bounded (64 KiB) and
// returned as their last line with control characters blanked (safe to print).
#pragma once

#include <string>

#include "util/socket_io.hpp"

namespace mx::admin::doctor {

class smtp_dialog {
  public:
    // Connects and reads the greeting (throws util::socket_error).
    smtp_dialog(const std::string& host, const std::string& port, int timeout_ms);
    const std::string& greeting() const { return greeting_; }
    // Sends one command line (CRLF added) and returns the reply's last line ("250 2.1.5 Ok").
    std::string command(const std::string& line);
    // QUIT, ignoring errors (the server may already have closed).
    void quit() noexcept;

  private:
    std::string read_reply();
    util::unique_fd fd_;
    int timeout_ms_;
    std::string greeting_;
};

// The first three characters of a reply ("250"), or "" when it is not a reply.
std::string reply_code(const std::string& reply);

}  // namespace mx::admin::doctor
