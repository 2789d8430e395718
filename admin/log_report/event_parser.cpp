// event_parser: see event_parser.hpp. Dispatch on the first bytes of the message; every
// branch is a fixed-string compare or a bounded scan.
#include "event_parser.hpp"
#include "event_scan.hpp"

namespace mx::logreport {

namespace {

using detail::angle_value;
using detail::is_digit;
using detail::npos;
using detail::starts;
using detail::sv;
using detail::to_int;

double to_delay(sv s) {
    // "0.02", "1.3", "3605": fixed-point parse; strtod would need a NUL-terminated copy.
    double v = 0;
    std::size_t i = 0, n = 0;
    for (; i < s.size() && is_digit(s[i]) && n < 12; ++i, ++n) v = v * 10 + (s[i] - '0');
    if (n == 0) return -1;
    if (i < s.size() && s[i] == '.') {
        double scale = 0.1;
        for (++i; i < s.size() && is_digit(s[i]); ++i, scale /= 10) v += (s[i] - '0') * scale;
    }
    return v;
}

bool is_dsn(sv s) {
    // d.d{1,3}.d{1,3}
    if (s.size() < 5 || !is_digit(s[0]) || s[1] != '.') return false;
    std::size_t i = 2, n = 0;
    while (i < s.size() && is_digit(s[i])) ++i, ++n;
    if (n == 0 || n > 3 || i >= s.size() || s[i] != '.') return false;
    ++i;
    n = 0;
    while (i < s.size() && is_digit(s[i])) ++i, ++n;
    return n > 0 && n <= 3 && i == s.size();
}

// Envelope tail of reject lines: "from=<s> to=<r> proto=ESMTP helo=<h>" (any subset).
void parse_envelope(sv s, event& ev) {
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && s[i] == ' ') ++i;
        const std::size_t eq = s.find('=', i);
        if (eq == npos) return;
        const sv key = s.substr(i, eq - i);
        sv rest = s.substr(eq + 1);
        sv value;
        std::size_t used;
        if (!rest.empty() && rest[0] == '<') {
            if (key == "helo") {
                // HELO is last and may contain anything: up to the last '>'.
                const std::size_t gt = rest.rfind('>');
                value = rest.substr(1, gt == npos || gt == 0 ? npos : gt - 1);
                used = gt == npos ? rest.size() : gt + 1;
            } else {
                value = angle_value(rest, used);
            }
        } else {
            used = rest.find(' ');
            if (used == npos) used = rest.size();
            value = rest.substr(0, used);
        }
        if (key == "from")
            ev.from = value;
        else if (key == "to")
            ev.to = value;
        else if (key == "helo")
            ev.helo = value;
        i = eq + 1 + used;
        if (i < s.size() && s[i] == ':') return;  // cleanup: "helo=<h>: 5.7.1 text"
    }
}

// Reply "550 5.1.1 <r@d>: text" or "5.7.1 text": code and DSN.
void parse_reply(sv reply, event& ev) {
    ev.reply = reply;
    std::size_t i = 0;
    if (reply.size() >= 4 && is_digit(reply[0]) && is_digit(reply[1]) && is_digit(reply[2]) &&
        (reply[3] == ' ' || reply[3] == '-')) {
        ev.code = reply.substr(0, 3);
        i = 4;
    }
    const std::size_t sp = reply.find(' ', i);
    const sv tok = reply.substr(i, sp == npos ? npos : sp - i);
    if (is_dsn(tok)) ev.dsn = tok;
}

