// Unit tests of the hostile-input parsing path: header caps, envelope precedence, address
// extraction without mimetic's getters, RFC 2047, MIME structure limits, path encoding, and the
// parse worker's crash/hang recovery.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include "importer_fixture.hpp"
#include "mailbox_path.hpp"
#include "message_parse.hpp"
#include "parse_worker.hpp"

using namespace mx::importer;
namespace mail = mx::mail;
namespace fs = std::filesystem;

TEST_CASE("a header over the cap is cut, the message still parsed", "[parse]") {
    // The caps themselves: tests/shared/test_mail_header.cpp (the one header parser).
    std::string big(2 * 1024 * 1024, 'a');
    std::string msg =
        "Delivered-To: info@example.test\nX-Big: " + big + "\nSubject: after\n\nbody\n";
    auto m = analyse_message(msg);
    CHECK(m.header_truncated);
    CHECK(m.structure_parsed);
    CHECK(m.env.recipients == std::vector<std::string>{"info@example.test"});
}

TEST_CASE("envelope precedence", "[parse][envelope]") {
    SECTION("X-Sender/X-Receiver block first wins") {
        auto e = extract_envelope(mail::parse_header_block(
            "X-Sender: a@x.org\nX-Receiver: <b@example.test>\nX-Receiver: c@example.test\n"
            "Delivered-To: other@example.test\n\n"));
        CHECK(e.source == "x-receiver");
        CHECK(e.sender == "a@x.org");
        CHECK(e.recipients == std::vector<std::string>{"b@example.test", "c@example.test"});
    }
    SECTION("X-Receiver not at the top is not an envelope") {
        auto e = extract_envelope(mail::parse_header_block(
            "Subject: x\nX-Receiver: b@example.test\nTo: t@example.test\n\n"));
        CHECK(e.source == "to-cc");
        CHECK(e.recipients == std::vector<std::string>{"t@example.test"});
    }
    SECTION("topmost Delivered-To only, Return-Path as sender") {
        auto e = extract_envelope(mail::parse_header_block(
            "Return-Path: <>\nDelivered-To: new@example.test\nX-Original-To: orig@example.test\n"
            "Delivered-To: older@elsewhere.example\n\n"));
        CHECK(e.source == "delivered-to");
        CHECK(e.sender_known);
        CHECK(e.sender.empty());
        CHECK(e.recipients == std::vector<std::string>{"new@example.test"});
        CHECK(e.original_recipient == "orig@example.test");
    }
    SECTION("X-Original-To when there is no Delivered-To") {
        auto e = extract_envelope(
            mail::parse_header_block("X-Original-To: orig@example.test\nTo: x@example.test\n\n"));
        CHECK(e.source == "x-original-to");
        CHECK(e.recipients == std::vector<std::string>{"orig@example.test"});
    }
    SECTION("nothing at all") {
        auto e = extract_envelope(mail::parse_header_block("Subject: x\n\nbody"));
        CHECK(e.source == "none");
        CHECK(e.recipients.empty());
    }
}

TEST_CASE("address lists without mimetic: group syntax does not crash", "[parse]") {
    // Address-list parsing itself: tests/shared/test_mail_header.cpp.
    for (const char* to : {"To: undisclosed-recipients:\n", "To: x:\n", "To: :\n", "To: <\n"}) {
        auto m = analyse_message(std::string(to) + "Subject: s\n\nbody\n");
        CHECK(m.env.recipients.empty());
        CHECK(m.structure_parsed);
    }
}

TEST_CASE("RFC 2047 decoding of Subject and From", "[parse][rfc2047]") {
    CHECK(decode_header_text("=?UTF-8?B?R3LDvMOfZQ==?=") == "Grüße");
    CHECK(decode_header_text("=?ISO-8859-1?Q?J=F6rg?= <j@x>") == "Jörg <j@x>");
    CHECK(decode_header_text("plain text") == "plain text");
    // malformed / unknown charsets / control characters: never throws, always one line
    for (const char* bad : {"=?x-unknown?Q?abc?=", "=?UTF-8?B?!!!!?=", "=?UTF-8?Q?a=0Ab=0Dc?=",
                            "=?", "=?UTF-8?", "\xff\xfe\xfd"}) {
        auto s = decode_header_text(bad);
        CHECK(s.find('\n') == std::string::npos);
        CHECK(s.find('\r') == std::string::npos);
    }
    CHECK(decode_header_text(std::string(5000, 'x'), 100).size() <= 100);
}

