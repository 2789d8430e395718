// DSN builder, header utilities and suppression rules (pure functions).
#include <catch2/catch.hpp>

#include <mutex>
#include <set>
#include <thread>

#include "global/dsn.hpp"
#include "global/mail_compose.hpp"
#include "global/mail_header.hpp"

using namespace mx;

namespace {

dsn::input sample(std::string_view original) {
    dsn::input in;
    in.reporting_mta = "mx.example.com";
    in.to = "alice@sender.test";
    in.arrival_time = 1700000000;
    in.now = 1700000100;
    in.recipients = {
        {"gone@example.com", "Gone@Example.com", "5.1.1", "mailbox removed before import"},
        {"bad@example.com", "", "5.6.0", "550 5.6.0 message unparseable"}};
    in.original = original;
    return in;
}

const std::string original =
    "From: Alice <alice@sender.test>\r\nTo: gone@example.com\r\nSubject: hello\r\n"
    "Message-ID: <orig-1@sender.test>\r\n\r\nbody line\r\n.\r\n";

// Header section of the whole DSN.
mail::header_block top(const dsn::message& m) {
    return mail::parse_header_block(m.bytes);
}

bool no_bare_lf_or_cr(const std::string& s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
        if (s[i] == '\r' && (i + 1 == s.size() || s[i + 1] != '\n')) return false;
    }
    return true;
}

}  // namespace

TEST_CASE("DSN has the RFC 3464 structure") {
    auto m = dsn::build(sample(original));
    auto h = top(m);
    CHECK(h.get("From").value() == "Mail Delivery System <MAILER-DAEMON@mx.example.com>");
    CHECK(h.get("To").value() == "alice@sender.test");
    CHECK(h.get("Auto-Submitted").value() == "auto-replied");
    CHECK(h.get("Subject").value() == "Undelivered Mail Returned to Sender");
    CHECK(h.get("In-Reply-To").value() == "<orig-1@sender.test>");
    CHECK(h.get("Message-ID").value() == m.message_id);
    // Folded by the builder; RFC 5322 unfolding keeps the fold's tab, single_line collapses it.
    CHECK(mail::single_line(h.get("Content-Type").value()) ==
          "multipart/report; report-type=delivery-status; boundary=\"" + m.boundary + "\"");
    CHECK(no_bare_lf_or_cr(m.bytes));
    // Three parts in order, closing delimiter last.
    auto p1 = m.bytes.find("--" + m.boundary + "\r\nContent-Description: Notification");
    auto p2 = m.bytes.find("--" + m.boundary +
                           "\r\nContent-Description: Delivery report\r\n"
                           "Content-Type: message/delivery-status\r\n\r\n"
                           "Reporting-MTA: dns; mx.example.com\r\n"
                           "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n"
                           "Final-Recipient: rfc822;gone@example.com\r\n"
                           "Original-Recipient: rfc822;Gone@Example.com\r\n"
                           "Action: failed\r\nStatus: 5.1.1\r\n"
                           "Diagnostic-Code: x-mx-connector; mailbox removed before import\r\n\r\n"
                           "Final-Recipient: rfc822;bad@example.com\r\n"
                           "Action: failed\r\nStatus: 5.6.0\r\n"
                           "Diagnostic-Code: smtp; 550 5.6.0 message unparseable\r\n");
    auto p3 =
        m.bytes.find("--" + m.boundary +
                     "\r\nContent-Description: Undelivered Message\r\n"
                     "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" +
                     original);
    REQUIRE(p1 != std::string::npos);
    REQUIRE(p2 != std::string::npos);
    REQUIRE(p3 != std::string::npos);
    CHECK(p1 < p2);
    CHECK(p2 < p3);
    CHECK(m.bytes.size() >= m.boundary.size() + 6);
    CHECK(m.bytes.compare(m.bytes.size() - m.boundary.size() - 6, std::string::npos,
                          "--" + m.boundary + "--\r\n") == 0);
    CHECK(!m.headers_only);
    CHECK(m.bytes.find("<gone@example.com>: mailbox removed before import") != std::string::npos);
}

TEST_CASE("DSN above the size limit carries only the headers") {
    std::string big = original + std::string(60 * 1024, 'x') + "\r\n";
    auto in = sample(big);
    auto m = dsn::build(in);
    CHECK(m.headers_only);
    CHECK(m.bytes.find("Content-Type: text/rfc822-headers") != std::string::npos);
    CHECK(m.bytes.find("xxxxxxxxxx") == std::string::npos);
    CHECK(m.bytes.find("Subject: hello\r\n") != std::string::npos);
    in.size_limit = 100 * 1024;
    CHECK(!dsn::build(in).headers_only);
}

TEST_CASE("DSN: LF-only originals become CRLF; 8-bit content is declared") {
    auto m = dsn::build(sample("Subject: \xc3\xa4\nFrom: a@b.c\n\nZ\xc3\xbcrich\n"));
    CHECK(no_bare_lf_or_cr(m.bytes));
    CHECK(m.bytes.find("Content-Transfer-Encoding: 8bit") != std::string::npos);
}