// "STAGE from host[ip]: REPLY; from=<s> to=<r> proto=P helo=<h>" (smtpd, postscreen), or
// "header|body TEXT from host[ip]; from=<s> to=<r> proto=P helo=<h>: REPLY" (cleanup).
bool parse_reject(sv r, event& ev) {
    const std::size_t sp = r.find(' ');
    if (sp == npos || sp == 0) return false;
    ev.stage = r.substr(0, sp);
    sv rest = r.substr(sp + 1);
    const bool content = ev.stage == "header" || ev.stage == "body";
    std::size_t env = rest.rfind("; from=<");
    if (env == npos) env = rest.rfind("; proto=");
    if (content) {
        if (env == npos) return false;
        // client is the last " from host[ip]" before the envelope
        const sv head = rest.substr(0, env);
        const std::size_t f = head.rfind(" from ");
        if (f != npos) split_client(head.substr(f + 6), ev.client_host, ev.client_ip);
        sv tail = rest.substr(env + 2);
        parse_envelope(tail, ev);
        const std::size_t colon = tail.rfind(">: ");
        if (colon != npos) parse_reply(tail.substr(colon + 3), ev);
        return true;
    }
    if (starts(rest, "from ")) {
        rest.remove_prefix(5);
        const std::size_t c = rest.find(": ");
        if (c == npos) return false;
        split_client(rest.substr(0, c), ev.client_host, ev.client_ip);
        rest.remove_prefix(c + 2);
        if (env != npos) env -= (r.size() - rest.size()) - (sp + 1);
    }
    if (env != npos && env <= rest.size()) {
        parse_reply(rest.substr(0, env), ev);
        parse_envelope(rest.substr(env + 2), ev);
    } else {
        parse_reply(rest, ev);
    }
    return true;
}

// "to=<r>, orig_to=<o>, relay=h[ip]:25, conn_use=2, delay=1.2, delays=a/b/c/d, dsn=2.0.0,
// status=sent (250 ok)"; also qmgr's "from=<s>, size=N, nrcpt=M (queue active)" and
// "from=<s>, status=expired, returned to sender".
void parse_kv(sv s, event& ev) {
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t eq = s.find('=', i);
        if (eq == npos) return;
        const sv key = s.substr(i, eq - i);
        const sv rest = s.substr(eq + 1);
        if (key == "status") {
            std::size_t e = 0;
            while (e < rest.size() && rest[e] != ' ' && rest[e] != ',') ++e;
            const sv word = rest.substr(0, e);
            if (word == "sent")
                ev.status = delivery_status::sent;
            else if (word == "deferred")
                ev.status = delivery_status::deferred;
            else if (word == "bounced")
                ev.status = delivery_status::bounced;
            else if (word == "expired")
                ev.status = delivery_status::expired;
            else
                ev.status = delivery_status::other;
            sv after = rest.substr(e);
            if (starts(after, " (")) {
                after.remove_prefix(2);
                if (!after.empty() && after.back() == ')') after.remove_suffix(1);
                ev.status_text = after;
            } else if (starts(after, ", ")) {
                ev.status_text = after.substr(2);
            }
            return;  // status is last; its text may contain anything
        }
        sv value;
        std::size_t used;
        if (!rest.empty() && rest[0] == '<') {
            value = angle_value(rest, used);
        } else {
            used = rest.find(", ");
            if (used == npos) used = rest.size();
            value = rest.substr(0, used);
        }
        if (key == "to")
            ev.to = value;
        else if (key == "orig_to")
            ev.orig_to = value;
        else if (key == "relay")
            ev.relay = value;
        else if (key == "delay")
            ev.delay = to_delay(value);
        else if (key == "delays")
            ev.delays = value;
        else if (key == "dsn")
            ev.dsn = value;
        else if (key == "tls")
            ev.tls = value;
        else if (key == "from")
            ev.from = value;
        else if (key == "size")
            ev.size = to_int(value);
        else if (key == "nrcpt")
            ev.nrcpt = static_cast<std::int32_t>(to_int(value));
        i = eq + 1 + used;
        if (i < s.size() && s[i] == ',') ++i;
        if (i < s.size() && s[i] == ' ') ++i;
    }
}

bool parse_reject_family(sv r, event& ev) {
    struct kind_prefix {
        sv prefix;
        reject_kind kind;
    };
    static constexpr kind_prefix kinds[] = {
        {"reject: ", reject_kind::reject},
        {"milter-reject: ", reject_kind::milter_reject},
        {"reject_warning: ", reject_kind::reject_warning},
        {"hold: ", reject_kind::hold},
        {"discard: ", reject_kind::discard},
        {"milter-hold: ", reject_kind::milter_hold},
        {"milter-discard: ", reject_kind::milter_discard},
    };
    for (const auto& k : kinds) {
        if (starts(r, k.prefix)) {
            ev.kind = event_kind::reject;
            ev.rkind = k.kind;
            if (!parse_reject(r.substr(k.prefix.size()), ev)) ev.kind = event_kind::unparsed;
            return true;
        }
    }
    return false;
}