TEST_CASE("MIME structure: nesting bounded, bodies never decoded", "[parse][mime]") {
    SECTION("10,000 nested multiparts: structure skipped, no crash") {
        std::string msg =
            "Delivered-To: info@example.test\nContent-Type: multipart/mixed; boundary=\"b0\"\n\n";
        for (int i = 1; i < 10000; ++i)
            msg += "--b" + std::to_string(i - 1) + "\nContent-Type: multipart/mixed; boundary=\"b" +
                   std::to_string(i) + "\"\n\n";
        auto m = analyse_message(msg);
        CHECK_FALSE(m.structure_parsed);
        CHECK(m.env.recipients.size() == 1);
    }
    SECTION("moderate nesting is parsed") {
        std::string msg = "Content-Type: multipart/mixed; boundary=\"b0\"\n\n";
        for (int i = 1; i < 50; ++i)
            msg += "--b" + std::to_string(i - 1) + "\nContent-Type: multipart/mixed; boundary=\"b" +
                   std::to_string(i) + "\"\n\n";
        auto m = analyse_message(msg);
        CHECK(m.structure_parsed);
        CHECK(m.mime_parts >= 2);
    }
    SECTION("base64 with invalid characters") {
        std::string msg =
            "Content-Type: multipart/mixed; boundary=X\n\n--X\nContent-Transfer-Encoding: "
            "base64\n\n"
            "||||||||====|||\n--X--\n";
        auto m = analyse_message(msg);
        CHECK(m.structure_parsed);
        CHECK(m.mime_parts == 2);
    }
    SECTION("binary garbage and empty input") {
        std::string garbage;
        std::mt19937 rng(42);
        for (int i = 0; i < 100000; ++i) garbage.push_back(static_cast<char>(rng()));
        auto m = analyse_message(garbage);
        CHECK(m.env.recipients.empty());
        auto e = analyse_message("");
        CHECK_FALSE(e.has_header_block);
    }
}

TEST_CASE("queue id of the MTA that dropped the file, from the topmost Received", "[parse]") {
    // What Postfix's smtpd and pickup and Debian's Sendmail 8.17 write (unfolded).
    CHECK(received_queue_id("from client.test (localhost [127.0.0.1]) by mx.example.org "
                            "(Postfix) with ESMTP id 4Zx9Kq1Lm2z9sT for <a@example.test>; "
                            "Tue, 1 Dec 2026 20:00:00 +0000 (UTC)") == "4Zx9Kq1Lm2z9sT");
    CHECK(received_queue_id("by mx.example.org (Postfix, from userid 0) id 4AbC; Tue, 1 Dec "
                            "2026") == "4AbC");
    CHECK(received_queue_id("from client.test (localhost [127.0.0.1]) by sendmail.mx.test "
                            "(8.17.1.9/8.17.1.9/Debian-2+deb12u2) with ESMTP id "
                            "6B1LYXLs014767 for <info@example.test>; Tue, 1 Dec 2026 21:34:33 "
                            "GMT") == "6B1LYXLs014767");
    CHECK(received_queue_id("by sendmail.mx.test (8.17.1.9/Submit) id 6B1LZ0ab014800; Tue") ==
          "6B1LZ0ab014800");
    // Other MTAs, other comments and odd shapes: no queue id rather than a wrong one.
    CHECK(received_queue_id("from a by b (Exim 4.96) with esmtp id 1qXyZ-000abc-2D") == "");
    CHECK(received_queue_id("from a (8.8.8.8/32) by b with SMTP id XYZ") == "");
    CHECK(received_queue_id("by b (8.17.1.9/8.17.1.9)") == "");
    CHECK(received_queue_id("by b (8") == "");
    CHECK(received_queue_id("by ") == "");
    CHECK(received_queue_id("") == "");
    CHECK(received_queue_id("by b (Postfix) id " + std::string(100, 'a')).size() == 64);
    // Through analyse_message: the topmost Received counts, as the dropping MTA wrote it.
    auto m = analyse_message(
        "Return-Path: <s@sender.test>\nDelivered-To: info@example.test\nReceived: from "
        "client.test (localhost [127.0.0.1])\n\tby sendmail.mx.test "
        "(8.17.1.9/8.17.1.9/Debian-2+deb12u2) with ESMTP id 6B1LYXLs014767\n\tfor "
        "<info@example.test>; Tue, 1 Dec 2026 21:34:33 GMT\nReceived: from x by y (Postfix) "
        "with ESMTP id 4OLDER\nSubject: s\n\nbody\n");
    CHECK(m.queue_id == "6B1LYXLs014767");
}

