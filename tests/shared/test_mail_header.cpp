// The one header parser (global/mail_header) and the header writers (global/mail_compose):
// caps and truncation flags, RFC 5322 unfolding, NUL/CR/LF never surviving, address lists
// with groups, quotes, comments and source routes, single-path fields, field removal.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "global/mail_compose.hpp"
#include "global/mail_header.hpp"

using namespace mx;
using V = std::vector<std::string>;

TEST_CASE("header parse caps every field and the section", "[mail_header]") {
    std::string big(2 * 1024 * 1024, 'a');
    std::string msg =
        "Delivered-To: info@example.test\nX-Big: " + big + "\nSubject: after\n\nbody\n";
    auto h = mail::parse_header_block(msg);
    REQUIRE(h.fields.size() == 3);
    CHECK(h.fields[1].value.size() == 100 * 1024);
    CHECK(h.fields[1].truncated);
    CHECK_FALSE(h.fields[0].truncated);
    CHECK(h.truncated);
    CHECK(h.complete);
    CHECK(h.fields[2].value == "after");
    CHECK(msg.substr(h.section_bytes) == "body\n");

    mail::header_limits small;
    small.max_headers = 2;
    auto few = mail::parse_header_block("A: 1\nB: 2\nC: 3\n\n", small);
    CHECK(few.fields.size() == 2);
    CHECK(few.truncated);
    CHECK_FALSE(few.complete);

    small = {};
    small.max_header_block = 10;
    auto cut = mail::parse_header_block("Subject: a long one\nX: y\n\n", small);
    CHECK(cut.truncated);
    CHECK_FALSE(cut.complete);
    CHECK(cut.section_bytes == 10);
}

TEST_CASE("folded headers are unfolded; CR, LF and NUL never survive", "[mail_header]") {
    // The length comes from the literal (embedded NUL kept, terminator not): a hand-counted 37
    // read 3 bytes past its end (ASan: global-buffer-overflow).
    const char raw[] = "Subject: one\r\n two\r\nX-Nul: a\0b\r\n\r\n";
    std::string msg(raw, sizeof raw - 1);
    auto h = mail::parse_header_block(msg);
    REQUIRE(h.fields.size() == 2);
    CHECK(h.fields[0].value == "one two");
    CHECK(h.fields[1].value.find('\0') == std::string::npos);
}

TEST_CASE("section boundaries: mbox From line, no empty line, leading garbage", "[mail_header]") {
    // RFC 5322 2.2.3: unfolding removes the line break only; the continuation's blanks stay.
    auto hb = mail::parse_header_block("From x\r\nSubject: a\r\n  b\r\nX: 1\r\n\r\nBody: no\r\n");
    CHECK(hb.get("subject").value() == "a  b");
    CHECK(!hb.get("Body"));
    CHECK(hb.complete);
    CHECK(hb.well_formed);

    auto no_blank = mail::parse_header_block("Subject: s\nthis is body text\n");
    CHECK(no_blank.well_formed);
    CHECK_FALSE(no_blank.complete);
    CHECK(no_blank.section_bytes == 11);

    CHECK_FALSE(mail::parse_header_block("just text\nSubject: s\n\n").well_formed);
    CHECK_FALSE(mail::parse_header_block(" continuation of nothing\n\n").well_formed);
    CHECK(mail::parse_header_block("").fields.empty());
}

TEST_CASE("address lists: names, quotes, comments, groups", "[mail_header]") {
    CHECK(mail::extract_addresses("a@b.c") == V{"a@b.c"});
    CHECK(mail::extract_addresses("\"Doe, John\" <j@d.e>, x@y.z (comment, here)") ==
          V{"j@d.e", "x@y.z"});
    CHECK(mail::extract_addresses("undisclosed-recipients:;").empty());
    CHECK(mail::extract_addresses("undisclosed-recipients:").empty());
    CHECK(mail::extract_addresses("x:").empty());
    CHECK(mail::extract_addresses("team: a@b.c, <d@e.f>;, g@h.i") == V{"a@b.c", "d@e.f", "g@h.i"});
    CHECK(mail::extract_addresses(
              "Team: a@example.test, \"B, C\" <b@example.test>;, d@example.test (Dee)") ==
          V{"a@example.test", "b@example.test", "d@example.test"});
    CHECK(mail::extract_addresses("<@route:a@b.c>") == V{"a@b.c"});
    CHECK(mail::extract_addresses("\"unterminated <x@y.z>").size() <= 1);
    CHECK(mail::extract_addresses("<<<>>>(((").empty());
    CHECK(mail::extract_addresses("<<<<").empty());
    // A bare token with blanks is a display name, not an address.
    CHECK(mail::extract_addresses("John Doe a@b.c").empty());
    CHECK(mail::extract_addresses("<\"a b\"@c.d>") == V{"\"a b\"@c.d"});
    CHECK(mail::extract_addresses("a@b.c, d@e.f, g@h.i", 2) == V{"a@b.c", "d@e.f"});
    CHECK(mail::first_address("Mail Delivery System <MAILER-DAEMON@x.y>") == "MAILER-DAEMON@x.y");
    CHECK_FALSE(mail::first_address("<>"));
}

TEST_CASE("single-path fields keep the null sender", "[mail_header]") {
    CHECK(mail::path_address("Name <a@b>") == "a@b");
    CHECK(mail::path_address("a@b (comment)") == "a@b");
    CHECK(mail::path_address("<>").empty());
    CHECK(mail::path_address("  <postmaster> ") == "postmaster");
}

TEST_CASE("header utilities", "[mail_header]") {
    CHECK(mail::remove_fields(
              "To: a@b.c\r\nBcc: x@y.z,\r\n  w@v.u\r\nSubject: s\r\n\r\nBcc: body\r\n", {"Bcc"}) ==
          "To: a@b.c\r\nSubject: s\r\n\r\nBcc: body\r\n");
    CHECK(mail::single_line("a\r\nb\tc\x01") == "a b c");
    CHECK(mail::quoted_printable("caf\xc3\xa9 = ok \n") == "caf=C3=A9 =3D ok=20\r\n");
    auto folded = mail::header_line("Subject", std::string(50, 'a') + " " + std::string(50, 'b'));
    CHECK(folded == "Subject: " + std::string(50, 'a') + "\r\n " + std::string(50, 'b') + "\r\n");
    CHECK(mail::rfc5322_date(0) == "Thu, 01 Jan 1970 00:00:00 +0000");
}
