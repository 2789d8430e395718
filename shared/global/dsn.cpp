#include "global/dsn.hpp"

#include <cctype>
#include <cstdio>

#include "global/mail_compose.hpp"

namespace mx::dsn {

const char* const default_template =
    "This is the mail system at host {hostname}.\n"
    "\n"
    "I'm sorry to have to inform you that your message could not\n"
    "be delivered to one or more recipients. It's attached below.\n"
    "\n"
    "For further assistance, please send mail to postmaster.\n"
    "\n"
    "If you do so, please include this problem report. You can\n"
    "delete your own text from the attached returned message.\n"
    "\n"
    "                   The mail system\n"
    "\n"
    "{recipients}\n";

namespace {

// One substitution pass so a copied value containing "{sender}" is not expanded again.
std::string expand(std::string_view tpl,
                   const std::vector<std::pair<std::string, std::string>>& vars) {
    std::string out;
    std::size_t i = 0;
    while (i < tpl.size()) {
        if (tpl[i] == '{') {
            bool hit = false;
            for (const auto& [k, v] : vars) {
                if (tpl.compare(i, k.size(), k) == 0) {
                    out += v;
                    i += k.size();
                    hit = true;
                    break;
                }
            }
            if (hit) continue;
        }
        out += tpl[i++];
    }
    return out;
}

// Diagnostic text as an RFC 3464 diagnostic-code: ASCII printable only.
std::string ascii_text(std::string_view v) {
    std::string s = mail::single_line(v, 900);
    for (auto& c : s)
        if (static_cast<unsigned char>(c) >= 127) c = '?';
    return s;
}

bool looks_like_smtp_reply(std::string_view d) {
    return d.size() >= 4 && std::isdigit(static_cast<unsigned char>(d[0])) &&
           std::isdigit(static_cast<unsigned char>(d[1])) &&
           std::isdigit(static_cast<unsigned char>(d[2])) && d[3] == ' ';
}

bool valid_msg_id(std::string_view id) {
    if (id.size() < 5 || id.size() > 900 || id.front() != '<' || id.back() != '>') return false;
    if (id.find('@') == std::string_view::npos) return false;
    for (char c : id.substr(1, id.size() - 2)) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 32 || u >= 127 || c == '<' || c == '>') return false;
    }
    return true;
}

std::string local_part(std::string_view addr) {
    auto at = addr.rfind('@');
    return mail::to_lower(at == std::string_view::npos ? addr : addr.substr(0, at));
}

}  // namespace

std::string normalize_status(std::string_view s) {
    // 5.DDD.DDD with 1-3 digits per sub-code (RFC 3463).
    auto ok_num = [](std::string_view p, std::size_t maxlen) {
        if (p.empty() || p.size() > maxlen) return false;
        for (char c : p)
            if (!std::isdigit(static_cast<unsigned char>(c))) return false;
        return true;
    };
    auto d1 = s.find('.');
    auto d2 = d1 == std::string_view::npos ? d1 : s.find('.', d1 + 1);
    if (d1 != 1 || d2 == std::string_view::npos || s[0] != '5' ||
        !ok_num(s.substr(d1 + 1, d2 - d1 - 1), 3) || !ok_num(s.substr(d2 + 1), 3))
        return "5.0.0";
    return std::string(s);
}

std::string address_field(std::string_view addr) {
    std::string a = mail::single_line(addr, 512);
    for (auto& c : a)
        if (c == ' ') c = '_';  // an address has no spaces; keep the field one token
    if (mail::is_ascii(a)) return "rfc822;" + a;
    // RFC 6533 utf-8-addr-xtext: non-ASCII as \x{HEX}; "\" and "+"/"=" escaped too.
    std::string out = "utf-8;";
    for (std::size_t i = 0; i < a.size();) {
        auto u = static_cast<unsigned char>(a[i]);
        std::uint32_t cp = u;
        std::size_t n = 1;
        if (u >= 0xF0) {
            n = 4;
            cp = u & 0x07;
        } else if (u >= 0xE0) {
            n = 3;
            cp = u & 0x0F;
        } else if (u >= 0xC0) {
            n = 2;
            cp = u & 0x1F;
        }
        if (i + n > a.size()) n = 1;
        for (std::size_t k = 1; k < n; ++k)
            cp = (cp << 6) | (static_cast<unsigned char>(a[i + k]) & 0x3F);
        if (cp < 128 && cp != '\\' && cp != '+' && cp != '=') {
            out += static_cast<char>(cp);
        } else {
            char buf[16];
            std::snprintf(buf, sizeof buf, "\\x{%X}", cp);
            out += buf;
        }
        i += n;
    }
    return out;
}