TEST_CASE("Maildir paths never escape mail_root", "[path]") {
    const fs::path root = "/var/mail/mx";
    for (const char* key :
         {"../../x@example.test", "..@example.test", ".@example.test", "a/b@example.test",
          "%2e%2e@example.test", "x@..", "x@.", "@example.test",
          "a\x01"
          "b@example.test",
          "\xc3\xa4@example.test", "/etc/passwd@x", "x@a/b"}) {
        INFO(key);
        auto p = mailbox_maildir(root, key);
        REQUIRE(p);
        auto rel = p->lexically_relative(root);
        CHECK(std::distance(rel.begin(), rel.end()) == 2);  // exactly <domain>/<local>
        for (const auto& part : rel) {
            CHECK(part != "..");
            CHECK(part != ".");
            CHECK(part.string().find('/') == std::string::npos);
            CHECK(part.string()[0] != '.');
        }
        CHECK(p->lexically_normal() == *p);
    }
    CHECK(mailbox_maildir(root, "info@example.test") == root / "example.test" / "info");
    CHECK(mailbox_maildir(root, "@example.test") == root / "example.test" / "@");
    CHECK(*mailbox_maildir(root, "a%b@x") != *mailbox_maildir(root, "a%25b@x"));  // injective
    CHECK_FALSE(mailbox_maildir(root, "no-at-sign"));
}

TEST_CASE("parse worker: crash and hang are contained, the worker restarts", "[worker]") {
    using mx::importer::testing::spit;
    auto dir = fs::temp_directory_path() / ("mx-worker-test-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    spit(dir / "ok", "Delivered-To: a@example.test\n\nhi\n");
    spit(dir / "crash", "Delivered-To: a@example.test\nX-Mx-Test-Fault: crash\n\nhi\n");
    spit(dir / "hang", "Delivered-To: a@example.test\nX-Mx-Test-Fault: hang\n\nhi\n");
    ::setenv("MX_IMPORTER_FAULT_INJECTION", "1", 1);
    worker_options o;
    o.base_timeout = std::chrono::milliseconds(500);
    parse_worker w(o);
    auto r = w.parse_batch(
        {dir / "ok", dir / "crash", dir / "ok", dir / "hang", dir / "ok", dir / "missing"},
        {0, 0, 0, 0, 0, 0});
    ::unsetenv("MX_IMPORTER_FAULT_INJECTION");
    REQUIRE(r.size() == 6);
    CHECK(r[0].st == parse_result::status::ok);
    CHECK(r[1].st == parse_result::status::crashed);
    CHECK(r[2].st == parse_result::status::ok);
    CHECK(r[3].st == parse_result::status::timeout);
    CHECK(r[4].st == parse_result::status::ok);
    CHECK(r[5].st == parse_result::status::io_error);
    CHECK(r[5].err == ENOENT);
    CHECK(r[0].fingerprint == r[2].fingerprint);
    CHECK(r[0].fingerprint.size() == 64);
    CHECK(w.restarts() == 2);
    fs::remove_all(dir);
}
