// Event parsing, on lines captured from a real Postfix 3.7 (postfix-maillog.log) and on the
// hand-written milter-reject lines (milter-reject.log) in Postfix 3.x format.
#include <catch2/catch.hpp>

#include "event_parser.hpp"
#include "test_util.hpp"

using namespace mx::logreport;
using namespace mx::logreport::test;

namespace {

struct parsed {
    std::string raw;  // owns the text the views point into
    log_line line;
    event ev;
    bool ok = false;
};

parsed parse(const std::string& file, const std::string& needle) {
    parsed p;
    p.raw = find_line(file, needle);
    line_parser lp(ref_now);
    REQUIRE(lp.parse(p.raw, p.line));
    p.ok = parse_event(p.line, p.ev);
    return p;
}

const std::string real = "postfix-maillog.log";

}  // namespace

TEST_CASE("smtpd connect and disconnect with command counts") {
    auto c = parse(real, ": connect from localhost");
    REQUIRE(c.ok);
    CHECK(c.ev.kind == event_kind::connect);
    CHECK(c.ev.client_host == "localhost");
    CHECK(c.ev.client_ip == "127.0.0.1");
    auto d = parse(
        real, "disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4");
    REQUIRE(d.ok);
    CHECK(d.ev.kind == event_kind::disconnect);
    CHECK(d.ev.client_ip == "127.0.0.1");
    CHECK(d.ev.counts == "ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4");
}

TEST_CASE("client=, cleanup message-id=, qmgr from=/size=/nrcpt=, removed") {
    auto c = parse(real, ": client=localhost[127.0.0.1]");
    REQUIRE(c.ok);
    CHECK(c.ev.kind == event_kind::client);
    CHECK(is_queue_id(c.ev.queue_id));
    CHECK(c.ev.client_host == "localhost");
    auto m = parse(real, "message-id=<");
    REQUIRE(m.ok);
    CHECK(m.ev.kind == event_kind::message_id);
    CHECK(m.ev.message_id.find('@') != std::string_view::npos);
    CHECK(m.ev.message_id.front() != '<');
    auto q = parse(real, "from=<bob@sender.test>, size=");
    REQUIRE(q.ok);
    CHECK(q.ev.kind == event_kind::queued);
    CHECK(q.ev.from == "bob@sender.test");
    CHECK(q.ev.size == 414);
    CHECK(q.ev.nrcpt == 2);
    auto r = parse(real, ": removed");
    REQUIRE(r.ok);
    CHECK(r.ev.kind == event_kind::removed);
}

TEST_CASE("pickup lines count as received") {
    auto p = parse(real, "postfix/pickup[");
    REQUIRE(p.ok);
    CHECK(p.ev.kind == event_kind::pickup);
    CHECK(p.ev.from == "root@capture.test");
}

TEST_CASE("delivery lines of smtp, virtual, discard as key=value") {
    auto s = parse(real, "to=<known@relay.test>, relay=127.0.0.1[127.0.0.1]:2601");
    REQUIRE(s.ok);
    CHECK(s.ev.kind == event_kind::delivery);
    CHECK(s.ev.to == "known@relay.test");
    CHECK(s.ev.relay == "127.0.0.1[127.0.0.1]:2601");
    CHECK(s.ev.dsn == "2.0.0");
    CHECK(s.ev.status == delivery_status::sent);
    CHECK(s.ev.status_text == "250 2.0.0 Ok");
    CHECK(s.ev.delays.find('/') != std::string_view::npos);
    CHECK(s.ev.delay >= 0);
    auto v = parse(real, "postfix/virtual[");
    REQUIRE(v.ok);
    CHECK(v.ev.relay == "virtual");
    CHECK(v.ev.status_text == "delivered to maildir");
    auto d = parse(real, "postfix/discard[");
    REQUIRE(d.ok);
    CHECK(d.ev.status == delivery_status::sent);
    CHECK(d.ev.status_text == "silently dropped");
}

TEST_CASE("deferred, bounced, expired and the non-delivery notification") {
    auto d = parse(real, "status=deferred (connect to");
    REQUIRE(d.ok);
    CHECK(d.ev.status == delivery_status::deferred);
    CHECK(d.ev.dsn == "4.4.1");
    CHECK(d.ev.relay == "none");
    CHECK(d.ev.status_text == "connect to 127.0.0.1[127.0.0.1]:2699: Connection refused");
    auto r = parse(real, "status=deferred (host");
    REQUIRE(r.ok);
    CHECK(r.ev.status_text.find("said: 450 4.3.0") != std::string_view::npos);
    auto b = parse(real, "status=bounced");
    REQUIRE(b.ok);
    CHECK(b.ev.status == delivery_status::bounced);
    CHECK(b.ev.to == "gone@bounce.test");
    CHECK(b.ev.dsn == "5.3.0");
    auto e = parse(real, "status=expired, returned to sender");
    REQUIRE(e.ok);
    CHECK(e.ev.kind == event_kind::expired);
    CHECK(e.ev.from == "grace@relay.test");
    auto n = parse(real, "sender non-delivery notification");
    REQUIRE(n.ok);
    CHECK(n.ev.kind == event_kind::notification);
    CHECK(is_queue_id(n.ev.new_queue_id));
}

