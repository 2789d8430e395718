// run_log_report end to end: the JSON contract, text and Prometheus output, time arguments,
// connector grouping, error status.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "report.hpp"
#include "test_util.hpp"

using namespace mx::logreport;
using namespace mx::logreport::test;

namespace {

std::string report(report_options opt, int expect_rc = 0, std::string* errors = nullptr) {
    opt.now = ref_now;
    std::ostringstream out, err;
    CHECK(run_log_report(opt, out, err) == expect_rc);
    if (errors) *errors = err.str();
    return out.str();
}

}  // namespace

TEST_CASE("json output carries the interface contract's totals") {
    report_options opt;
    opt.files = {fixture("milter-reject.log"), fixture("syslog-traditional.log")};
    opt.format = output_format::json;
    const auto j = nlohmann::json::parse(report(opt));
    const auto& t = j.at("totals");
    for (const char* k : {"received", "delivered", "deferred", "bounced", "rejected",
                          "milter_rejected", "unparsed"})
        CHECK(t.at(k).is_number_unsigned());
    CHECK(t.at("rejected") == 8);
    CHECK(t.at("milter_rejected") == 7);
    CHECK(t.at("received") == 3);
    CHECK(j.at("schema") == "mx-log-report/1");
    CHECK(j.at("rejects").at("by_reason").at("user_unknown") == 3);
    CHECK(j.at("rejects").at("by_reason").at("connector_inactive") == 2);
    CHECK(j.at("rejects").at("by_reason").at("store_error") == 1);
    CHECK(j.at("rejects").at("by_reason").at("milter_unavailable") == 1);
    CHECK(j.at("hourly").size() == 24);
    CHECK(j.at("delays").at("count") == 2);
    CHECK(j.at("top_rejected_recipients").at(0).at("address") == "info@example.test");
    CHECK(j.at("connectors").is_null());
    CHECK(j.at("totals").at("delivered_to_connectors").is_null());
    CHECK(j.at("domains").at(0).at("domain") == "example.test");
}

TEST_CASE("connector grouping in JSON and Prometheus") {
    connector_map map;
    map.add("example.test", "demo");
    map.add(".paused.test", "old");
    map.add("paused.test", "old");
    report_options opt;
    opt.files = {fixture("milter-reject.log")};
    opt.connectors = &map;
    opt.format = output_format::json;
    const auto j = nlohmann::json::parse(report(opt));
    REQUIRE(j.at("connectors").is_array());
    std::map<std::string, nlohmann::json> by;
    for (const auto& c : j.at("connectors")) by[c.at("connector")] = c;
    CHECK(by.at("demo").at("rejected") == 5);
    CHECK(by.at("demo").at("delivered") == 1);
    CHECK(by.at("old").at("rejected") == 1);
    CHECK(by.at("old").at("rejects_by_reason").at("connector_inactive") == 1);
    CHECK(j.at("totals").at("delivered_to_connectors") == 1);

    opt.format = output_format::prometheus;
    const std::string p = report(opt);
    CHECK(p.find("# TYPE mx_log_rejected_total counter") != std::string::npos);
    CHECK(p.find("mx_log_rejected_total{reason=\"user_unknown\"} 2\n") != std::string::npos);
    CHECK(p.find("mx_log_milter_rejected_total 6\n") != std::string::npos);
    CHECK(p.find("mx_log_connector_deliveries_total{connector=\"demo\",status=\"sent\"} 1\n") !=
          std::string::npos);
    // Low cardinality: no addresses, clients or domains as labels.
    CHECK(p.find("example.test") == std::string::npos);
    CHECK(p.find("192.0.2") == std::string::npos);
}

TEST_CASE("text output is aligned and names every section") {
    report_options opt;
    opt.files = {fixture("postfix-maillog.log")};
    const std::string t = report(opt);
    for (const char* s :
         {"Totals", "Rejects by reason", "Top rejected recipients", "Top rejected clients",
          "Deferral reasons", "Delivery delay", "Per recipient domain", "Per hour"})
        CHECK(t.find(s) != std::string::npos);
    // Values of the totals block end in the same column.
    std::istringstream in(t);
    std::set<std::size_t> ends;
    bool in_totals = false;
    for (std::string l; std::getline(in, l);) {
        if (l == "Totals")
            in_totals = true;
        else if (l.empty())
            in_totals = false;
        else if (in_totals)
            ends.insert(std::min(l.size(), std::size_t{46}));
    }
    CHECK(ends == std::set<std::size_t>{46});
}