TEST_CASE("DSN: hostile values cannot inject headers; non-ASCII is RFC 2047 encoded") {
    auto in = sample(original);
    in.to = "alice@sender.test\r\nBcc: victim@evil.test";
    in.subject = "Undeliverable: {subject}";
    std::string orig =
        "Subject: Gr\xc3\xbc\xc3\x9f"
        "e\r\n\tBcc: x@evil.test\r\nMessage-ID: <a\r\nb@x>\r\n\r\nhi\r\n";
    in.original = orig;
    in.from_display = "Postmaster \"Z\xc3\xbcrich\"";
    in.recipients = {
        {"x@example.com\r\nX-Injected: 1", "", "5.1.1\r\nX-Evil: 2", "line1\r\nX-Injected: 2"}};
    auto m = dsn::build(in);
    auto h = top(m);
    for (const auto& f : h.fields) {
        CHECK(!mail::iequals(f.name, "Bcc"));
        CHECK(!mail::iequals(f.name, "X-Injected"));
    }
    CHECK(m.bytes.find("\r\nX-Injected") == std::string::npos);
    CHECK(m.bytes.find("\r\nX-Evil") == std::string::npos);
    CHECK(m.bytes.find("\r\nBcc:") == std::string::npos);  // only inside the enclosed original
    CHECK(h.get("Subject").value() ==
          "=?UTF-8?B?VW5kZWxpdmVyYWJsZTogR3LDvMOfZSBCY2M6IHhAZXZpbC50ZXN0?=");
    CHECK(h.get("From").value().find("=?UTF-8?B?") == 0);
    CHECK(!h.get("In-Reply-To"));  // invalid Message-ID is not copied
    CHECK(m.bytes.find("Status: 5.0.0\r\n") != std::string::npos);
    CHECK(no_bare_lf_or_cr(m.bytes));
}

TEST_CASE("DSN: non-ASCII recipients use RFC 6533 utf-8 address type") {
    CHECK(dsn::address_field("j\xc3\xb6rg@example.com") == "utf-8;j\\x{F6}rg@example.com");
    CHECK(dsn::address_field("a+b@example.com") == "rfc822;a+b@example.com");
    CHECK(dsn::normalize_status("5.1.1") == "5.1.1");
    CHECK(dsn::normalize_status("4.1.1") == "5.0.0");
    CHECK(dsn::normalize_status("5.1") == "5.0.0");
    CHECK(dsn::normalize_status("5.1234.1") == "5.0.0");
}

TEST_CASE("DSN boundaries are unique across threads and absent from the content") {
    std::set<std::string> seen;
    std::mutex mu;
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
        ts.emplace_back([&] {
            for (int i = 0; i < 2000; ++i) {
                auto b = mail::make_boundary();
                std::lock_guard<std::mutex> g(mu);
                seen.insert(b);
            }
        });
    for (auto& t : ts) t.join();
    CHECK(seen.size() == 8000);
    auto m = dsn::build(sample(original));
    CHECK(original.find(m.boundary) == std::string::npos);
}

TEST_CASE("configurable template and subject") {
    auto in = sample(original);
    in.human_template =
        "Host {hostname} could not deliver \"{subject}\" from {sender}:\n{recipients}";
    in.subject = "Returned: {subject}";
    auto m = dsn::build(in);
    CHECK(m.bytes.find("Host mx.example.com could not deliver \"hello\" from alice@sender.test:\r\n"
                       "<gone@example.com>: mailbox removed before import\r\n") !=
          std::string::npos);
    CHECK(top(m).get("Subject").value() == "Returned: hello");
}

TEST_CASE("suppression rules (RFC 3834, RFC 3464, RFC 5321)") {
    auto h = [](std::string s) { return mail::parse_header_block(s); };
    auto plain = h("From: a@b.c\r\nSubject: x\r\n\r\n");
    CHECK(!dsn::suppression_reason("a@b.c", plain));
    CHECK(dsn::suppression_reason("", plain).value().find("null sender") != std::string::npos);
    CHECK(dsn::suppression_reason("<>", plain));
    CHECK(dsn::suppression_reason("MAILER-DAEMON@b.c", plain));
    CHECK(dsn::suppression_reason("owner-list@b.c", plain));
    CHECK(dsn::suppression_reason("list-request@b.c", plain));
    CHECK(dsn::suppression_reason("a@b.c", h("Auto-Submitted: auto-generated\r\n\r\n")));
    CHECK(dsn::suppression_reason("a@b.c", h("Auto-Submitted: auto-replied (vacation)\r\n\r\n")));
    CHECK(!dsn::suppression_reason("a@b.c", h("Auto-Submitted: No\r\n\r\n")));
    CHECK(!dsn::suppression_reason("a@b.c", h("Auto-Submitted: no; x=y\r\n\r\n")));
    CHECK(
        dsn::suppression_reason("a@b.c", h("Content-Type: multipart/report;\r\n "
                                           "report-type=\"delivery-status\"; boundary=x\r\n\r\n")));
    CHECK(!dsn::suppression_reason(
        "a@b.c",
        h("Content-Type: multipart/report; report-type=disposition-notification\r\n\r\n")));
    CHECK(dsn::suppression_reason("a@b.c",
                                  h("From: Mail Delivery System <MAILER-DAEMON@x.y>\r\n\r\n")));
    CHECK(dsn::suppression_reason("a b@c.d", plain));
    CHECK(dsn::suppression_reason("a@b.c\r\nRCPT TO:<x@y>", plain));
}