TEST_CASE("Postfix's own rejects: NOQUEUE at RCPT, QID at RCPT/DATA, cleanup header") {
    auto u = parse(
        real, "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <nobody@relay.test>");
    REQUIRE(u.ok);
    CHECK(u.ev.kind == event_kind::reject);
    CHECK(u.ev.rkind == reject_kind::reject);
    CHECK(u.ev.queue_id.empty());
    CHECK(u.ev.stage == "RCPT");
    CHECK(u.ev.client_ip == "127.0.0.1");
    CHECK(u.ev.code == "550");
    CHECK(u.ev.dsn == "5.1.1");
    CHECK(u.ev.from == "probe@spam.test");
    CHECK(u.ev.to == "nobody@relay.test");
    CHECK(u.ev.helo == "vm");
    CHECK(u.ev.reply.substr(0, 33) == "550 5.1.1 <nobody@relay.test>: Re");
    CHECK(classify_reject(u.ev) == reject_reason::user_unknown);
    auto q = parse(real, ": reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <ghost@relay.test>");
    REQUIRE(q.ok);
    CHECK_FALSE(q.ev.queue_id.empty());
    CHECK(q.ev.to == "ghost@relay.test");
    auto data = parse(real, ": reject: DATA from");
    REQUIRE(data.ok);
    CHECK(data.ev.stage == "DATA");
    CHECK(data.ev.code == "554");
    CHECK(data.ev.from == "refused@sender.test");
    auto relay = parse(real, "Relay access denied");
    REQUIRE(relay.ok);
    CHECK(classify_reject(relay.ev) == reject_reason::relay_denied);
    auto h = parse(real, ": reject: header Subject:");
    REQUIRE(h.ok);
    CHECK(h.ev.stage == "header");
    CHECK(h.ev.client_ip == "127.0.0.1");
    CHECK(h.ev.from == "erin@sender.test");
    CHECK(h.ev.to == "known@relay.test");
    CHECK(h.ev.helo == "vm");
    CHECK(h.ev.dsn == "5.7.1");
    CHECK(h.ev.reply == "5.7.1 bad subject");
}

TEST_CASE("real milter-reject lines from an unreachable milter (captured)") {
    auto t = parse(real, "milter-reject: MAIL from");
    REQUIRE(t.ok);
    CHECK(t.ev.rkind == reject_kind::milter_reject);
    CHECK(t.ev.stage == "MAIL");
    CHECK(t.ev.code == "451");
    CHECK(t.ev.dsn == "4.7.1");
    CHECK(t.ev.from == "judy@sender.test");
    CHECK(t.ev.to.empty());
    CHECK(classify_reject(t.ev) == reject_reason::milter_unavailable);
    auto c = parse(real, "milter-reject: CONNECT from localhost[127.0.0.1]: 550 5.5.0");
    REQUIRE(c.ok);
    CHECK(c.ev.stage == "CONNECT");
    CHECK(c.ev.reply == "550 5.5.0 Service unavailable");
    CHECK(classify_reject(c.ev) == reject_reason::other);
}

TEST_CASE("our milter's RCPT rejects (hand-written, Postfix 3.x format)") {
    const std::string f = "milter-reject.log";
    auto u = parse(f, "550 5.1.1 <nouser@example.test>");
    REQUIRE(u.ok);
    CHECK(u.ev.rkind == reject_kind::milter_reject);
    CHECK(u.ev.stage == "RCPT");
    CHECK(u.ev.to == "nouser@example.test");
    CHECK(u.ev.client_host == "mail.example.net");
    CHECK(classify_reject(u.ev) == reject_reason::user_unknown);
    CHECK(classify_reject(parse(f, "450 4.2.1").ev) == reject_reason::connector_inactive);
    CHECK(classify_reject(parse(f, "451 4.3.0").ev) == reject_reason::store_error);
    CHECK(classify_reject(parse(f, "451 4.7.1").ev) == reject_reason::milter_unavailable);
    auto eom = parse(f, "END-OF-MESSAGE");
    REQUIRE(eom.ok);
    CHECK(eom.ev.stage == "END-OF-MESSAGE");
    CHECK(eom.ev.dsn == "5.7.1");
    CHECK(eom.ev.code.empty());
    CHECK(eom.ev.to == "info@example.test");
    auto pipe = parse(f, "postfix/pipe[");
    REQUIRE(pipe.ok);
    CHECK(pipe.ev.relay == "mxdrop");
    CHECK(pipe.ev.delay == Approx(0.4));
}