bool is_warning(sv m) {
    return starts(m, "warning: ") || starts(m, "error: ") || starts(m, "fatal: ") ||
           starts(m, "panic: ");
}

// Chatter that is understood but not counted.
bool is_info(sv daemon, sv m) {
    static constexpr sv quiet_daemons[] = {
        "master",  "postfix-script", "postsuper",       "postlogd", "postqueue", "postdrop",
        "tlsmgr",  "anvil",          "scache",          "postmap",  "postalias", "verify",
        "flush",   "proxymap",       "trivial-rewrite", "tlsproxy", "dnsblog",   "showq",
        "postlog", "sendmail",       "postmulti",       "postconf", "dkimmilter"};
    for (const sv d : quiet_daemons)
        if (daemon == d) return true;
    static constexpr sv prefixes[] = {"lost connection after ",
                                      "timeout after ",
                                      "too many errors after ",
                                      "Anonymous TLS connection",
                                      "Untrusted TLS connection",
                                      "Trusted TLS connection",
                                      "Verified TLS connection",
                                      "SSL_accept error",
                                      "SSL_connect error",
                                      "improper command pipelining",
                                      "connect to ",
                                      "statistics: ",
                                      "CONNECT from ",
                                      "PASS NEW ",
                                      "PASS OLD ",
                                      "DISCONNECT ",
                                      "PREGREET ",
                                      "HANGUP ",
                                      "DNSBL rank ",
                                      "COMMAND ",
                                      "WHITELISTED ",
                                      "BLACKLISTED ",
                                      "ALLOWLISTED ",
                                      "DENYLISTED ",
                                      "NOQUEUE: filter: ",
                                      "host ",
                                      "lost connection with ",
                                      "conversation with ",
                                      "enabling PIX workarounds",
                                      "SASL ",
                                      "auth_",
                                      "message repeated ",
                                      "mapping DSN status",
                                      "setting up TLS",
                                      "server certificate verification failed",
                                      "Host offered STARTTLS",
                                      "discarding EHLO keywords",
                                      "sender non-delivery",
                                      "sender delay notification",
                                      "sender delivery status notification",
                                      "postmaster non-delivery"};
    for (const sv p : prefixes)
        if (starts(m, p)) return true;
    return false;
}

}  // namespace

bool is_queue_id(std::string_view s) noexcept {
    if (s.size() < 6 || s.size() > 32) return false;
    bool hex = true, base52 = true, has_z = false;
    for (const char c : s) {
        const bool digit = is_digit(c);
        if (!(digit || (c >= 'A' && c <= 'F'))) hex = false;
        const bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
        if (!(digit || alpha)) return false;
        // The long form's alphabet has no vowels: this is what tells "4Qv4Zs0bVBz5yk1" from
        // words like "warning" or "statistics".
        switch (c) {
            case 'A':
            case 'E':
            case 'I':
            case 'O':
            case 'U':
            case 'a':
            case 'e':
            case 'i':
            case 'o':
            case 'u':
                base52 = false;
                break;
            case 'z':
                has_z = true;
                break;
            default:
                break;
        }
    }
    return hex || (base52 && has_z && s.size() >= 12);
}

void split_client(std::string_view s, std::string_view& host, std::string_view& ip) noexcept {
    const std::size_t lb = s.find('[');
    if (lb == npos) {
        host = s;
        ip = {};
        return;
    }
    host = s.substr(0, lb);
    const std::size_t rb = s.find(']', lb + 1);
    ip = s.substr(lb + 1, rb == npos ? npos : rb - lb - 1);
}

