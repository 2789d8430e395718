// Aggregation: totals on the real capture (checked against independent substring counts),
// every header format giving the same report, queue-ID reuse, filters, connector grouping,
// bounded tables.
#include <catch2/catch.hpp>

#include "aggregator.hpp"
#include "test_util.hpp"

using namespace mx::logreport;
using namespace mx::logreport::test;

namespace {

std::uint64_t count_lines(const std::string& file, const std::string& needle,
                          const std::string& also = {}) {
    std::uint64_t n = 0;
    for (const auto& l : read_lines(fixture(file)))
        if (l.find(needle) != std::string::npos &&
            (also.empty() || l.find(also) != std::string::npos))
            ++n;
    return n;
}

std::uint64_t reason(const aggregator& a, reject_reason r) {
    return a.rejects_by_reason()[static_cast<std::size_t>(r)];
}

}  // namespace

TEST_CASE("totals of the real Postfix capture match independent line counts") {
    const std::string f = "postfix-maillog.log";
    aggregator a({}, nullptr);
    feed(a, f);
    a.finish();
    const totals& t = a.total();
    CHECK(t.lines == read_lines(fixture(f)).size());
    CHECK(t.unparsed == 0);
    CHECK(t.connections == count_lines(f, "/smtpd[", ": connect from "));
    CHECK(t.received_smtpd == count_lines(f, "/smtpd[", ": client="));
    CHECK(t.received_pickup == count_lines(f, "postfix/pickup[", " from=<"));
    CHECK(t.received == t.received_smtpd + t.received_pickup);
    CHECK(t.delivered == count_lines(f, "status=sent"));
    CHECK(t.deferred == count_lines(f, "status=deferred"));
    CHECK(t.bounced == count_lines(f, "status=bounced"));
    CHECK(t.expired == count_lines(f, "status=expired"));
    CHECK(t.rejected == count_lines(f, " reject: ") + count_lines(f, " milter-reject: "));
    CHECK(t.milter_rejected == count_lines(f, " milter-reject: "));
    CHECK(t.notifications == count_lines(f, "non-delivery notification"));
    CHECK(t.removed == count_lines(f, ": removed"));
    // Two messages were deferred (over and over) until they expired.
    CHECK(t.deferred_messages == 2);
    CHECK(a.open_messages() == 0);
    CHECK(t.queued == t.removed);
    CHECK(reason(a, reject_reason::user_unknown) == count_lines(f, " reject: RCPT", "550 5.1.1"));
    CHECK(reason(a, reject_reason::milter_unavailable) ==
          count_lines(f, "milter-reject", "451 4.7.1"));
    CHECK(reason(a, reject_reason::relay_denied) == 1);
    CHECK(a.delays().count() == t.delivered);
    // Deferral reasons are grouped, not one per line.
    const auto reasons = a.deferral_reasons().top(10);
    REQUIRE(reasons.size() == 2);
    CHECK(reasons[0].second + reasons[1].second == t.deferred);
    CHECK(a.rejecting_clients().top(1).at(0).first == "localhost[127.0.0.1]");
}

TEST_CASE("every header format yields the same report") {
    const char* files[] = {"syslog-traditional.log",
                           "journal-short.log",
                           "journal-short-iso.log",
                           "journal-short-iso-colon.log",
                           "rsyslog-rfc3339.log",
                           "rfc3339-nozone.log",
                           "journal.json"};
    for (const char* f : files) {
        INFO(f);
        aggregator a({}, nullptr);
        feed(a, f);
        a.finish();
        const totals& t = a.total();
        CHECK(t.lines == 9);
        CHECK(t.unparsed == 0);
        CHECK(t.connections == 1);
        CHECK(t.received == 1);
        CHECK(t.queued == 1);
        CHECK(t.recipients == 2);
        CHECK(t.bytes_received == 1234);
        CHECK(t.delivered == 1);
        CHECK(t.deferred == 1);
        CHECK(t.rejected == 2);
        CHECK(t.milter_rejected == 1);
        CHECK(reason(a, reject_reason::user_unknown) == 1);
        CHECK(reason(a, reject_reason::connector_inactive) == 1);
        REQUIRE(a.domains().count("example.test") == 1);
        CHECK(a.domains().find("example.test")->second.delivered == 1);
        CHECK(a.domains().find("example.test")->second.rejected == 1);
        CHECK(a.domains().find("paused.test")->second.milter_rejected == 1);
        CHECK(a.domains().find("remote.test")->second.deferred == 1);
        CHECK(a.deferral_reasons().top(1).at(0).first ==
              "450 4.2.0 Greylisted (in reply to RCPT TO command)");
        CHECK(a.delays().percentile(50) == Approx(0.12));
        std::uint64_t delivered = 0;
        for (const auto& h : a.hours()) delivered += h.delivered;
        CHECK(delivered == 1);
    }
}