TEST_CASE("gzip input and unreadable files") {
    report_options opt;
    opt.files = {fixture("does-not-exist.log"), fixture("milter-reject.log")};
    opt.format = output_format::json;
    std::string err;
    const auto j = nlohmann::json::parse(report(opt, 1, &err));
    CHECK(err.find("does-not-exist.log") != std::string::npos);
    CHECK(j.at("totals").at("milter_rejected") == 6);  // what could be read is still reported
}

TEST_CASE("show-unparsed writes the lines not understood") {
    report_options opt;
    opt.files = {fixture("garbage.log")};
    opt.show_unparsed = true;
    std::string err;
    report(opt, 0, &err);
    CHECK(err.find("unparsed: this is not a log line\n") != std::string::npos);
    CHECK(err.find("something postfix never says") != std::string::npos);
    CHECK(err.find("dovecot") == std::string::npos);
}

TEST_CASE("time arguments") {
    const std::int64_t now = ref_now;  // 2024-03-01T12:00:00Z
    CHECK(parse_time_arg("2024-02-08", now) == 1707350400);
    CHECK(parse_time_arg("2024-02-08 21:28", now) == 1707427680);
    CHECK(parse_time_arg("2024-02-08T21:28:47", now) == 1707427727);
    CHECK(parse_time_arg("2024-02-08T21:28:47+01:00", now) == 1707424127);
    CHECK(parse_time_arg("12h", now) == now - 12 * 3600);
    CHECK(parse_time_arg("7d", now) == now - 7 * 86400);
    CHECK(parse_time_arg("today", now) == 1709251200);
    CHECK(parse_time_arg("yesterday", now) == 1709164800);
    CHECK_THROWS_AS(parse_time_arg("last tuesday", now), std::invalid_argument);
    CHECK_THROWS_AS(parse_time_arg("2024-02-30x", now), std::invalid_argument);
}

TEST_CASE("the CLI reads gzip from stdin and reports option errors with status 2") {
    const std::string cli = LOG_REPORT_CLI;
    char tmpl[] = "/tmp/mxlr-cli.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    const std::string dir = tmpl;
    const std::string gz = dir + "/maillog.1.gz";
    REQUIRE(std::system(
                ("gzip -c '" + fixture("milter-reject.log") + "' > '" + gz + "'").c_str()) == 0);
    FILE* p = popen((cli + " log-report --json < '" + gz + "'").c_str(), "r");
    REQUIRE(p != nullptr);
    std::string out;
    char buf[4096];
    for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    CHECK(pclose(p) == 0);
    const auto j = nlohmann::json::parse(out);
    CHECK(j.at("totals").at("milter_rejected") == 6);
    CHECK(WEXITSTATUS(std::system(
              (cli + " log-report --since 'last tuesday' - </dev/null 2>/dev/null").c_str())) == 2);
    CHECK(WEXITSTATUS(std::system(
              (cli + " log-report --json --prometheus - </dev/null 2>/dev/null").c_str())) == 2);
    CHECK(WEXITSTATUS(std::system(
              (cli + " log-report /nonexistent/maillog >/dev/null 2>&1").c_str())) == 1);
    std::filesystem::remove_all(dir);
}

TEST_CASE("domain option takes one value per use, so a file name after it stays a file") {
    const std::string cli = LOG_REPORT_CLI;
    FILE* p = popen((cli + " log-report --json --domain paused.test --domain Example.TEST '" +
                     fixture("milter-reject.log") + "' </dev/null")
                        .c_str(),
                    "r");
    REQUIRE(p != nullptr);
    std::string out;
    char buf[4096];
    for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    CHECK(pclose(p) == 0);
    const auto j = nlohmann::json::parse(out);
    CHECK(j.at("totals").at("lines") == 21);
    CHECK(j.at("totals").at("rejected") == 6);
    CHECK(j.at("filters").at("domains") == nlohmann::json::array({"paused.test", "example.test"}));
}