std::optional<std::string> suppression_reason(std::string_view sender,
                                              const mail::header_block& h) {
    if (sender.empty() || sender == "<>") return "null sender <>";
    auto lp = local_part(sender);
    if (lp == "mailer-daemon") return "sender is MAILER-DAEMON";
    if (lp.rfind("owner-", 0) == 0) return "sender is a list owner address (owner-*)";
    if (lp.size() >= 8 && lp.compare(lp.size() - 8, 8, "-request") == 0)
        return "sender is a list request address (*-request)";
    if (auto as = h.get("Auto-Submitted")) {
        // RFC 3834: anything but "no" (parameters after ';' ignored) is automatic.
        auto v = mail::to_lower(mail::single_line(*as, 100));
        auto semi = v.find(';');
        if (semi != std::string::npos) v = v.substr(0, semi);
        while (!v.empty() && v.back() == ' ') v.pop_back();
        if (v != "no") return "message is Auto-Submitted: " + mail::single_line(*as, 60);
    }
    if (auto ct = h.get("Content-Type")) {
        auto v = mail::to_lower(*ct);
        std::string compact;
        for (char c : v)
            if (c != ' ' && c != '\t' && c != '"') compact += c;
        if (compact.rfind("multipart/report", 0) == 0 &&
            compact.find("report-type=delivery-status") != std::string::npos)
            return "message is itself a delivery status notification";
        if (compact.rfind("message/delivery-status", 0) == 0)
            return "message is itself a delivery status notification";
    }
    if (auto from = h.get("From")) {
        if (auto a = mail::first_address(*from); a && local_part(*a) == "mailer-daemon")
            return "message comes from MAILER-DAEMON";
    }
    if (!mail::is_sendable_address(sender))
        return "sender address is not deliverable as a bounce target: " +
               mail::single_line(sender, 80);
    return std::nullopt;
}

namespace {

// Part 3: the original message, or only its header section when it is larger than the limit
// (cut on a line boundary), CRLF, ending in CRLF; empty when there is no original.
std::string enclosed_original(const input& in, bool headers_only) {
    if (in.original.empty()) return {};
    std::string part3;
    if (headers_only) {
        std::string_view hs = mail::header_section(in.original);
        if (hs.size() > in.size_limit) {
            auto cut = hs.rfind('\n', in.size_limit);
            hs = hs.substr(0, cut == std::string_view::npos ? 0 : cut + 1);
        }
        part3 = mail::to_crlf(hs);
    } else {
        part3 = mail::to_crlf(in.original);
    }
    if (part3.size() >= 2 && part3.compare(part3.size() - 2, 2, "\r\n") != 0) part3 += "\r\n";
    return part3;
}

// Part 2: message/delivery-status.
std::string delivery_status(const input& in, const std::string& host) {
    std::string status;
    status += "Reporting-MTA: dns; " + host + "\r\n";
    if (in.arrival_time > 0)
        status += "Arrival-Date: " + mail::rfc5322_date(in.arrival_time) + "\r\n";
    for (const auto& r : in.recipients) {
        status += "\r\n";
        status += mail::header_line("Final-Recipient", address_field(r.final_recipient));
        if (!r.original_recipient.empty())
            status += mail::header_line("Original-Recipient", address_field(r.original_recipient));
        status += "Action: failed\r\n";
        status += "Status: " + normalize_status(r.status) + "\r\n";
        std::string diag = ascii_text(r.diagnostic.empty() ? "delivery failed" : r.diagnostic);
        std::string type = looks_like_smtp_reply(diag) ? "smtp" : "x-mx-connector";
        status += mail::header_line("Diagnostic-Code", type + "; " + diag);
    }
    return status;
}

// Part 1: the human text from the template, CRLF-terminated; `ascii` says whether it stayed
// 7bit (else quoted-printable).
std::string human_text(const input& in, const std::string& host, const std::string& orig_subject,
                       const std::string& orig_msgid, bool& ascii) {
    std::string rcpt_lines;
    for (const auto& r : in.recipients) {
        rcpt_lines +=
            "<" + mail::single_line(r.final_recipient, 300) + ">: " +
            mail::single_line(r.diagnostic.empty() ? "delivery failed" : r.diagnostic, 900) + "\n";
    }
    std::string human =
        expand(in.human_template,
               {{"{hostname}", host},
                {"{sender}", mail::single_line(in.to, 300)},
                {"{recipients}", rcpt_lines},
                {"{subject}", orig_subject},
                {"{message_id}", orig_msgid},
                {"{arrival_date}", in.arrival_time > 0 ? mail::rfc5322_date(in.arrival_time)
                                                       : std::string("unknown")}});
    ascii = mail::is_ascii(human);
    std::string body = ascii ? mail::to_crlf(human) : mail::quoted_printable(human);
    if (body.size() < 2 || body.compare(body.size() - 2, 2, "\r\n") != 0) body += "\r\n";
    return body;
}

// The From: value: the address alone, or a display name encoded / quoted as it needs.
std::string from_value(const input& in, const std::string& from_addr) {
    std::string display = mail::single_line(in.from_display, 100);
    if (display.empty()) return from_addr;
    if (!mail::is_ascii(display)) return mail::encode_words(display) + " <" + from_addr + ">";
    if (display.find_first_of("\"\\()<>,;:@[].") != std::string::npos) {
        std::string q = "\"";
        for (char c : display) {
            if (c == '"' || c == '\\') q += '\\';
            q += c;
        }
        return q + "\" <" + from_addr + ">";
    }
    return display + " <" + from_addr + ">";
}

}  // namespace

