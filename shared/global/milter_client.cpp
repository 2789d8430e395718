#include "global/milter_client.hpp"

#include <arpa/inet.h>

#include <cstring>
#include <stdexcept>

#include "util/netstring.hpp"

namespace mx::milter_proto {
namespace {

using ms = std::chrono::milliseconds;

void put32(std::string& s, std::uint32_t v) {
    v = htonl(v);
    s.append(reinterpret_cast<const char*>(&v), 4);
}

std::uint32_t get32(const char* p) {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    return ntohl(v);
}

}  // namespace

std::string reply::code() const {
    switch (cmd) {
        case 'c':
        case 'a':
            return "250";
        case 'r':
            return "5xx";
        case 't':
            return "4xx";
        case 'y':
            return data.substr(0, 3);
    }
    return std::string("?") + cmd;
}

std::string reply::text() const {
    return cmd == 'y' && data.size() > 4 ? data.substr(4) : std::string();
}

client client::connect_unix(const std::string& path, int timeout_ms) {
    return client(util::connect_unix(path, ms(timeout_ms)), timeout_ms);
}

client client::open(const postfix::milter_endpoint& ep, int timeout_ms) {
    if (ep.is_unix) return connect_unix(ep.path, timeout_ms);
    return client(util::connect_tcp(ep.host, ep.port, ms(timeout_ms)), timeout_ms);
}

void client::send_raw(std::string_view bytes) {
    util::write_all(fd_.get(), bytes, ms(timeout_ms_));
}

void client::send_packet(char cmd, std::string_view data) {
    std::string p;
    p.reserve(data.size() + 5);
    put32(p, static_cast<std::uint32_t>(data.size() + 1));
    p.push_back(cmd);
    p.append(data);
    util::write_all(fd_.get(), p, ms(timeout_ms_));
}

void client::read_exact(char* buf, std::size_t n) {
    // Replies may arrive back to back: what is read beyond n bytes waits in in_.
    if (in_.size() < n)
        util::read_until(
            fd_.get(), in_, ms(timeout_ms_), [n](const std::string& b) { return b.size() >= n; },
            n + (1u << 20));
    std::memcpy(buf, in_.data(), n);
    in_.erase(0, n);
}

reply client::read_reply() {
    char hdr[4];
    read_exact(hdr, 4);
    std::uint32_t len = get32(hdr);
    if (len == 0 || len > (1u << 20)) throw std::runtime_error("bad reply length");
    std::string body(len, '\0');
    read_exact(body.data(), len);
    reply r;
    r.cmd = body[0];
    r.data = body.substr(1);
    while (!r.data.empty() && r.data.back() == '\0') r.data.pop_back();
    return r;
}

client::negotiated client::negotiate(std::uint32_t protocol_offer) {
    std::string d;
    put32(d, 6);      // protocol version
    put32(d, 0x1ff);  // every action
    put32(d, protocol_offer);
    send_packet('O', d);
    reply r = read_reply();
    if (r.cmd != 'O' || r.data.size() < 12) throw std::runtime_error("bad OPTNEG reply");
    negotiated n{get32(r.data.data()), get32(r.data.data() + 4), get32(r.data.data() + 8)};
    protocol_ = n.protocol;
    return n;
}

std::optional<reply> client::connect(const std::string& hostname, const std::string& ipv4,
                                     std::uint16_t port) {
    std::string d = hostname;
    d.push_back('\0');
    d.push_back('4');
    std::uint16_t p = htons(port);
    d.append(reinterpret_cast<const char*>(&p), 2);
    d += ipv4;
    d.push_back('\0');
    send_packet('C', d);
    if (protocol_ & p_nr_conn) return std::nullopt;
    return read_reply();
}

void client::macros(char for_cmd, const std::vector<std::pair<std::string, std::string>>& kv) {
    std::string d(1, for_cmd);
    for (const auto& [k, v] : kv) {
        d += k;
        d.push_back('\0');
        d += v;
        d.push_back('\0');
    }
    send_packet('D', d);
}

std::optional<reply> client::mail(const std::vector<std::string>& args) {
    std::string d;
    for (const auto& a : args) {
        d += a;
        d.push_back('\0');
    }
    send_packet('M', d);
    if (protocol_ & p_nr_mail) return std::nullopt;
    return read_reply();
}

reply client::rcpt(const std::string& arg) {
    std::string d = arg;
    d.push_back('\0');
    send_packet('R', d);
    return read_reply();
}

void client::abort() {
    send_packet('A', {});
}

void client::quit() {
    send_packet('Q', {});
}

std::string socketmap_query(const std::string& path, std::string_view request, int timeout_ms) {
    auto fd = util::connect_unix(path, ms(timeout_ms));
    util::write_all(fd.get(), util::netstring(request), ms(timeout_ms));
    std::string in;
    std::optional<std::pair<std::string, std::size_t>> answer;
    util::read_until(fd.get(), in, ms(timeout_ms), [&](const std::string& b) {
        answer = util::parse_netstring(b, 100000);
        return answer.has_value();
    });
    return answer->first;
}

}  // namespace mx::milter_proto