TEST_CASE("long queue IDs, lmtp/local/error agents, orig_to, forwarded") {
    const std::string f = "long-queue-id.log";
    auto c = parse(f, "client=");
    REQUIRE(c.ok);
    CHECK(c.ev.queue_id == "4Tqv5C1lXbz9sLp");
    auto lm = parse(f, "postfix/lmtp[");
    CHECK(lm.ev.relay == "mail.example.test[private/dovecot-lmtp]");
    auto lo = parse(f, "postfix/local[");
    CHECK(lo.ev.orig_to == "postmaster@example.test");
    CHECK(lo.ev.forwarded);
    auto er = parse(f, "postfix/error[");
    CHECK(er.ev.status == delivery_status::bounced);
    CHECK(er.ev.status_text == "User is gone");
}

TEST_CASE("queue ID shapes") {
    CHECK(is_queue_id("0773DA721B1"));
    CHECK(is_queue_id("3F1A2B"));
    CHECK(is_queue_id("4Tqv5C1lXbz9sLp"));
    CHECK_FALSE(is_queue_id("NOQUEUE"));
    CHECK_FALSE(is_queue_id("warning"));
    CHECK_FALSE(is_queue_id("statistics"));
    CHECK_FALSE(is_queue_id("3F1A2"));
    CHECK_FALSE(is_queue_id("ABC-DEF123"));
    CHECK_FALSE(is_queue_id("thisisaverylongwordwithz"));
}

TEST_CASE("chatter is info, the unknown is unparsed, delivery key order does not matter") {
    line_parser lp(ref_now);
    log_line l;
    event ev;
    REQUIRE(
        lp.parse("Feb  8 21:28:47 mx1 postfix/anvil[1]: statistics: max connection rate 1/60s", l));
    CHECK(parse_event(l, ev));
    CHECK(ev.kind == event_kind::info);
    REQUIRE(lp.parse(
        "Feb  8 21:28:47 mx1 postfix/smtpd[1]: lost connection after RCPT from x[1.2.3.4]", l));
    CHECK(parse_event(l, ev));
    REQUIRE(
        lp.parse("Feb  8 21:28:47 mx1 postfix/smtpd[1]: warning: hostname x does not resolve", l));
    CHECK(parse_event(l, ev));
    CHECK(ev.kind == event_kind::warning);
    REQUIRE(lp.parse("Feb  8 21:28:47 mx1 postfix/smtpd[1]: this is new", l));
    CHECK_FALSE(parse_event(l, ev));
    REQUIRE(lp.parse(
        "Feb  8 21:28:47 mx1 postfix/smtp[1]: ABCDEF1234: to=<a@b.c>, relay=x[1.2.3.4]:25, "
        "conn_use=2, delay=3.5, delays=1/1/1/0.5, dsn=2.0.0, tls=TLSv1.3, status=sent "
        "(250 ok (queued as X))",
        l));
    REQUIRE(parse_event(l, ev));
    CHECK(ev.tls == "TLSv1.3");
    CHECK(ev.delay == Approx(3.5));
    CHECK(ev.status_text == "250 ok (queued as X)");
    REQUIRE(
        lp.parse("Feb  8 21:28:47 mx1 postfix/smtp[1]: ABCDEF1234: to=<a@b.c>, relay=none, "
                 "delay=1, status=expired (message too old)",
                 l));
    REQUIRE(parse_event(l, ev));
    CHECK(ev.status == delivery_status::expired);
    REQUIRE(lp.parse(
        "Feb  8 21:28:47 mx1 postfix/smtpd[1]: NOQUEUE: reject_warning: RCPT from x[1.2.3.4]: "
        "450 4.1.8 <a@b>: Sender address rejected: Domain not found; from=<a@b> to=<c@d> "
        "proto=ESMTP helo=<x>",
        l));
    REQUIRE(parse_event(l, ev));
    CHECK(ev.rkind == reject_kind::reject_warning);
}

TEST_CASE("mx-importer outcome lines") {
    auto ok = parse("importer.log", "outcome=imported");
    REQUIRE(parse_importer_event(ok.line, ok.ev));
    CHECK(ok.ev.kind == event_kind::import_result);
    CHECK(ok.ev.outcome == import_outcome::imported);
    CHECK(ok.ev.connector == "demo");
    CHECK(ok.ev.to == "info@example.test");
    CHECK(ok.ev.mailbox == "info@example.test");
    CHECK(ok.ev.message_id == "two-rcpts@partner.test");
    CHECK(ok.ev.queue_id == "6D4EA3C215");
    CHECK(ok.ev.size == 4096);
    auto bad = parse("importer.log", "outcome=failed");
    REQUIRE(parse_importer_event(bad.line, bad.ev));
    CHECK(bad.ev.outcome == import_outcome::failed);
    CHECK(bad.ev.reply == "no-mailbox");
    CHECK(bad.ev.dsn == "5.1.1");
    auto other = parse("importer.log", "batch done");
    REQUIRE(parse_importer_event(other.line, other.ev));
    CHECK(other.ev.kind == event_kind::info);
}
