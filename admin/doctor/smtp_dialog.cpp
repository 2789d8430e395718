#include "doctor/smtp_dialog.hpp"

#include <cctype>

namespace mx::admin::doctor {
namespace {

// A reply is complete when a line "NNN " (not "NNN-") ends with LF.
bool complete(const std::string& b) {
    std::size_t start = 0;
    for (;;) {
        auto nl = b.find('\n', start);
        if (nl == std::string::npos) return false;
        if (nl - start < 4 || b[start + 3] == ' ') return true;
        start = nl + 1;
    }
}

std::string last_line(const std::string& b) {
    std::string s = b;
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    auto nl = s.rfind('\n');
    std::string line = nl == std::string::npos ? s : s.substr(nl + 1);
    if (line.size() > 200) line.resize(200);
    for (char& c : line)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    return line;
}

}  // namespace

smtp_dialog::smtp_dialog(const std::string& host, const std::string& port, int timeout_ms)
    : fd_(util::connect_tcp(host, port, std::chrono::milliseconds(timeout_ms)))
    , timeout_ms_(timeout_ms) {
    greeting_ = read_reply();
}

std::string smtp_dialog::read_reply() {
    std::string buf;
    util::read_until(fd_.get(), buf, std::chrono::milliseconds(timeout_ms_), complete);
    return last_line(buf);
}

std::string smtp_dialog::command(const std::string& line) {
    util::write_all(fd_.get(), line + "\r\n", std::chrono::milliseconds(timeout_ms_));
    return read_reply();
}

void smtp_dialog::quit() noexcept {
    try {
        util::write_all(fd_.get(), "QUIT\r\n", std::chrono::milliseconds(1000));
    } catch (const std::exception&) {
    }
}

std::string reply_code(const std::string& reply) {
    if (reply.size() < 3 || !std::isdigit(static_cast<unsigned char>(reply[0])) ||
        !std::isdigit(static_cast<unsigned char>(reply[1])) ||
        !std::isdigit(static_cast<unsigned char>(reply[2])))
        return {};
    return reply.substr(0, 3);
}

}  // namespace mx::admin::doctor
