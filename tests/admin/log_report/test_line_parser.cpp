// Line header parsing: every format of the fixtures, tags, year inference, hostile input.
#include <catch2/catch.hpp>

#include "line_parser.hpp"
#include "test_util.hpp"

using namespace mx::logreport;
using namespace mx::logreport::test;

namespace {
// 2024-02-08T21:28:47 as written (local == UTC in these tests) and with a +01:00 zone.
constexpr std::int64_t local_epoch = 1707427727;
constexpr std::int64_t zoned_epoch = 1707427727 - 3600;
}  // namespace

TEST_CASE("every line of every header-format fixture parses to the same fields") {
    struct fmt {
        const char* file;
        std::int64_t first_time;
        line_format format;
    };
    const fmt formats[] = {
        {"syslog-traditional.log", local_epoch, line_format::traditional},
        {"journal-short.log", local_epoch, line_format::traditional},
        {"journal-short-iso.log", zoned_epoch, line_format::rfc3339},
        {"journal-short-iso-colon.log", zoned_epoch, line_format::rfc3339},
        {"rsyslog-rfc3339.log", zoned_epoch, line_format::rfc3339},
        {"rfc3339-nozone.log", local_epoch, line_format::rfc3339},
        {"journal.json", zoned_epoch, line_format::journal_json},
    };
    for (const auto& f : formats) {
        INFO(f.file);
        line_parser p(ref_now);
        const auto lines = read_lines(fixture(f.file));
        REQUIRE(lines.size() == 9);
        log_line l;
        REQUIRE(p.parse(lines[0], l));
        CHECK(l.format == f.format);
        CHECK(l.time == f.first_time);
        // The hour as written; journald stores UTC, so JSON gets the reader's zone (UTC here).
        CHECK(l.hour == (f.format == line_format::journal_json ? 20 : 21));
        CHECK(l.host == "mx1");
        CHECK(l.tag == "postfix/smtpd");
        CHECK(l.syslog_name == "postfix");
        CHECK(l.daemon == "smtpd");
        CHECK(l.pid == 123);
        CHECK(l.message == "connect from mail.example.net[192.0.2.10]");
        REQUIRE(p.parse(lines[4], l));
        CHECK(l.tag == "postfix/submission/smtpd");
        CHECK(l.syslog_name == "postfix");
        CHECK(l.daemon == "smtpd");
        REQUIRE(p.parse(lines[5], l));
        CHECK(l.syslog_name == "postfix-in");
        CHECK(l.daemon == "smtpd");
        CHECK(l.pid == 126);
        REQUIRE(p.parse(lines[8], l));
        CHECK(l.time == f.first_time + 4);
        CHECK(l.daemon == "smtp");
        CHECK(l.message.substr(0, 20) == "3F1A2B4C5D: to=<x@re");
    }
}

TEST_CASE("fractions of a second are kept for RFC 3339 and journal JSON") {
    line_parser p(ref_now);
    log_line l;
    const auto rfc = read_lines(fixture("rsyslog-rfc3339.log"));
    REQUIRE(p.parse(rfc[3], l));
    CHECK(l.usec == 3000);
    const auto js = read_lines(fixture("journal.json"));
    REQUIRE(p.parse(js[3], l));
    CHECK(l.usec == 3000);
    REQUIRE(p.parse("2024-02-08T21:28:47.5Z mx1 postfix/qmgr[1]: x", l));
    CHECK(l.usec == 500000);
    CHECK(l.time == local_epoch);
    REQUIRE(p.parse("Feb 08 21:28:47.123456 mx1 postfix/qmgr[1]: x", l));
    CHECK(l.usec == 123456);
}