TEST_CASE("milter rejects are counted with Postfix's own and split by reason and stage") {
    aggregator a({}, nullptr);
    feed(a, "milter-reject.log");
    a.finish();
    const totals& t = a.total();
    CHECK(t.rejected == 6);
    CHECK(t.milter_rejected == 6);
    CHECK(reason(a, reject_reason::user_unknown) == 2);
    CHECK(reason(a, reject_reason::connector_inactive) == 1);
    CHECK(reason(a, reject_reason::store_error) == 1);
    CHECK(reason(a, reject_reason::milter_unavailable) == 1);
    CHECK(reason(a, reject_reason::other) == 1);
    CHECK(a.milter_rejects_by_stage().find("RCPT")->second == 5);
    CHECK(a.milter_rejects_by_stage().find("END-OF-MESSAGE")->second == 1);
    CHECK(a.rejects_by_code().find("550 5.1.1")->second == 2);
    CHECK(t.received == 2);
    CHECK(t.delivered == 1);
    CHECK(t.warnings == 1);
    CHECK(a.rejected_recipients().top(1).at(0) ==
          std::make_pair(std::string("info@example.test"), std::uint64_t{2}));
    CHECK(a.rejecting_clients().top(1).at(0).first == "mail.example.net[192.0.2.10]");
    CHECK(a.rejecting_clients().top(1).at(0).second == 4);
}

TEST_CASE("a reused queue ID is two messages") {
    aggregator a({}, nullptr);
    feed(a, "queue-id-reuse.log");
    a.finish();
    const totals& t = a.total();
    CHECK(t.received == 2);
    CHECK(t.queued == 2);  // qmgr's repeated from= on a later queue run is not a new message
    CHECK(t.recipients == 2);
    CHECK(t.deferred == 2);
    CHECK(t.deferred_messages == 2);
    CHECK(t.delivered == 2);
    CHECK(a.open_messages() == 0);
    CHECK(a.delays().percentile(50) == Approx(600));  // 602 s at two significant digits
    CHECK(a.delays().max() == Approx(1803));
    CHECK(a.deferral_reasons().top(1).at(0).first == "connect: Connection timed out");
}

TEST_CASE("long queue IDs; forwarded is not delivered; domains are lower-cased") {
    aggregator a({}, nullptr);
    feed(a, "long-queue-id.log");
    a.finish();
    const totals& t = a.total();
    CHECK(t.received == 1);
    CHECK(t.delivered == 1);
    CHECK(t.forwarded == 1);
    CHECK(t.bounced == 1);
    CHECK(t.notifications == 1);
    CHECK(a.open_messages() == 0);
    CHECK(a.domains().find("example.test")->second.delivered == 1);
    CHECK(a.domains().find("example.test")->second.bounced == 1);
}

TEST_CASE("unparsed lines are counted, other programs are not Postfix's") {
    aggregator a({}, nullptr);
    std::vector<std::string> seen;
    a.on_unparsed = [&](std::string_view l) { seen.emplace_back(l); };
    feed(a, "garbage.log");
    a.finish();
    CHECK(a.total().lines == 9);
    CHECK(a.total().unparsed == 7);
    CHECK(seen.size() == 7);
    CHECK(a.total().other_lines == 1);
    CHECK(a.total().connections == 1);
}

TEST_CASE("domain and connector filters select recipients") {
    connector_map map;
    map.add("example.test", "demo");
    map.add("paused.test", "paused");
    SECTION("domain") {
        report_filter f;
        f.domains = {"example.test"};
        aggregator a(f, &map);
        feed(a, "milter-reject.log");
        a.finish();
        CHECK(a.total().rejected == 5);
        CHECK(a.total().received == 1);  // the delivered message; the one rejected at EOM is not
        CHECK(a.total().delivered == 1);
        CHECK(a.total().delivered_to_connectors == 1);
        CHECK(a.domains().find("paused.test")->second.selected == false);
    }
    SECTION("connector") {
        report_filter f;
        f.connectors = {"paused"};
        aggregator a(f, &map);
        feed(a, "milter-reject.log");
        a.finish();
        CHECK(a.total().rejected == 1);
        CHECK(a.total().delivered == 0);
        CHECK(a.total().received == 0);
    }
    SECTION("no connector map: nothing belongs to a connector") {
        report_filter f;
        f.connectors = {"demo"};
        aggregator a(f, nullptr);
        feed(a, "milter-reject.log");
        a.finish();
        CHECK(a.total().rejected == 0);
    }
}