bool parse_event(const log_line& line, event& ev) noexcept {
    ev = event{};
    sv m = line.message;
    if (m.empty()) return false;

    // Queue ID or NOQUEUE prefix.
    const std::size_t colon = m.find(": ");
    sv r = m;
    bool noqueue = false;
    if (colon != npos && colon >= 6 && colon <= 32) {
        const sv first = m.substr(0, colon);
        if (first == "NOQUEUE") {
            noqueue = true;
            r = m.substr(colon + 2);
        } else if (is_queue_id(first)) {
            ev.queue_id = first;
            r = m.substr(colon + 2);
        }
    }

    if (noqueue || !ev.queue_id.empty()) {
        if (parse_reject_family(r, ev)) return ev.kind != event_kind::unparsed;
        if (noqueue) {
            ev.kind = is_info(line.daemon, m) ? event_kind::info : event_kind::unparsed;
            return ev.kind != event_kind::unparsed;
        }
        if (starts(r, "client=")) {
            sv c = r.substr(7);
            const std::size_t comma = c.find(", ");
            split_client(c.substr(0, comma), ev.client_host, ev.client_ip);
            ev.kind = event_kind::client;
            return true;
        }
        if (starts(r, "to=<")) {
            parse_kv(r, ev);
            ev.kind = event_kind::delivery;
            ev.forwarded =
                ev.status == delivery_status::sent && ev.status_text.find("forwarded as ") != npos;
            return true;
        }
        if (starts(r, "from=<")) {
            parse_kv(r, ev);
            if (ev.status == delivery_status::expired) {
                ev.kind = event_kind::expired;
            } else if (ev.size >= 0 || ev.nrcpt >= 0) {
                ev.kind = event_kind::queued;
            } else {
                ev.kind = event_kind::info;
            }
            return true;
        }
        if (starts(r, "message-id=")) {
            sv id = r.substr(11);
            if (!id.empty() && id.front() == '<') {
                id.remove_prefix(1);
                if (!id.empty() && id.back() == '>') id.remove_suffix(1);
            }
            ev.message_id = id;
            ev.kind = event_kind::message_id;
            return true;
        }
        if (r == "removed") {
            ev.kind = event_kind::removed;
            return true;
        }
        if (starts(r, "uid=") || starts(r, "sender=")) {
            const std::size_t f = r.find("from=<");
            if (f != npos) {
                std::size_t used;
                ev.from = angle_value(r.substr(f + 5), used);
            }
            ev.kind = event_kind::pickup;
            return true;
        }
        static constexpr sv notices[] = {
            "sender non-delivery notification: ", "sender delivery status notification: ",
            "postmaster non-delivery notification: ", "sender delay notification: ",
            "postmaster delay notification: "};
        for (const sv n : notices) {
            if (starts(r, n)) {
                ev.new_queue_id = r.substr(n.size());
                ev.kind = event_kind::notification;
                return true;
            }
        }
        if (is_warning(r) || starts(r, "info: ") || starts(r, "replace: ") ||
            starts(r, "redirect: ") || starts(r, "filter: ") || starts(r, "prepend: ") ||
            starts(r, "resent-message-id=") || starts(r, "skipped, still being delivered") ||
            starts(r, "client=") || starts(r, "orig_queue_id=") || is_info(line.daemon, r)) {
            ev.kind = event_kind::info;
            return true;
        }
        return false;
    }

    if (is_warning(m)) {
        ev.kind = event_kind::warning;
        return true;
    }
    if (starts(m, "connect from ")) {
        split_client(m.substr(13), ev.client_host, ev.client_ip);
        ev.kind = event_kind::connect;
        return true;
    }
    if (starts(m, "disconnect from ")) {
        sv c = m.substr(16);
        const std::size_t sp = c.find(' ');
        split_client(c.substr(0, sp), ev.client_host, ev.client_ip);
        if (sp != npos) ev.counts = c.substr(sp + 1);
        ev.kind = event_kind::disconnect;
        return true;
    }
    if (is_info(line.daemon, m)) {
        ev.kind = event_kind::info;
        return true;
    }
    return false;
}

}  // namespace mx::logreport