TEST_CASE("zone offsets: Z, +hh:mm, +hhmm, negative") {
    line_parser p(ref_now);
    log_line l;
    REQUIRE(p.parse("2024-02-08T21:28:47Z mx1 postfix/qmgr[1]: x", l));
    CHECK(l.time == local_epoch);
    REQUIRE(p.parse("2024-02-08T21:28:47-05:30 mx1 postfix/qmgr[1]: x", l));
    CHECK(l.time == local_epoch + 5 * 3600 + 30 * 60);
    CHECK(l.hour == 21);  // the hour as written: the writer's local hour
    REQUIRE(p.parse("2024-02-08T21:28:47+0100 mx1 postfix/qmgr[1]: x", l));
    CHECK(l.time == zoned_epoch);
}

TEST_CASE("Postfix's real maillog_file header (captured) parses") {
    line_parser p(ref_now);
    log_line l;
    const auto lines = read_lines(fixture("postfix-maillog.log"));
    REQUIRE(lines.size() > 100);
    for (const auto& s : lines) {
        INFO(s);
        REQUIRE(p.parse(s, l));
        CHECK(l.host == "mx");
        CHECK(l.syslog_name.substr(0, 7) == "postfix");
    }
}

TEST_CASE("traditional day forms: space-padded, zero-padded, single digit") {
    line_parser p(ref_now);
    p.set_year(2024);
    log_line a, b, c;
    REQUIRE(p.parse("Feb  8 21:28:47 mx1 postfix/smtpd[1]: x", a));
    REQUIRE(p.parse("Feb 08 21:28:47 mx1 postfix/smtpd[1]: x", b));
    REQUIRE(p.parse("Feb 8 21:28:47 mx1 postfix/smtpd[1]: x", c));
    CHECK(a.time == local_epoch);
    CHECK(b.time == local_epoch);
    CHECK(c.time == local_epoch);
}

TEST_CASE("year inference: the log is not from the future, and New Year rolls over") {
    // Read on 2025-01-01 12:00 UTC: December is last year, January this year.
    line_parser p(1735732800);
    log_line l;
    const auto lines = read_lines(fixture("new-year.log"));
    REQUIRE(p.parse(lines[0], l));
    CHECK(l.time == 1735689598);  // 2024-12-31T23:59:58Z
    REQUIRE(p.parse(lines[2], l));
    CHECK(l.time == 1735689601);  // 2025-01-01T00:00:01Z
    // The same file read in March 2025: still Dec 2024 -> Jan 2025.
    line_parser q(1741000000);
    REQUIRE(q.parse(lines[0], l));
    CHECK(l.time == 1735689598);
    REQUIRE(q.parse(lines[4], l));
    CHECK(l.time == 1735689602);
    // A June log read in March: last year's June.
    line_parser r(1741000000);
    REQUIRE(r.parse("Jun  1 00:00:00 mx1 postfix/qmgr[1]: x", l));
    CHECK(l.time == 1717200000);  // 2024-06-01
    // --year overrides inference.
    line_parser s(1741000000);
    s.set_year(2020);
    REQUIRE(s.parse("Jun  1 00:00:00 mx1 postfix/qmgr[1]: x", l));
    CHECK(l.time == 1590969600);  // 2020-06-01
}

TEST_CASE("tags without pid and with several components") {
    line_parser p(ref_now);
    log_line l;
    REQUIRE(
        p.parse("Feb  8 21:28:47 mx1 postfix/postfix-script: starting the Postfix mail system", l));
    CHECK(l.pid == -1);
    CHECK(l.daemon == "postfix-script");
    REQUIRE(p.parse("Feb  8 21:28:47 mx1 postfix/relay/smtp[77]: ABCDEF1234: to=<a@b>", l));
    CHECK(l.daemon == "smtp");
    CHECK(l.syslog_name == "postfix");
    CHECK(l.message == "ABCDEF1234: to=<a@b>");
}