message build(const input& in) {
    message msg;
    std::string host = mail::single_line(in.reporting_mta, 253);
    std::string from_addr =
        in.from_address.empty() ? "MAILER-DAEMON@" + host : mail::single_line(in.from_address, 254);
    auto orig_headers = mail::parse_header_block(in.original);
    std::string orig_subject = mail::single_line(orig_headers.get("Subject").value_or(""), 300);
    std::string orig_msgid = mail::single_line(orig_headers.get("Message-ID").value_or(""), 900);

    // Part 3 content first: the boundary must not occur in anything we enclose.
    msg.headers_only = in.original.size() > in.size_limit;
    const std::string part3 = enclosed_original(in, msg.headers_only);
    const std::string status = delivery_status(in, host);
    bool human_ascii = true;
    const std::string human_body = human_text(in, host, orig_subject, orig_msgid, human_ascii);

    do {
        msg.boundary = mail::make_boundary();
    } while (part3.find(msg.boundary) != std::string::npos ||
             human_body.find(msg.boundary) != std::string::npos);
    msg.message_id = mail::make_message_id(host);

    std::string subject = expand(in.subject, {{"{subject}", orig_subject}});
    std::string out;
    out += mail::header_line("From", from_value(in, from_addr));
    out += mail::header_line("To", mail::single_line(in.to, 254));
    out += mail::header_line("Subject", mail::encode_words(mail::single_line(subject, 300)));
    out += "Date: " + mail::rfc5322_date(in.now) + "\r\n";
    out += "Message-ID: " + msg.message_id + "\r\n";
    if (valid_msg_id(orig_msgid)) {
        out += mail::header_line("In-Reply-To", orig_msgid);
        out += mail::header_line("References", orig_msgid);
    }
    out += "Auto-Submitted: auto-replied\r\n";
    out += "MIME-Version: 1.0\r\n";
    out += "Content-Type: multipart/report; report-type=delivery-status;\r\n";
    out += "\tboundary=\"" + msg.boundary + "\"\r\n";
    out += "\r\n";
    out += "This is a MIME-encapsulated message.\r\n\r\n";
    out += "--" + msg.boundary + "\r\n";
    out += "Content-Description: Notification\r\n";
    out += "Content-Type: text/plain; charset=utf-8\r\n";
    out += std::string("Content-Transfer-Encoding: ") +
           (human_ascii ? "7bit" : "quoted-printable") + "\r\n\r\n";
    out += human_body;
    out += "\r\n--" + msg.boundary + "\r\n";
    out += "Content-Description: Delivery report\r\n";
    out += "Content-Type: message/delivery-status\r\n\r\n";
    out += status;
    if (!part3.empty()) {
        out += "\r\n--" + msg.boundary + "\r\n";
        if (msg.headers_only) {
            out += "Content-Description: Undelivered Message Headers\r\n";
            out += "Content-Type: text/rfc822-headers\r\n";
        } else {
            out += "Content-Description: Undelivered Message\r\n";
            out += "Content-Type: message/rfc822\r\n";
        }
        // message/rfc822 allows only 7bit/8bit/binary; say 8bit when it is.
        out += std::string("Content-Transfer-Encoding: ") +
               (mail::is_ascii(part3) ? "7bit" : "8bit") + "\r\n\r\n";
        out += part3;
    }
    out += "\r\n--" + msg.boundary + "--\r\n";
    msg.bytes = std::move(out);
    return msg;
}

}  // namespace mx::dsn