TEST_CASE("since and until select by time") {
    report_filter f;
    f.since =
        1707427727 - 3600 * 0 + (21 * 3600 + 30 * 60) - (21 * 3600 + 28 * 60 + 47);  // 21:30:00
    f.until = *f.since + 60;                                                         // 21:31:00
    aggregator a(f, nullptr);
    feed(a, "milter-reject.log");
    a.finish();
    CHECK(a.total().rejected == 1);
    CHECK(a.total().received == 1);
    CHECK(a.total().delivered == 0);
    CHECK(a.total().filtered_out == 17);
}

TEST_CASE("connector_map: exact, longest parent, catch-all") {
    connector_map m;
    CHECK(m.empty());
    m.add("example.com", "a");
    m.add(".example.com", "b");
    m.add(".sub.example.com", "c");
    CHECK(m.lookup("example.com") != nullptr);
    CHECK(*m.lookup("example.com") == "a");
    CHECK(*m.lookup("x.example.com") == "b");
    CHECK(*m.lookup("y.sub.example.com") == "c");
    CHECK(m.lookup("other.org") == nullptr);
    m.add(".", "all");
    CHECK(*m.lookup("other.org") == "all");
    CHECK(m.connectors() == std::vector<std::string>{"a", "all", "b", "c"});
}

TEST_CASE("bounded_counter keeps heavy hitters within its cap") {
    bounded_counter c(100);
    for (int i = 0; i < 1000; ++i) {
        c.add("probe" + std::to_string(i) + "@example.test");
        if (i % 20 == 0) c.add("heavy@example.test", 5);
    }
    CHECK(c.size() <= 100);
    CHECK(c.truncated());
    CHECK(c.top(1).at(0).first == "heavy@example.test");
    CHECK(c.top(1).at(0).second == 250);
}

TEST_CASE("delay percentiles (nearest rank)") {
    delay_stats d;
    for (int i = 1; i <= 100; ++i) d.add(i / 10.0);  // 0.1 .. 10.0
    CHECK(d.count() == 100);
    CHECK(d.percentile(50) == Approx(5.0));
    CHECK(d.percentile(90) == Approx(9.0));
    CHECK(d.percentile(99) == Approx(9.9));
    CHECK(d.percentile(100) == Approx(10.0));
    CHECK(d.max() == Approx(10.0));
    d.add(-1);  // ignored
    CHECK(d.count() == 100);
}

TEST_CASE("normalize_reason groups deferrals by cause") {
    CHECK(normalize_reason("connect to mx.example.com[192.0.2.1]:25: Connection refused") ==
          "connect: Connection refused");
    CHECK(normalize_reason(
              "delivery temporarily suspended: connect to x[1.2.3.4]:25: Connection timed out") ==
          "connect: Connection timed out");
    CHECK(normalize_reason(
              "host mx[1.2.3.4] said: 451 4.7.1 Greylisted (in reply to RCPT TO command)") ==
          "451 4.7.1 Greylisted (in reply to RCPT TO command)");
    CHECK(normalize_reason(std::string(500, 'x')).size() == 120);
}

TEST_CASE("mx-importer outcome lines: imported and ImportFailed per recipient") {
    aggregator a({}, nullptr);
    feed(a, "importer.log");
    a.finish();
    const totals& t = a.total();
    CHECK(t.delivered == 2);
    CHECK(t.imported == 1);
    CHECK(t.import_failed == 1);
    CHECK(t.importer_lines == 3);
    CHECK(t.unparsed == 0);
    CHECK(t.other_lines == 0);
    CHECK(a.domains().find("example.test")->second.imported == 1);
    CHECK(a.domains().find("example.test")->second.import_failed == 1);
    CHECK(a.import_failure_reasons().top(1).at(0).first == "no-mailbox");
}