TEST_CASE("journal JSON: escapes, byte-array messages, missing fields") {
    line_parser p(ref_now);
    log_line l;
    REQUIRE(p.parse(
        R"({"__REALTIME_TIMESTAMP":"1707427727000000","SYSLOG_IDENTIFIER":"postfix/smtpd","_PID":"9","MESSAGE":"NOQUEUE: reject: RCPT from x[1.2.3.4]: 550 5.1.1 <a\"b@c>: \u00e9 \\ done\n"})",
        l));
    CHECK(l.pid == 9);
    CHECK(l.message ==
          "NOQUEUE: reject: RCPT from x[1.2.3.4]: 550 5.1.1 <a\"b@c>: \xc3\xa9 \\ done");
    CHECK(l.host.empty());
    REQUIRE(p.parse(
        R"({"MESSAGE":[104,105,255],"SYSLOG_IDENTIFIER":"postfix/qmgr","__REALTIME_TIMESTAMP":"1707427727000000","nested":{"a":[1,{"b":"}"}]}})",
        l));
    CHECK(l.message == "hi\xff");
    CHECK(l.daemon == "qmgr");
    CHECK_FALSE(p.parse(R"({"MESSAGE":"x","SYSLOG_IDENTIFIER":"postfix/qmgr"})", l));
    CHECK_FALSE(p.parse(R"({"MESSAGE":"x","__REALTIME_TIMESTAMP":"1707427727000000"})", l));
    CHECK_FALSE(p.parse(
        R"({"MESSAGE":"x","SYSLOG_IDENTIFIER":"postfix/qmgr","__REALTIME_TIMESTAMP":"17)", l));
}

TEST_CASE("hostile and malformed headers are rejected without crashing") {
    line_parser p(ref_now);
    log_line l;
    for (const auto& s : read_lines(fixture("garbage.log"))) {
        // Lines with a valid header whose message is nonsense are the event parser's business.
        if (s.find("mx1 postfix/smtpd[123]: ") != std::string::npos ||
            s.find("dovecot") != std::string::npos) {
            CHECK(p.parse(s, l));
        } else {
            INFO(s);
            CHECK_FALSE(p.parse(s, l));
        }
    }
    const std::string cases[] = {"",
                                 "Feb",
                                 "Feb  8 21:28:47",
                                 "Feb  8 21:28:47 ",
                                 "Feb  8 21:28:47 host",
                                 "Feb  8 21:28:47 host tag[",
                                 "Feb  8 21:28:47 host tag[12",
                                 "Feb  8 21:28:47 host tag[]: x",
                                 "2024-13-08T21:28:47Z h t[1]: x",
                                 "2024-02-08T21:28:47+01 h t[1]: x",
                                 "Feb  8 21:28:47 host tag[99999999999999999999]: x",
                                 std::string(100, '{'),
                                 "{\"MESSAGE\":\"\\u12",
                                 "{\"MESSAGE\":[1,2,3,"};
    for (const auto& s : cases) {
        INFO(s);
        (void)p.parse(s, l);  // must not crash; result irrelevant for some
    }
    CHECK_FALSE(p.parse("Feb  8 21:28:47 host tag[]: x", l));
    CHECK_FALSE(p.parse("2024-13-08T21:28:47Z h t[1]: x", l));
}

TEST_CASE("civil date helpers round-trip") {
    for (std::int64_t d : {-1000000LL, -1LL, 0LL, 19761LL, 2932896LL}) {
        int y, m, dd;
        civil_from_days(d, y, m, dd);
        CHECK(days_from_civil(y, m, dd) == d);
    }
    CHECK(days_from_civil(2024, 2, 29) - days_from_civil(2024, 2, 28) == 1);
    CHECK(days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 29) == 1);
}

TEST_CASE("regressions found by fuzzing") {
    line_parser p(ref_now);
    log_line l;
    // A 19+ digit journal timestamp overflowed while being read (UBSan).
    CHECK_FALSE(p.parse(
        R"({"MESSAGE":"x","SYSLOG_IDENTIFIER":"postfix/qmgr","__REALTIME_TIMESTAMP":"55555555555555555555555"})",
        l));
}
