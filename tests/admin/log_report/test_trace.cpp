// --trace: by queue ID, Message-ID and address, following non-delivery notifications, and
// rejected transactions without a queue ID.
#include <catch2/catch.hpp>

#include <sstream>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "report.hpp"
#include "test_util.hpp"
#include "trace.hpp"

using namespace mx::logreport;
using namespace mx::logreport::test;

namespace {

std::vector<trace_result> trace(const std::string& file, const std::string& query) {
    tracer tr(query);
    line_parser p(ref_now);
    log_line l;
    event ev;
    for (const auto& s : read_lines(fixture(file))) {
        if (!p.parse(s, l)) continue;
        if (l.syslog_name == "mx-importer") {
            if (!parse_importer_event(l, ev)) continue;
        } else {
            parse_event(l, ev);
        }
        tr.add(l, ev);
    }
    return tr.finish();
}

std::string qid_of(const std::string& file, const std::string& needle) {
    const std::string l = find_line(file, needle);
    const auto colon = l.find("]: ");
    return l.substr(colon + 3, l.find(':', colon + 3) - colon - 3);
}

}  // namespace

TEST_CASE("trace by queue ID: session, queue, delivery, removal") {
    const std::string f = "postfix-maillog.log";
    const std::string qid = qid_of(f, "from=<bob@sender.test>, size=");
    const auto r = trace(f, qid);
    REQUIRE(r.size() == 1);
    CHECK(r[0].queue_id == qid);
    CHECK(r[0].closed);
    CHECK(r[0].client == "localhost[127.0.0.1]");
    CHECK(r[0].from == "bob@sender.test");
    REQUIRE(r[0].lines.size() >= 6);
    CHECK(r[0].lines.front().text == "connect from localhost[127.0.0.1]");
    REQUIRE(r[0].path.size() == 5);
    CHECK(r[0].path[0] == "client localhost[127.0.0.1]");
    CHECK(r[0].path[1] == "queued from=<bob@sender.test> size=414 nrcpt=2");
    CHECK(r[0].path[2] == "info@drop.test: sent via virtual (delivered to maildir)");
    CHECK(r[0].path[4] == "removed from queue");
}

TEST_CASE("trace by Message-ID, with or without angle brackets") {
    const std::string f = "milter-reject.log";
    const auto a = trace(f, "abc123@partner.test");
    const auto b = trace(f, "<abc123@partner.test>");
    REQUIRE(a.size() == 1);
    REQUIRE(b.size() == 1);
    CHECK(a[0].queue_id == "5C3D92B104");
    CHECK(a[0].message_id == "abc123@partner.test");
    CHECK(a[0].path.back() == "removed from queue");
}

TEST_CASE("trace by address: deferrals collapse, expiry, and the bounce it caused") {
    const auto r = trace("postfix-maillog.log", "Grace@Relay.test");  // case-insensitive
    REQUIRE(r.size() == 2);
    const auto& m = r[0];
    CHECK(m.closed);
    const auto deferred = std::find_if(m.path.begin(), m.path.end(), [](const std::string& s) {
        return s.find(": deferred") != std::string::npos;
    });
    REQUIRE(deferred != m.path.end());
    CHECK(deferred->find(" (x") != std::string::npos);  // one step, repeated
    CHECK(std::count(m.path.begin(), m.path.end(), "expired, returned to sender") == 1);
    // The non-delivery notification is traced as its own message, linked to its parent.
    CHECK(r[1].parent == m.queue_id);
    CHECK(r[1].path.back() == "removed from queue");
}

TEST_CASE("trace a probed address: NOQUEUE rejects with their session") {
    const auto r = trace("milter-reject.log", "nouser@example.test");
    REQUIRE(r.size() == 1);
    CHECK(r[0].queue_id.empty());
    CHECK(r[0].client == "mail.example.net[192.0.2.10]");
    CHECK(r[0].lines.front().text == "connect from mail.example.net[192.0.2.10]");
    CHECK(r[0].path.back().rfind("milter-reject at RCPT: 550 5.1.1", 0) == 0);
}

TEST_CASE("a message refused at DATA is closed without a removed line") {
    const std::string f = "postfix-maillog.log";
    const auto r = trace(f, "refused@sender.test");
    REQUIRE(r.size() == 1);
    CHECK(r[0].closed);
    CHECK(r[0].path.back().rfind("reject at DATA: 554 5.7.1", 0) == 0);
}

TEST_CASE("trace through run_log_report, text and JSON") {
    report_options opt;
    opt.files = {fixture("milter-reject.log")};
    opt.trace = "5C3D92B104";
    opt.now = ref_now;
    std::ostringstream out, err;
    REQUIRE(run_log_report(opt, out, err) == 0);
    CHECK(out.str().rfind("Message 5C3D92B104  message-id=<abc123@partner.test>\n", 0) == 0);
    CHECK(out.str().find("-> info@example.test: sent via mxdrop") != std::string::npos);
    opt.format = output_format::json;
    std::ostringstream jout;
    REQUIRE(run_log_report(opt, jout, err) == 0);
    const auto j = nlohmann::json::parse(jout.str());
    REQUIRE(j.size() == 1);
    CHECK(j[0].at("queue_id") == "5C3D92B104");
    CHECK(j[0].at("lines").size() == 6);  // connect, client, message-id, qmgr, pipe, removed
    opt.trace = "nobody-at-all@example.test";
    opt.format = output_format::text;
    std::ostringstream none;
    REQUIRE(run_log_report(opt, none, err) == 0);
    CHECK(none.str() == "no message matches\n");
}

TEST_CASE("trace joins the importer's outcome to the Postfix delivery") {
    const auto r = trace("importer.log", "two-rcpts@partner.test");
    REQUIRE(r.size() == 1);
    CHECK(r[0].queue_id == "6D4EA3C215");
    REQUIRE(r[0].path.size() >= 2);
    CHECK(r[0].path[r[0].path.size() - 2] ==
          "importer: info@example.test: imported into mailbox info@example.test [connector demo]");
    CHECK(r[0].path.back() ==
          "importer: old@example.test: ImportFailed (no-mailbox) [connector demo]");
}
